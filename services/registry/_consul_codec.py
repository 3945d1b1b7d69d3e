"""Registrations as Consul service instances, and Consul's health entries back as records.

One agent is one instance of an agent service, ``meshwright-agent`` or one of its
shards ``meshwright-agent-<k>`` (``consul.py`` picks which): ID = agent id,
Address/Port from its endpoint, Tags = its registration tags then
``skill:<id>`` per card skill, Meta = what the record needs that Consul has no
field for (the card itself, base64 of its serialized form, chunked over
``mw_card_0``, ``mw_card_1``, ... because a Meta value holds at most 512
characters). Two checks judge it:

- ``mw-grpc:<agent id>:<lease id>``: Consul's GRPC check of the agent's own
  endpoint (``grpc.health.v1``), every health-check interval: STARTING until it
  first ran (its output is empty until then), INACTIVE while it fails. The lease
  is in its id so a registration gets a check of its own: Consul keeps the status
  of a check registered again under the same id, and a process registering anew
  must not inherit the verdict on the one before it.
- ``mw-ttl:<agent id>:<lease id>``: the lease. Heartbeats pass it (warn while
  draining, fail with an error); Consul turns it critical ("TTL expired") when
  no heartbeat came within the lease ttl. The lease id is part of the check's
  id, so a heartbeat with a stale lease names a check that does not exist.

A STOPPED agent is the same instance registered again with ``mw_stopped`` (when
it stopped) in Meta and a single critical check ``mw-stopped:<agent id>``
instead of those two: it fails ``?passing`` reads, it has no lease check left
to heartbeat, and Consul's reaper removes it even if no registry ever sweeps.

Heartbeat notes are small JSON objects, ``{"at":..,"load":..}`` plus
``"draining":true`` and ``"error":".."`` when set. ``at`` is when the agent
first reported what the note says; a heartbeat that repeats the report sends the
same note again, which Consul treats as no change (see ``consul.py`` for why).

Everything here is pure: no I/O, no clock.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import itertools
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from meshwright.agent.v1 import agent_pb2
from meshwright.mesh.discovery import CONSUL_MIN_DEREGISTER_S, go_duration
from meshwright.mesh.errors import InvalidArgument
from meshwright.registry.records import AgentRecord

SERVICE_NAME = "meshwright-agent"
"""The Consul service agents are instances of, or the prefix of its shards' names."""
_SHARD = re.compile(re.escape(SERVICE_NAME) + r"-[0-9]+")


def is_agent_service(name: str) -> bool:
    """Whether ``name`` is an agent service: ``meshwright-agent`` or a shard of it."""
    return name == SERVICE_NAME or _SHARD.fullmatch(name) is not None


MAX_META_PAIRS = 64
MAX_META_VALUE = 512
"""Consul's limits on service Meta (keys ``[A-Za-z0-9_-]``, at most 128 characters)."""

META_SKILLS = "mw_skills"
META_PRICES = "mw_prices"
META_CAPACITY = "mw_capacity"
META_VERSION = "mw_version"
META_PAYOUT = "mw_payout"
META_LEASE = "mw_lease"
META_TTL = "mw_ttl"
META_REGISTER = "mw_register"
META_STOPPED = "mw_stopped"
META_CARD = "mw_card_"
"""Prefix of the card's chunks: ``mw_card_0``, ``mw_card_1``, ..."""

_FIXED_META = 9
"""Meta pairs that are not card chunks: the eight above the card and ``mw_stopped``
(kept free so a registration that fits can always be marked stopped)."""

PASSING = "passing"
WARNING = "warning"
CRITICAL = "critical"

EXPIRED_OUTPUT = "TTL expired"
"""How Consul's output of a TTL check that ran out begins (followed by the last note)."""

LEASE_HELD_S = 253402300799.0
"""``lease_expire_s`` of a record whose lease check is not expired: 9999-12-31T23:59:59Z,
the largest protobuf Timestamp. On Consul the lease's end is Consul's to judge: a
heartbeat that repeats the last report changes nothing a replica can see, so no
replica knows when the lease will end, only that Consul has not expired it (a
heartbeat's own response says ``now + ttl``, which its caller does know)."""

STOPPED_REASON = "deregistered"
STARTING_REASON = "waiting for the first health check"

STOPPED_CHECK_TTL_S = 3600.0
"""TTL of the STOPPED marker check: it is critical from the start; the TTL only
has to exist (Consul's TTL checks need one)."""


def grpc_check_id(agent_id: str, lease_id: str) -> str:
    return f"mw-grpc:{agent_id}:{lease_id}"


def ttl_check_id(agent_id: str, lease_id: str) -> str:
    return f"mw-ttl:{agent_id}:{lease_id}"


def stopped_check_id(agent_id: str) -> str:
    return f"mw-stopped:{agent_id}"


def skill_tag(skill_id: str) -> str:
    return f"skill:{skill_id}"


# -- heartbeat notes -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Report:
    """What a heartbeat reports: the part of a record a TTL check's note carries."""

    load: int = 0
    draining: bool = False
    error: str = ""
    health_detail: str = ""
    """Carried in the note only: reduced quality does not change the check's status."""

    @property
    def status(self) -> str:
        """The TTL check status this report sets: fail on an error, warn while draining."""
        if self.error:
            return CRITICAL
        return WARNING if self.draining else PASSING


def encode_note(report: Report, at: float) -> str:
    note: dict[str, Any] = {"at": round(at, 6), "load": report.load}
    if report.draining:
        note["draining"] = True
    if report.error:
        note["error"] = report.error
    if report.health_detail:
        note["health_detail"] = report.health_detail
    return json.dumps(note, sort_keys=True, separators=(",", ":"))


def decode_note(output: str) -> tuple[Report, float] | None:
    """The report and its time in a check output (also after Consul's "TTL expired"
    prefix, which is followed by the last note); None when there is none."""
    start = output.find("{")
    if start < 0:
        return None
    try:
        note = json.loads(output[start:])
        at = float(note["at"])
        load = int(note.get("load", 0))
        draining = note.get("draining", False) is True
        error = str(note.get("error", ""))
        health_detail = str(note.get("health_detail", ""))
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return Report(load=load, draining=draining, error=error, health_detail=health_detail), at


# -- registration --------------------------------------------------------------


def _meta(record: AgentRecord) -> dict[str, str]:
    card = record.card
    meta = {
        META_SKILLS: ",".join(s.id for s in card.skills),
        META_PRICES: ",".join(f"{s.id}={s.price}" for s in card.skills),
        META_CAPACITY: str(record.capacity),
        META_VERSION: card.version,
        META_PAYOUT: record.payout_account_id,
        META_LEASE: record.lease_id,
        META_TTL: repr(record.lease_ttl_s),
        META_REGISTER: repr(record.register_s),
    }
    too_long = [k for k, v in meta.items() if len(v) > MAX_META_VALUE]
    if too_long:
        raise InvalidArgument.field(
            "card",
            f"does not fit in Consul's service metadata: {', '.join(too_long)} would be longer "
            f"than {MAX_META_VALUE} characters (too many skills, or too long a version)",
        )
    encoded = base64.b64encode(card.SerializeToString(deterministic=True)).decode("ascii")
    chunks = [encoded[i : i + MAX_META_VALUE] for i in range(0, len(encoded), MAX_META_VALUE)]
    room = MAX_META_PAIRS - _FIXED_META
    if len(chunks) > room:
        raise InvalidArgument.field(
            "card",
            f"does not fit in Consul's service metadata: serialized it is {len(encoded)} "
            f"base64 characters, at most {room * MAX_META_VALUE} fit ({room} values of "
            f"{MAX_META_VALUE})",
        )
    for i, chunk in enumerate(chunks):
        meta[f"{META_CARD}{i}"] = chunk
    return meta


def _address(endpoint: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


def _endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def registration(
    record: AgentRecord,
    *,
    service: str = SERVICE_NAME,
    check_interval_s: float,
    check_timeout_s: float,
    deregister_after_s: float,
    grpc_use_tls: bool,
) -> dict[str, Any]:
    """The body of ``PUT /v1/agent/service/register`` for ``record``, an instance of
    the agent service ``service``.

    Raises ``InvalidArgument`` (field ``card``) when the card does not fit in Meta.
    """
    address, port = _address(record.endpoint)
    reap = go_duration(max(deregister_after_s, CONSUL_MIN_DEREGISTER_S))
    agent_id = record.agent_id
    return {
        "Name": service,
        "ID": agent_id,
        "Address": address,
        "Port": port,
        "Tags": [*record.tags, *(skill_tag(s.id) for s in record.card.skills)],
        "Meta": _meta(record),
        "Checks": [
            {
                "CheckID": grpc_check_id(agent_id, record.lease_id),
                "Name": f"agent {agent_id}: gRPC health",
                "GRPC": record.endpoint,
                "GRPCUseTLS": grpc_use_tls,
                "Interval": go_duration(check_interval_s),
                "Timeout": go_duration(check_timeout_s),
                "DeregisterCriticalServiceAfter": reap,
            },
            {
                "CheckID": ttl_check_id(agent_id, record.lease_id),
                "Name": f"agent {agent_id}: lease",
                "TTL": go_duration(record.lease_ttl_s),
                "Status": PASSING,
                "DeregisterCriticalServiceAfter": reap,
            },
        ],
    }


def stopped_registration(
    service: Mapping[str, Any], stopped_s: float, *, deregister_after_s: float
) -> dict[str, Any]:
    """``service`` (``GET /v1/agent/service/<id>``) registered again as STOPPED."""
    agent_id = str(service["ID"])
    meta = dict(service.get("Meta") or {})
    meta[META_STOPPED] = repr(stopped_s)
    return {
        "Name": service.get("Service", SERVICE_NAME),
        "ID": agent_id,
        "Address": service.get("Address", ""),
        "Port": service.get("Port", 0),
        "Tags": list(service.get("Tags") or ()),
        "Meta": meta,
        "Checks": [
            {
                "CheckID": stopped_check_id(agent_id),
                "Name": f"agent {agent_id}: stopped",
                "Notes": STOPPED_REASON,
                "TTL": go_duration(STOPPED_CHECK_TTL_S),
                "Status": CRITICAL,
                "DeregisterCriticalServiceAfter": go_duration(
                    max(deregister_after_s, CONSUL_MIN_DEREGISTER_S)
                ),
            }
        ],
    }


# -- health entries back to records ----------------------------------------------


Fingerprint = tuple[Any, ...]


def fingerprint(entry: Mapping[str, Any]) -> Fingerprint:
    """What of a health entry the record depends on: equal fingerprints, equal records.

    Consul's own change marks when it sends them: the ModifyIndex of the node, the
    service and every check, which Consul raises on every write that changes them
    (cheap: a shard's follower takes one of every instance on each change). An entry
    without them is fingerprinted by its content. After Consul's indexes went back
    (a snapshot restore) marks can repeat: the caller forgets its fingerprints then.
    """
    service = entry.get("Service") or {}
    checks = entry.get("Checks") or ()
    try:
        return (
            entry["Node"]["ModifyIndex"],
            service["ModifyIndex"],
            *((c["CheckID"], c["ModifyIndex"]) for c in checks),
        )
    except (KeyError, TypeError):
        pass
    content = sorted(
        (str(c.get("CheckID", "")), str(c.get("Status", "")), str(c.get("Output", "")))
        for c in checks
    )
    return (
        service.get("Address"),
        service.get("Port"),
        tuple(service.get("Tags") or ()),
        tuple(sorted((service.get("Meta") or {}).items())),
        tuple(content),
    )


def service_id(entry: Mapping[str, Any]) -> str | None:
    """The agent id of a health entry of an agent service; None for other services."""
    service = entry.get("Service") or {}
    if not is_agent_service(str(service.get("Service", ""))) or not service.get("ID"):
        return None
    return str(service["ID"])


def lease_of(service: Mapping[str, Any]) -> str:
    """The lease id of a service definition or health entry's service ("" if none)."""
    return str((service.get("Meta") or {}).get(META_LEASE, ""))


def stopped_of(service: Mapping[str, Any]) -> float | None:
    """When a service definition was marked stopped; None when it is live."""
    value = (service.get("Meta") or {}).get(META_STOPPED)
    return None if value is None else float(value)


def _card(meta: Mapping[str, str]) -> agent_pb2.AgentCard:
    chunks = [meta[f"{META_CARD}0"]]  # KeyError: not a meshwright registration
    for i in itertools.count(1):
        chunk = meta.get(f"{META_CARD}{i}")
        if chunk is None:
            break
        chunks.append(chunk)
    return agent_pb2.AgentCard.FromString(base64.b64decode("".join(chunks), validate=True))


def _registration_tags(tags: list[str], card: agent_pb2.AgentCard) -> tuple[str, ...]:
    skill_tags = [skill_tag(s.id) for s in card.skills]
    if skill_tags and tags[-len(skill_tags) :] == skill_tags:
        return tuple(tags[: -len(skill_tags)])
    # Consul keeps the order it was given; should a server not, drop them by value.
    known = set(skill_tags)
    return tuple(t for t in tags if t not in known)


def decode(
    entry: Mapping[str, Any], *, previous: AgentRecord | None, observed: float
) -> AgentRecord:
    """The record a health entry of an agent service shows, ``observed`` at that time.

    ``previous`` is this agent's record from the last result: times Consul does not
    keep (when a check turned critical) are carried over while the state stays.
    Raises ``ValueError`` for an entry meshwright did not write (no card, no lease).
    """
    service = entry["Service"]
    meta: Mapping[str, str] = service.get("Meta") or {}
    agent_id = str(service["ID"])
    try:
        lease_id = meta[META_LEASE]
        card = _card(meta)
        record = AgentRecord.create(
            agent_id=agent_id,
            card=card,
            endpoint=_endpoint(str(service["Address"]), int(service["Port"])),
            tags=_registration_tags(list(service.get("Tags") or ()), card),
            capacity=int(meta.get(META_CAPACITY, "0")),
            payout_account_id=meta.get(META_PAYOUT, "") or agent_id,
            lease_id=lease_id,
            lease_ttl_s=float(meta[META_TTL]),
            now=float(meta[META_REGISTER]),
        )
        stopped_s = None if META_STOPPED not in meta else float(meta[META_STOPPED])
    except (KeyError, ValueError, TypeError, binascii.Error, DecodeError) as err:
        raise ValueError(f"service {agent_id!r} is not a meshwright registration: {err!r}") from err

    if stopped_s is not None:
        return dataclasses.replace(
            record,
            lease_expire_s=stopped_s,
            stopped_s=stopped_s,
            status_s=stopped_s,
            status_reason=STOPPED_REASON,
        )

    lease_check = grpc = None
    other_critical: tuple[str, str] | None = None
    own = {
        ttl_check_id(agent_id, lease_id),
        grpc_check_id(agent_id, lease_id),
        stopped_check_id(agent_id),
    }
    for check in entry.get("Checks") or ():
        check_id = str(check.get("CheckID", ""))
        status_output = (str(check.get("Status", "")), str(check.get("Output", "") or ""))
        if check_id == ttl_check_id(agent_id, lease_id):
            lease_check = status_output
        elif check_id == grpc_check_id(agent_id, lease_id):
            grpc = status_output
        elif check_id not in own and status_output[0] == CRITICAL and other_critical is None:
            # Maintenance mode, a failing node, an operator's own check.
            name = str(check.get("Name") or check_id)
            other_critical = (name, status_output[1] or str(check.get("Notes") or ""))

    report, at, lapsed = Report(), None, False
    if lease_check is None:
        lapsed = True  # its lease check is gone: nothing can renew it
    else:
        status, output = lease_check
        parsed = decode_note(output)
        if parsed is not None:
            report, at = parsed
        if status == CRITICAL and output.startswith(EXPIRED_OUTPUT):
            lapsed = True
        elif status == CRITICAL and not report.error:
            # Failed by someone else (an operator): an error all the same.
            report = dataclasses.replace(report, error=output or "lease check critical")
        elif status != CRITICAL:
            report = dataclasses.replace(report, error="", draining=status == WARNING)

    healthy: bool | None = True
    reason = ""
    if other_critical is not None:
        healthy, reason = False, f"{other_critical[0]} critical: {other_critical[1]}".rstrip(": ")
    elif grpc is not None and grpc[0] == CRITICAL:
        if grpc[1]:
            healthy, reason = False, f"health check failing: {grpc[1]}"
        else:
            healthy, reason = None, STARTING_REASON

    held = previous is not None and previous.lease_id == lease_id and previous.stopped_s is None
    if lapsed:
        expire = previous.lease_expire_s if held and previous and previous.lapsed else observed
    else:
        expire = LEASE_HELD_S
    fresh = dataclasses.replace(
        record,
        lease_expire_s=expire,
        last_heartbeat_s=at,
        load=report.load,
        draining=report.draining,
        lapsed=lapsed,
        healthy=healthy,
        error=report.error,
        health_detail=report.health_detail,
        status_reason=reason,
    )
    state, _, why = fresh.status_at(observed)
    if held and previous is not None:
        before, _, why_before = previous.status_at(observed)
        if (before, why_before) == (state, why):
            return dataclasses.replace(fresh, status_s=previous.status_s)
    # Consul keeps no time of a check's change: where the note or the registration
    # says when, that time; else when this replica saw it.
    if report.error or (report.draining and healthy):
        since = at if at is not None else observed
    elif healthy is None:
        since = record.register_s
    else:
        since = observed
    return dataclasses.replace(fresh, status_s=since)

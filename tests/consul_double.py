"""An in-process double of the Consul agent HTTP API (a single-node dev agent, v1.20-ish).

Consul cannot be installed on the machines this project runs on, so the Consul backend is
tested against this: a real HTTP server (aiohttp) on 127.0.0.1 that answers the endpoints
in /work/notes/issue9.md ("Consul mapping") the way one Consul server agent does, read
from HashiCorp's API docs and the agent source (agent/agent.go, agent/agent_endpoint.go,
agent/local/state.go, agent/checks/*.go, agent/consul/rpc.go blockingQuery). Everything
crosses a socket: drive it with ``consul.aio.Consul`` (see ``consul_client``) or raw HTTP.

What it reproduces, and why each matters to a client:

* Two views, like Consul: the agent's local state (``/v1/agent/*``) and the catalog
  (``/v1/health/*``, ``/v1/catalog/*``) it syncs into. A status change syncs at once; an
  output-only change is written back only after ``check_update_interval_s`` (Consul's
  ``check_update_interval``, 5 minutes by default), so a client cannot use check output as
  a fast channel through the catalog.
* One raft-like modify index, bumped only when the catalog really changes (an identical
  re-registration or a TTL pass that changes neither status nor synced output does not
  bump it); per service name, the last index that touched it; the "last extinction" index
  for names without instances; ``X-Consul-Index`` never below 1.
* Blocking queries: ``index`` + ``wait`` (default 5 min, max 10 min, plus up to wait/16
  jitter). A query blocks while the result's index is <= the given index, which includes
  an index above the current one; ``reset_index()`` simulates a snapshot restore: the
  indexes go backwards and every blocked query is answered at once (Consul's AbandonCh),
  so clients must reset to 0 when an index goes backwards (the docs' "Reset the index if it
  goes backwards").
* Service registration validated like Consul (name, address, weights, Meta limits and
  messages, check definitions, statuses), keys matched case-insensitively with the
  snake_case aliases; re-registering an ID replaces the service; checks keep their
  previous status and output across a re-registration (Consul restores them from a
  snapshot) and their critical timer restarts; ``replace-existing-checks`` drops the
  checks the new definition leaves out (including a maintenance check).
* Checks: TTL (initial status from the definition, default critical; expiry gives
  critical "TTL expired" or "TTL expired (last output before timeout follows): ..."),
  GRPC (``grpc.health.v1.Health/Check`` on one channel per check, bounded by Timeout,
  default 10 s), HTTP (2xx passing, 429 warning, else critical) and TCP, each first run
  staggered at random within the interval (``first_check_at_once`` for tests), intervals
  clamped to at least 1 s like Consul; pass/warn/fail/update with Consul's answers (404
  "Unknown check ID ..." for an unknown ID, 500 "... does not have associated TTL" for a
  non-TTL check); maintenance mode as the critical ``_service_maintenance:<id>`` check.
* DeregisterCriticalServiceAfter: floored at one minute, measured from the first critical
  update (not from registration), checked by a reaper that runs every
  ``reap_interval_s`` (Consul: 30 s) against an injectable clock (``advance()``).

What it does not reproduce: ACLs, namespaces, partitions, peering, Connect/sidecars, the
KV store, sessions, prepared queries, DNS, ``?filter`` expressions (refused with 400 so
nothing silently ignores a filter), ``?near``, node-meta filters, script/docker/alias/
H2PING/UDP/OS-service checks (refused with 400), SuccessBeforePassing and friends,
persistence across a restart, anti-entropy full syncs and more than one node.
``advance()`` moves only the reaper's clock: TTLs, intervals and blocking waits run on the
event loop's real time.

Public surface: ``ConsulDouble`` (``start``/``stop``, ``address``, ``url``, test controls),
``ConsulDoubleConfig``, ``ConsulDoubleProcess`` and ``python -m tests.consul_double`` (a
child process), ``consul_client()``, and the fixtures ``consul_double``,
``consul_double_factory`` and ``consul_double_process``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import ipaddress
import json
import os
import random
import re
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, fields
from fractions import Fraction
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import orjson
import pytest
from aiohttp import web
from grpc_health.v1 import health_pb2, health_pb2_grpc

PASSING = "passing"
WARNING = "warning"
CRITICAL = "critical"
STATUSES = (PASSING, WARNING, CRITICAL)

DEFAULT_WAIT_S = 300.0
"""A blocking query without ``wait`` waits this long (Consul's DefaultQueryTime)."""
MAX_WAIT_S = 600.0
"""A longer ``wait`` is cut to this (Consul's MaxQueryTime)."""
REAP_FLOOR_S = 60.0
"""DeregisterCriticalServiceAfter below this is raised to it (Consul's
CheckDeregisterIntervalMin, not configurable on purpose)."""
OUTPUT_MAX_BYTES = 4096
"""Check output is cut to this many bytes (Consul's DefaultBufSize / CheckBufSize)."""
DEFAULT_CHECK_TIMEOUT_S = 10.0
"""GRPC, HTTP and TCP probes without a Timeout are bounded by this (Consul's default)."""
INITIAL_INDEX = 12
"""The raft index when the double starts: the node, its serfHealth check and the
``consul`` service were written before any client could connect, as on a real server."""
META_MAX_PAIRS = 64
META_KEY_MAX = 128
META_VALUE_MAX = 512
META_RESERVED_PREFIX = "consul-"
MAINT_PREFIX = "_service_maintenance:"
DEFAULT_MAINT_REASON = (
    "Maintenance mode is enabled for this service, but no reason was provided. "
    "This is a default message."
)
CONSUL_VERSION = "1.20.5"
SERVER_RPC_ADDR = "127.0.0.1:8300"

_META_KEY = re.compile(r"^[a-zA-Z0-9_-]+$")
_GO_BOOL = {
    "1": True,
    "t": True,
    "T": True,
    "TRUE": True,
    "true": True,
    "True": True,
    "0": False,
    "f": False,
    "F": False,
    "FALSE": False,
    "false": False,
    "False": False,
}

# --------------------------------------------------------------------------- durations

_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_NUMBER = re.compile(r"[0-9]*(\.[0-9]*)?")
_UNIT = re.compile(r"[^0-9.]*")


def parse_go_duration_ns(text: str) -> int:
    """Nanoseconds of a Go ``time.ParseDuration`` string ("10s", "1m30s", "500ms", "0").

    Raises ValueError with Go's message, so a bad duration answers like Consul.
    """
    s = text
    negative = False
    if s[:1] in ("-", "+"):
        negative = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise ValueError(f'time: invalid duration "{text}"')
    total = Fraction(0)
    pos = 0
    while pos < len(s):
        number = _NUMBER.match(s, pos)
        assert number is not None  # the pattern matches the empty string
        digits = number.group(0)
        if digits in ("", "."):
            raise ValueError(f'time: invalid duration "{text}"')
        pos = number.end()
        unit_match = _UNIT.match(s, pos)
        assert unit_match is not None
        unit = unit_match.group(0)
        if not unit:
            raise ValueError(f'time: missing unit in duration "{text}"')
        if unit not in _UNIT_NS:
            raise ValueError(f'time: unknown unit "{unit}" in duration "{text}"')
        pos = unit_match.end()
        total += Fraction(digits if not digits.endswith(".") else digits + "0") * _UNIT_NS[unit]
    ns = int(total)
    return -ns if negative else ns


def parse_go_duration(text: str) -> float:
    """Seconds of a Go duration string; see ``parse_go_duration_ns``."""
    return parse_go_duration_ns(text) / 1e9


def _fraction(value: int, unit: int) -> str:
    whole, rest = divmod(value, unit)
    if rest == 0:
        return str(whole)
    digits = str(rest).rjust(len(str(unit)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


def format_go_duration(ns: int) -> str:
    """Go's ``Duration.String()``: "5s", "1m0s", "1m30s", "500ms", "1h0m0s"; Consul shows
    check intervals and timeouts this way."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    u = abs(ns)
    if u < 1_000:
        return f"{sign}{u}ns"
    if u < 1_000_000:
        return f"{sign}{_fraction(u, 1_000)}\u00b5s"
    if u < 1_000_000_000:
        return f"{sign}{_fraction(u, 1_000_000)}ms"
    minutes, rest = divmod(u, 60_000_000_000)
    text = f"{_fraction(rest, 1_000_000_000)}s"
    if minutes:
        hours, minutes = divmod(minutes, 60)
        text = f"{minutes}m{text}"
        if hours:
            text = f"{hours}h{text}"
    return sign + text


def _duration_field(raw: Any, name: str) -> int:
    """A duration in a JSON body: a Go duration string, or a number of nanoseconds (how
    Consul's CheckType decodes them)."""
    if raw is None:
        return 0
    if isinstance(raw, bool):
        raise ConsulHTTPError(400, f"Request decode failed: invalid type for {name}")
    if isinstance(raw, int | float):
        return int(raw)
    if isinstance(raw, str):
        if raw == "":
            return 0
        try:
            return parse_go_duration_ns(raw)
        except ValueError as err:
            raise ConsulHTTPError(400, f"Request decode failed: {err}") from None
    raise ConsulHTTPError(400, f"Request decode failed: invalid type for {name}")


def _truncate_output(output: str) -> str:
    """Consul keeps at most 4 KiB of check output and says how much it dropped."""
    data = output.encode()
    if len(data) <= OUTPUT_MAX_BYTES:
        return output
    kept = data[:OUTPUT_MAX_BYTES].decode(errors="ignore")
    return f"{kept} ... (captured {OUTPUT_MAX_BYTES} of {len(data)} bytes)"


# --------------------------------------------------------------------------- model


class ConsulHTTPError(Exception):
    """An answer other than 200: the status and Consul's plain-text body."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


@dataclass(frozen=True, kw_only=True)
class ConsulDoubleConfig:
    """How the double behaves; the defaults are Consul's own."""

    host: str = "127.0.0.1"
    """Address to listen on (loopback only: tests never leave the machine)."""
    port: int = 0
    """Port to listen on; 0 picks a free one (read ``address`` after ``start``)."""
    node_name: str = "consul-double"
    """The node every service is registered on (one node, like a dev agent)."""
    datacenter: str = "dc1"
    """The datacenter; a request for another ``?dc`` fails like Consul's."""
    reap_interval_s: float = 30.0
    """How often the reaper looks for services critical longer than their
    DeregisterCriticalServiceAfter (Consul's check_reap_interval, 30 s)."""
    check_update_interval_s: float = 300.0
    """How long an output-only check change may wait before it reaches the catalog
    (Consul's check_update_interval, 5 min; the write-back happens between half and one
    and a half times this). 0 syncs every output change at once."""
    first_check_at_once: bool = False
    """Run interval checks (GRPC, HTTP, TCP) at once after registration instead of at a
    random point within the first interval as Consul does; tests turn it on to avoid
    waiting up to one interval for the first result."""
    min_check_interval_s: float = 1.0
    """Intervals below this are raised to it (Consul's MinInterval, 1 s); a double-only
    knob for tests that need faster probes."""
    seed: int | None = None
    """Seed for the staggers and jitters, for a repeatable run."""


@dataclass
class _Service:
    """A service instance in the agent's local state."""

    service_id: str
    name: str
    address: str
    port: int
    tags: list[str] | None
    meta: dict[str, str] | None
    weights: dict[str, int]
    enable_tag_override: bool
    kind: str
    tagged_addresses: dict[str, dict[str, Any]]


@dataclass(eq=False)
class _Check:
    """A check in the agent's local state, with what runs it."""

    check_id: str
    name: str
    service_id: str
    service_name: str
    service_tags: list[str] | None
    notes: str
    kind: str
    """"ttl", "grpc", "http", "tcp", "maintenance" or "" (a check without a runner)."""
    status: str
    output: str = ""
    catalog_output: str = ""
    """The output the catalog has: output-only changes reach it late (see
    check_update_interval_s)."""
    ttl_ns: int = 0
    interval_ns: int = 0
    timeout_ns: int = 0
    reap_after_s: float | None = None
    target: str = ""
    grpc_use_tls: bool = False
    tls_skip_verify: bool = False
    method: str = ""
    header: dict[str, list[str]] = field(default_factory=dict)
    body: str = ""
    definition: dict[str, Any] = field(default_factory=dict)
    critical_since: float | None = None
    """The clock when the check last turned critical through an update; None when not
    critical or never updated since (re)registration, as in Consul's CheckState."""
    last_ttl_output: str = ""
    ttl_handle: asyncio.TimerHandle | None = None
    defer_handle: asyncio.TimerHandle | None = None
    task: asyncio.Task[None] | None = None
    channel: grpc.aio.Channel | None = None
    session: aiohttp.ClientSession | None = None


def _norm(obj: Any, what: str) -> dict[str, Any]:
    """A JSON object with its keys folded the way Consul matches them: Go's decoder is
    case-insensitive and Consul translates the snake_case aliases (grpc_use_tls,
    deregister_critical_service_after, service_id, ...)."""
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise ConsulHTTPError(400, f"Request decode failed: {what} must be an object")
    return {str(k).replace("_", "").lower(): v for k, v in obj.items()}


def _str_field(d: dict[str, Any], key: str, what: str) -> str:
    value = d.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConsulHTTPError(
            400, f"Request decode failed: json: cannot unmarshal into field {what} of type string"
        )
    return value


def _bool_field(d: dict[str, Any], key: str, what: str) -> bool:
    value = d.get(key)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise ConsulHTTPError(
            400, f"Request decode failed: json: cannot unmarshal into field {what} of type bool"
        )
    return value


def _parse_bool(raw: str) -> bool:
    """Go's strconv.ParseBool; ValueError on anything else."""
    if raw not in _GO_BOOL:
        raise ValueError(raw)
    return _GO_BOOL[raw]


def _validate_meta(meta: dict[str, str]) -> None:
    """Consul's ValidateServiceMetadata, with its messages (lengths are bytes, as in Go)."""
    if len(meta) > META_MAX_PAIRS:
        raise ConsulHTTPError(
            400,
            "Invalid Service Meta: Node metadata cannot contain more than "
            f"{META_MAX_PAIRS} key/value pairs",
        )
    for key, value in sorted(meta.items()):
        problem = None
        if key == "":
            problem = "Key cannot be blank"
        elif not _META_KEY.match(key):
            problem = "Key contains invalid characters"
        elif len(key.encode()) > META_KEY_MAX:
            problem = f"Key is too long (limit: {META_KEY_MAX} characters)"
        elif key.startswith(META_RESERVED_PREFIX):
            problem = f"Key prefix '{META_RESERVED_PREFIX}' is reserved for internal use"
        elif len(value.encode()) > META_VALUE_MAX:
            problem = f"Value is too long (limit: {META_VALUE_MAX} characters)"
        if problem is not None:
            raise ConsulHTTPError(
                400,
                f"Invalid Service Meta: Couldn't load metadata pair ('{key}', '{value}'): "
                f"{problem}",
            )


@dataclass
class _CheckSpec:
    """A decoded check definition (Consul's CheckType plus the CheckDefinition fields)."""

    check_id: str
    name: str
    notes: str
    status: str
    kind: str
    ttl_ns: int
    interval_ns: int
    timeout_ns: int
    reap_after_ns: int
    target: str
    grpc_use_tls: bool
    tls_skip_verify: bool
    method: str
    header: dict[str, list[str]]
    body: str
    service_id: str = ""


_UNSUPPORTED_CHECK_KEYS = {
    "args": "script",
    "scriptargs": "script",
    "script": "script",
    "dockercontainerid": "docker",
    "h2ping": "H2PING",
    "udp": "UDP",
    "aliasnode": "alias",
    "aliasservice": "alias",
    "osservice": "OS service",
}


def _decode_check(raw: Any, *, definition_id: bool) -> _CheckSpec:
    """Decode one check definition (decode errors only, as Consul's decodeBody reports
    them before anything is validated). ``definition_id``: the body of
    /v1/agent/check/register, where "ID" names the check; inside a service definition
    only "CheckID" does (Consul's CheckType has no ID field, so an "ID" there is ignored
    and the check gets the generated "service:<id>")."""
    d = _norm(raw, "check")
    for key, kind in _UNSUPPORTED_CHECK_KEYS.items():
        if d.get(key):
            raise ConsulHTTPError(400, f"the Consul double does not implement {kind} checks")
    grpc_target = _str_field(d, "grpc", "GRPC")
    http_target = _str_field(d, "http", "HTTP")
    tcp_target = _str_field(d, "tcp", "TCP")
    kind = "grpc" if grpc_target else "http" if http_target else "tcp" if tcp_target else "ttl"
    header_raw = d.get("header") or {}
    if not isinstance(header_raw, dict) or not all(
        isinstance(v, list) and all(isinstance(x, str) for x in v) for v in header_raw.values()
    ):
        raise ConsulHTTPError(400, "Request decode failed: Header must map names to lists")
    check_id = _str_field(d, "checkid", "CheckID")
    if definition_id:
        check_id = _str_field(d, "id", "ID") or check_id
    return _CheckSpec(
        check_id=check_id,
        name=_str_field(d, "name", "Name"),
        notes=_str_field(d, "notes", "Notes"),
        status=_str_field(d, "status", "Status"),
        kind=kind,
        ttl_ns=_duration_field(d.get("ttl"), "TTL"),
        interval_ns=_duration_field(d.get("interval"), "Interval"),
        timeout_ns=_duration_field(d.get("timeout"), "Timeout"),
        reap_after_ns=_duration_field(
            d.get("deregistercriticalserviceafter"), "DeregisterCriticalServiceAfter"
        ),
        target=grpc_target or http_target or tcp_target,
        grpc_use_tls=_bool_field(d, "grpcusetls", "GRPCUseTLS"),
        tls_skip_verify=_bool_field(d, "tlsskipverify", "TLSSkipVerify"),
        method=_str_field(d, "method", "Method"),
        header={str(k): list(v) for k, v in header_raw.items()},
        body=_str_field(d, "body", "Body"),
        service_id=_str_field(d, "serviceid", "ServiceID") if definition_id else "",
    )


def _validate_check(spec: _CheckSpec) -> None:
    """Consul's CheckType.Validate, answered as "Invalid check: ..."."""
    interval_type = spec.kind != "ttl"
    if spec.interval_ns > 0 and spec.ttl_ns > 0:
        raise ConsulHTTPError(400, "Invalid check: Interval and TTL cannot both be specified")
    if interval_type and spec.interval_ns <= 0:
        raise ConsulHTTPError(
            400, "Invalid check: Interval must be > 0 for Script, HTTP, H2PING, TCP or UDP checks"
        )
    if not interval_type and spec.ttl_ns <= 0:
        raise ConsulHTTPError(400, "Invalid check: TTL must be > 0 for TTL checks")


_GO_CODE_NAMES = {"CANCELLED": "Canceled"}


def _go_code(code: grpc.StatusCode) -> str:
    """grpc-go's spelling of a status code ("Unavailable", "DeadlineExceeded")."""
    name: str = code.name
    return _GO_CODE_NAMES.get(name, "".join(part.title() for part in name.split("_")))


# --------------------------------------------------------------------------- the double


class ConsulDouble:
    """One Consul agent (server mode, one node) behind a real HTTP server.

    ``clock`` is the time source the reaper measures critical durations with (monotonic
    seconds by default); ``advance()`` moves it forward.
    """

    def __init__(
        self,
        config: ConsulDoubleConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config or ConsulDoubleConfig()
        self._base_clock = clock
        self._clock_offset = 0.0
        self._random = random.Random(self.config.seed)
        self._services: dict[str, _Service] = {}
        self._checks: dict[str, _Check] = {}
        # The catalog: what the agent synced, without the raft indexes, plus the indexes.
        self._cat_services: dict[str, dict[str, Any]] = {}
        self._cat_checks: dict[str, dict[str, Any]] = {}
        self._cat_index: dict[str, tuple[int, int]] = {}
        # Lookups so that a change costs what it touches, not the whole catalog.
        self._checks_of: dict[str, set[str]] = {}  # service id ("" = node) -> local check ids
        self._cat_names: dict[str, set[str]] = {}  # service name -> catalog service ids
        self._cat_checks_of: dict[str, set[str]] = {}  # service id -> catalog check ids
        self._dirty_services: set[str] = set()
        self._dirty_checks: set[str] = set()
        self._index = INITIAL_INDEX
        self._node_index = INITIAL_INDEX - 2
        self._service_index: dict[str, int] = {"consul": INITIAL_INDEX}
        self._services_table_index = INITIAL_INDEX
        self._extinction_index: int | None = None
        self._changed = asyncio.Event()
        self._blocked = 0
        self._epoch = 0
        self._closing = False
        self._reap_passes = 0
        self._reaper: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._node_id = "8f2e4d1c-0b6a-4c3e-9d7f-5a1b2c3d4e5f"

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Listen on host:port (port 0: a free one) and start the reaper."""
        app = web.Application(middlewares=[self._errors])
        self._routes(app)
        # The short shutdown timeout is safe: stop() releases blocked queries first.
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port)
        await site.start()
        self._runner = runner
        address = runner.addresses[0]
        self._port = int(address[1])
        self._reaper = asyncio.create_task(self._reap_loop(), name="consul-double-reaper")

    async def stop(self) -> None:
        """Stop every check runner, close gRPC channels and HTTP sessions, answer blocked
        queries, stop serving. Safe to call twice."""
        self._closing = True
        self._notify()
        tasks: list[asyncio.Task[None]] = []
        if self._reaper is not None:
            self._reaper.cancel()
            tasks.append(self._reaper)
            self._reaper = None
        for check in list(self._checks.values()):
            task = self._stop_runner(check)
            if task is not None:
                tasks.append(task)
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for check in list(self._checks.values()):
            await self._close_probe_resources(check)
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def __aenter__(self) -> ConsulDouble:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def address(self) -> str:
        """ "127.0.0.1:<port>" once started."""
        if self._port is None:
            raise RuntimeError("the Consul double is not started")
        return f"{self.config.host}:{self._port}"

    @property
    def port(self) -> int:
        """The port it listens on, once started."""
        if self._port is None:
            raise RuntimeError("the Consul double is not started")
        return self._port

    @property
    def url(self) -> str:
        """ "consul://127.0.0.1:<port>", the form the registry's --backend takes."""
        return f"consul://{self.address}"

    # ----------------------------------------------------------------- test controls

    def clock(self) -> float:
        """The reaper's clock: the injected clock plus everything ``advance`` added."""
        return self._base_clock() + self._clock_offset

    def advance(self, seconds: float) -> None:
        """Move the reaper's clock forward, so a test can prove the one-minute floor of
        DeregisterCriticalServiceAfter without waiting a minute. TTLs, intervals and
        blocking waits keep real time."""
        self._clock_offset += seconds

    def reset_index(self, to: int = 1) -> None:
        """Simulate a snapshot restore or a server restart that loses raft history: every
        index above ``to`` becomes ``to`` and every blocked query is answered at once with
        the lower index, as when Consul abandons its state store. Data is kept."""
        if to < 1:
            raise ValueError("an index is at least 1")
        self._index = min(self._index, to)
        self._node_index = min(self._node_index, to)
        self._services_table_index = min(self._services_table_index, to)
        self._service_index = {k: min(v, to) for k, v in self._service_index.items()}
        if self._extinction_index is not None:
            self._extinction_index = min(self._extinction_index, to)
        self._cat_index = {k: (min(c, to), min(m, to)) for k, (c, m) in self._cat_index.items()}
        self._epoch += 1
        self._notify()

    @property
    def index(self) -> int:
        """The current raft index (the highest modify index in the catalog)."""
        return self._index

    def service_index(self, name: str) -> int:
        """The ``X-Consul-Index`` a health query for ``name`` answers right now."""
        return max(self._health_index(name), 1)

    @property
    def blocked_queries(self) -> int:
        """Blocking queries waiting right now (a test waits for watchers to settle)."""
        return self._blocked

    @property
    def reap_passes(self) -> int:
        """How many times the reaper has run; a test waits for it to move."""
        return self._reap_passes

    def services(self) -> dict[str, dict[str, Any]]:
        """The agent's services as ``GET /v1/agent/services`` shows them (a copy)."""
        return {sid: self._agent_service_json(s) for sid, s in sorted(self._services.items())}

    def checks(self) -> dict[str, dict[str, Any]]:
        """The agent's checks as ``GET /v1/agent/checks`` shows them (a copy)."""
        return {cid: self._agent_check_json(c) for cid, c in sorted(self._checks.items())}

    def check_status(self, check_id: str) -> str | None:
        """The agent's current status of a check, None when there is no such check."""
        check = self._checks.get(check_id)
        return None if check is None else check.status

    def check_output(self, check_id: str) -> str | None:
        """The agent's current output of a check, None when there is no such check."""
        check = self._checks.get(check_id)
        return None if check is None else check.output

    # ----------------------------------------------------------------- local state

    def _add_service(
        self, service: _Service, specs: list[_CheckSpec], *, replace_existing_checks: bool
    ) -> None:
        """Consul's addServiceInternal: replace the service, (re)create its checks with
        the previous status and output of any check that already existed, drop the
        checks the definition leaves out when asked, then sync."""
        existing = set(self._checks_of.get(service.service_id, ()))
        previous = self._services.get(service.service_id)
        self._services[service.service_id] = service
        self._dirty_services.add(service.service_id)
        kept: set[str] = set()
        for i, spec in enumerate(specs):
            check_id = spec.check_id
            if not check_id:
                check_id = f"service:{service.service_id}"
                if len(specs) > 1:
                    check_id += f":{i + 1}"
            kept.add(check_id)
            check = self._new_check(spec, check_id, service)
            old = self._checks.get(check_id)
            if old is not None:
                check.status = old.status
                check.output = old.output
                check.catalog_output = old.catalog_output
            self._install_check(check)
        if replace_existing_checks:
            for check_id in existing - kept:
                self._remove_check(check_id)
        if previous is not None:
            # Checks the new definition leaves in place follow the service's name and tags.
            for check_id in self._checks_of.get(service.service_id, ()):
                check = self._checks[check_id]
                check.service_name = service.name
                check.service_tags = service.tags
                self._dirty_checks.add(check_id)
        self._sync()

    def _new_check(self, spec: _CheckSpec, check_id: str, service: _Service | None) -> _Check:
        reap: float | None = None
        if spec.reap_after_ns > 0:
            reap = max(spec.reap_after_ns / 1e9, REAP_FLOOR_S)
        definition: dict[str, Any] = {}
        if spec.kind == "http":
            definition["HTTP"] = spec.target
            if spec.method:
                definition["Method"] = spec.method
            if spec.header:
                definition["Header"] = spec.header
        elif spec.kind == "grpc":
            definition["GRPC"] = spec.target
            if spec.grpc_use_tls:
                definition["GRPCUseTLS"] = True
        elif spec.kind == "tcp":
            definition["TCP"] = spec.target
        if spec.tls_skip_verify:
            definition["TLSSkipVerify"] = True
        if spec.interval_ns:
            definition["Interval"] = format_go_duration(spec.interval_ns)
        if spec.timeout_ns:
            definition["Timeout"] = format_go_duration(spec.timeout_ns)
        if spec.ttl_ns:
            definition["TTL"] = format_go_duration(spec.ttl_ns)
        if spec.reap_after_ns:
            definition["DeregisterCriticalServiceAfter"] = format_go_duration(spec.reap_after_ns)
        name = spec.name
        if not name and service is not None:
            name = f"Service '{service.name}' check"
        return _Check(
            check_id=check_id,
            name=name,
            service_id=service.service_id if service is not None else "",
            service_name=service.name if service is not None else "",
            service_tags=service.tags if service is not None else None,
            notes=spec.notes,
            kind=spec.kind,
            status=spec.status or CRITICAL,
            ttl_ns=spec.ttl_ns,
            interval_ns=spec.interval_ns,
            timeout_ns=spec.timeout_ns,
            reap_after_s=reap,
            target=spec.target,
            grpc_use_tls=spec.grpc_use_tls,
            tls_skip_verify=spec.tls_skip_verify,
            method=spec.method,
            header=spec.header,
            body=spec.body,
            definition=definition,
        )

    def _install_check(self, check: _Check) -> None:
        """Put a check in the local state (replacing one with the same ID) and start
        what runs it."""
        old = self._checks.get(check.check_id)
        if old is not None:
            self._retire(old)
        self._checks[check.check_id] = check
        self._checks_of.setdefault(check.service_id, set()).add(check.check_id)
        self._dirty_checks.add(check.check_id)
        loop = asyncio.get_running_loop()
        if check.kind == "ttl":
            check.ttl_handle = loop.call_later(check.ttl_ns / 1e9, self._ttl_expired, check)
        elif check.kind in ("grpc", "http", "tcp"):
            check.task = asyncio.create_task(
                self._run_interval_check(check), name=f"consul-double-check:{check.check_id}"
            )

    def _retire(self, check: _Check) -> None:
        """Stop a check's timers and runner; its probe resources close in the background
        (the runner is cancelled first, so nothing uses them)."""
        task = self._stop_runner(check)
        if check.channel is not None or check.session is not None or task is not None:
            closing = asyncio.create_task(self._close_after(task, check))
            self._background.add(closing)
            closing.add_done_callback(self._background.discard)

    async def _close_after(self, task: asyncio.Task[None] | None, check: _Check) -> None:
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._close_probe_resources(check)

    def _stop_runner(self, check: _Check) -> asyncio.Task[None] | None:
        for handle in (check.ttl_handle, check.defer_handle):
            if handle is not None:
                handle.cancel()
        check.ttl_handle = None
        check.defer_handle = None
        task, check.task = check.task, None
        if task is not None:
            task.cancel()
        return task

    async def _close_probe_resources(self, check: _Check) -> None:
        channel, check.channel = check.channel, None
        session, check.session = check.session, None
        if channel is not None:
            await channel.close()
        if session is not None:
            await session.close()

    def _remove_check(self, check_id: str) -> None:
        check = self._checks.pop(check_id, None)
        if check is not None:
            self._dirty_checks.add(check_id)
            ids = self._checks_of.get(check.service_id)
            if ids is not None:
                ids.discard(check_id)
                if not ids:
                    del self._checks_of[check.service_id]
            self._retire(check)

    def _remove_service(self, service_id: str) -> None:
        self._services.pop(service_id, None)
        self._dirty_services.add(service_id)
        for check_id in list(self._checks_of.get(service_id, ())):
            self._remove_check(check_id)
        self._sync()

    def _update_check(self, check: _Check, status: str, output: str) -> None:
        """Consul's State.UpdateCheck: track when the check turned critical; a status
        change syncs at once, an output-only change waits for the deferred write-back."""
        if self._checks.get(check.check_id) is not check:
            return  # replaced or removed while a probe was running
        if status == CRITICAL:
            if check.critical_since is None:
                check.critical_since = self.clock()
        else:
            check.critical_since = None
        if check.status == status and check.output == output:
            return
        interval = self.config.check_update_interval_s
        if interval > 0 and check.status == status:
            check.output = output
            if check.defer_handle is None:
                delay = interval / 2 + self._random.uniform(0, interval)
                check.defer_handle = asyncio.get_running_loop().call_later(
                    delay, self._deferred_sync, check
                )
            return
        check.status = status
        check.output = output
        check.catalog_output = output
        self._dirty_checks.add(check.check_id)
        self._sync()

    def _deferred_sync(self, check: _Check) -> None:
        check.defer_handle = None
        if self._checks.get(check.check_id) is check:
            check.catalog_output = check.output
            self._dirty_checks.add(check.check_id)
            self._sync()

    def _set_ttl_status(self, check: _Check, status: str, output: str) -> None:
        """Consul's CheckTTL.SetStatus: cut the output, update, remember it for the
        expiry message, restart the TTL."""
        output = _truncate_output(output)
        self._update_check(check, status, output)
        check.last_ttl_output = output
        if check.ttl_handle is not None:
            check.ttl_handle.cancel()
        check.ttl_handle = asyncio.get_running_loop().call_later(
            check.ttl_ns / 1e9, self._ttl_expired, check
        )

    def _ttl_expired(self, check: _Check) -> None:
        check.ttl_handle = None
        if check.last_ttl_output:
            output = f"TTL expired (last output before timeout follows): {check.last_ttl_output}"
        else:
            output = "TTL expired"
        self._update_check(check, CRITICAL, output)

    # ----------------------------------------------------------------- probes

    async def _run_interval_check(self, check: _Check) -> None:
        """Consul's CheckGRPC/CheckHTTP/CheckTCP run loop: a random first pause within the
        interval, then probe, update, wait one interval."""
        interval = max(check.interval_ns / 1e9, self.config.min_check_interval_s)
        first = 0.0 if self.config.first_check_at_once else self._random.uniform(0, interval)
        await asyncio.sleep(first)
        while True:
            try:
                status, output = await self._probe(check)
            except Exception as err:  # a probe bug must not silently stop the check
                status, output = CRITICAL, f"the Consul double's probe failed: {err!r}"
            self._update_check(check, status, output)
            await asyncio.sleep(interval)

    async def _probe(self, check: _Check) -> tuple[str, str]:
        timeout = check.timeout_ns / 1e9 if check.timeout_ns > 0 else DEFAULT_CHECK_TIMEOUT_S
        if check.kind == "grpc":
            return await self._probe_grpc(check, timeout)
        if check.kind == "http":
            return await self._probe_http(check, timeout)
        return await self._probe_tcp(check, timeout)

    async def _probe_grpc(self, check: _Check, timeout: float) -> tuple[str, str]:
        """grpc.health.v1.Health/Check on the check's one channel; "host:port/name" asks
        for the service "name"."""
        host, _, service = check.target.partition("/")
        if check.channel is None:
            if check.grpc_use_tls:
                check.channel = grpc.aio.secure_channel(host, grpc.ssl_channel_credentials())
            else:
                check.channel = grpc.aio.insecure_channel(host)
        stub = health_pb2_grpc.HealthStub(check.channel)
        request = health_pb2.HealthCheckRequest(service=service)
        try:
            # grpc enforces the deadline; the timeout is the backstop that keeps a probe
            # bounded. asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a
            # cancel that lands as the call completes, and the check task then never ends.
            async with asyncio.timeout(timeout + 1.0):
                reply = await stub.Check(request, timeout=timeout)
        except grpc.aio.AioRpcError as err:
            code = err.code()
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                desc = "context deadline exceeded"
            else:
                desc = err.details() or ""
            return CRITICAL, f"rpc error: code = {_go_code(code)} desc = {desc}"
        except TimeoutError:
            return CRITICAL, "rpc error: code = DeadlineExceeded desc = context deadline exceeded"
        if reply.status != health_pb2.HealthCheckResponse.SERVING:
            name = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
            return CRITICAL, f"gRPC {check.target} serving status: {name}"
        return PASSING, f"gRPC check {check.target}: success"

    async def _probe_http(self, check: _Check, timeout: float) -> tuple[str, str]:
        """Consul's CheckHTTP: no keep-alive, its User-Agent and Accept, 2xx passing, 429
        warning, anything else critical; the output names the status and the body."""
        method = check.method or "GET"
        if check.session is None:
            connector = aiohttp.TCPConnector(force_close=True)
            check.session = aiohttp.ClientSession(connector=connector)
        headers = {k: ", ".join(v) for k, v in check.header.items()}
        headers.setdefault("User-Agent", "Consul Health Check")
        headers.setdefault("Accept", "text/plain, text/*, */*")
        op = method[:1].upper() + method[1:].lower()
        try:
            async with check.session.request(
                method,
                check.target,
                headers=headers,
                data=check.body or None,
                ssl=False if check.tls_skip_verify else True,
                timeout=aiohttp.ClientTimeout(total=timeout),
            ) as resp:
                body = await resp.read()
                status_code = resp.status
                reason = resp.reason or ""
        except TimeoutError:
            return CRITICAL, (
                f'{op} "{check.target}": context deadline exceeded '
                "(Client.Timeout exceeded while awaiting headers)"
            )
        except aiohttp.ClientError as err:
            return CRITICAL, f'{op} "{check.target}": {err}'
        text = body[-OUTPUT_MAX_BYTES:].decode(errors="replace")
        result = f"HTTP {method} {check.target}: {status_code} {reason} Output: {text}"
        if 200 <= status_code <= 299:
            return PASSING, result
        if status_code == 429:
            return WARNING, result
        return CRITICAL, result

    async def _probe_tcp(self, check: _Check, timeout: float) -> tuple[str, str]:
        """Consul's CheckTCP: a connection that opens is passing."""
        host, _, port = check.target.rpartition(":")
        try:
            async with asyncio.timeout(timeout):
                _, writer = await asyncio.open_connection(host.strip("[]"), int(port))
        except TimeoutError:
            return CRITICAL, f"dial tcp {check.target}: i/o timeout"
        except (OSError, ValueError) as err:
            return CRITICAL, f"dial tcp {check.target}: {err}"
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return PASSING, f"TCP connect {check.target}: Success"

    # ----------------------------------------------------------------- reaper

    async def _reap_loop(self) -> None:
        while True:
            await asyncio.sleep(self.config.reap_interval_s)
            self._reap_once()
            self._reap_passes += 1

    def _reap_once(self) -> None:
        """Consul's reapServicesInternal: a service goes when one of its checks that
        carries DeregisterCriticalServiceAfter has been critical for longer than it."""
        now = self.clock()
        reaped: set[str] = set()
        for check in list(self._checks.values()):
            if not check.service_id or check.service_id in reaped:
                continue
            if check.reap_after_s is None or check.critical_since is None:
                continue
            if now - check.critical_since > check.reap_after_s:
                reaped.add(check.service_id)
                self._remove_service(check.service_id)

    # ----------------------------------------------------------------- catalog sync

    def _service_repr(self, s: _Service) -> dict[str, Any]:
        """The service as the catalog stores it (structs.NodeService, no indexes)."""
        rep: dict[str, Any] = {}
        if s.kind:
            rep["Kind"] = s.kind
        rep.update(
            {
                "ID": s.service_id,
                "Service": s.name,
                "Tags": list(s.tags) if s.tags is not None else None,
                "Address": s.address,
            }
        )
        if s.tagged_addresses:
            rep["TaggedAddresses"] = json.loads(json.dumps(s.tagged_addresses))
        rep.update(
            {
                "Meta": dict(s.meta) if s.meta is not None else None,
                "Port": s.port,
                "Weights": dict(s.weights),
                "EnableTagOverride": s.enable_tag_override,
                "Proxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
                "Connect": {},
                "PeerName": "",
            }
        )
        return rep

    def _check_repr(self, c: _Check, *, output: str) -> dict[str, Any]:
        """The check as structs.HealthCheck shows it (no indexes)."""
        return {
            "Node": self.config.node_name,
            "CheckID": c.check_id,
            "Name": c.name,
            "Status": c.status,
            "Notes": c.notes,
            "Output": output,
            "ServiceID": c.service_id,
            "ServiceName": c.service_name,
            "ServiceTags": list(c.service_tags) if c.service_tags is not None else [],
            "Type": c.kind,
            "Interval": format_go_duration(c.interval_ns) if c.interval_ns else "",
            "Timeout": format_go_duration(c.timeout_ns) if c.timeout_ns else "",
            "ExposedPort": 0,
            "Definition": dict(c.definition),
        }

    def _sync(self) -> None:
        """Write the local changes into the catalog: one raft index for everything that
        changed, per-name indexes for the names it touched, watchers woken. Nothing
        changes (and no index moves) when the catalog already agrees. Only what was
        marked dirty since the last sync is compared (anti-entropy per entry)."""
        dirty_services, self._dirty_services = self._dirty_services, set()
        dirty_checks, self._dirty_checks = self._dirty_checks, set()
        touched: set[str] = set()
        services_changed = False
        node_level = False
        new_services: dict[str, dict[str, Any] | None] = {}
        new_checks: dict[str, dict[str, Any] | None] = {}
        for sid in dirty_services:
            old = self._cat_services.get(sid)
            local = self._services.get(sid)
            rep = self._service_repr(local) if local is not None else None
            if rep == old:
                continue
            new_services[sid] = rep
            services_changed = True
            if rep is not None:
                touched.add(rep["Service"])
            if old is not None:
                touched.add(old["Service"])
        for cid in dirty_checks:
            old = self._cat_checks.get(cid)
            check = self._checks.get(cid)
            rep = self._check_repr(check, output=check.catalog_output) if check else None
            if rep == old:
                continue
            new_checks[cid] = rep
            for r in (rep, old):
                if r is None:
                    continue
                if r["ServiceName"]:
                    touched.add(r["ServiceName"])
                else:
                    node_level = True
        if not new_services and not new_checks:
            return
        self._index += 1
        idx = self._index
        for sid, rep in new_services.items():
            old = self._cat_services.get(sid)
            key = f"s/{sid}"
            if old is not None:
                names = self._cat_names[old["Service"]]
                names.discard(sid)
                if not names:
                    del self._cat_names[old["Service"]]
            if rep is None:
                del self._cat_services[sid]
                self._cat_index.pop(key, None)
                continue
            self._cat_services[sid] = rep
            self._cat_names.setdefault(rep["Service"], set()).add(sid)
            create = self._cat_index.get(key, (idx, idx))[0]
            self._cat_index[key] = (create, idx)
        for cid, rep in new_checks.items():
            old = self._cat_checks.get(cid)
            key = f"c/{cid}"
            if old is not None:
                ids = self._cat_checks_of[old["ServiceID"]]
                ids.discard(cid)
                if not ids:
                    del self._cat_checks_of[old["ServiceID"]]
            if rep is None:
                del self._cat_checks[cid]
                self._cat_index.pop(key, None)
                continue
            self._cat_checks[cid] = rep
            self._cat_checks_of.setdefault(rep["ServiceID"], set()).add(cid)
            create = self._cat_index.get(key, (idx, idx))[0]
            self._cat_index[key] = (create, idx)
        if services_changed:
            self._services_table_index = idx
        if node_level:
            # A node check is part of every service entry on the node.
            touched |= set(self._cat_names) | {"consul"}
        for name in touched:
            if name in self._cat_names or name == "consul":
                self._service_index[name] = idx
            elif name in self._service_index:
                del self._service_index[name]
                self._extinction_index = idx
        self._notify()

    def _notify(self) -> None:
        """Wake every blocked query; each re-checks its own index."""
        self._changed.set()
        self._changed = asyncio.Event()

    def _health_index(self, name: str) -> int:
        """Consul's maxIndexForService: the name's index while it has instances, else the
        last extinction index, else the catalog's highest index."""
        if name in self._service_index:
            return self._service_index[name]
        if self._extinction_index is not None:
            return self._extinction_index
        return self._index

    async def _block(self, request: web.Request, current: Callable[[], int]) -> int:
        """Consul's blockingQuery: with ``?index`` above 0, wait while the result's index
        is <= it, up to ``wait`` plus jitter; a reset (snapshot restore) or shutdown
        answers at once. Returns the index to answer with (at least 1)."""
        min_index, wait_s = _wait_params(request)
        if min_index == 0:
            return max(current(), 1)
        self._blocked += 1
        try:
            return await self._wait(current, min_index, wait_s)
        finally:
            self._blocked -= 1

    async def _wait(self, current: Callable[[], int], min_index: int, wait_s: float) -> int:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s + self._random.uniform(0, wait_s / 16)
        epoch = self._epoch
        while True:
            idx = max(current(), 1)
            if idx > min_index or self._closing:
                return idx
            remaining = deadline - loop.time()
            if remaining <= 0:
                return idx
            changed = self._changed
            try:
                async with asyncio.timeout(remaining):
                    await changed.wait()
            except TimeoutError:
                return max(current(), 1)
            if self._epoch != epoch:
                return max(current(), 1)

    # ----------------------------------------------------------------- rendering

    def _node_json(self) -> dict[str, Any]:
        addr = self.config.host
        return {
            "ID": self._node_id,
            "Node": self.config.node_name,
            "Address": addr,
            "Datacenter": self.config.datacenter,
            "TaggedAddresses": {"lan": addr, "lan_ipv4": addr, "wan": addr, "wan_ipv4": addr},
            "Meta": {"consul-network-segment": "", "consul-version": CONSUL_VERSION},
            "CreateIndex": self._node_index,
            "ModifyIndex": self._node_index,
        }

    def _server_service(self) -> dict[str, Any]:
        idx = self._service_index.get("consul", 1)
        return {
            "ID": "consul",
            "Service": "consul",
            "Tags": [],
            "Address": "",
            "Meta": {"raft_version": "3", "version": CONSUL_VERSION},
            "Port": 8300,
            "Weights": {"Passing": 1, "Warning": 1},
            "EnableTagOverride": False,
            "Proxy": {"Mode": "", "MeshGateway": {}, "Expose": {}},
            "Connect": {},
            "PeerName": "",
            "CreateIndex": min(idx, self._node_index + 1),
            "ModifyIndex": min(idx, self._node_index + 1),
        }

    def _serf_check(self) -> dict[str, Any]:
        return {
            "Node": self.config.node_name,
            "CheckID": "serfHealth",
            "Name": "Serf Health Status",
            "Status": PASSING,
            "Notes": "",
            "Output": "Agent alive and reachable",
            "ServiceID": "",
            "ServiceName": "",
            "ServiceTags": [],
            "Type": "",
            "Interval": "",
            "Timeout": "",
            "ExposedPort": 0,
            "Definition": {},
            "CreateIndex": self._node_index,
            "ModifyIndex": self._node_index,
        }

    def _cat_service_json(self, sid: str) -> dict[str, Any]:
        create, modify = self._cat_index[f"s/{sid}"]
        return {**self._cat_services[sid], "CreateIndex": create, "ModifyIndex": modify}

    def _cat_check_json(self, cid: str) -> dict[str, Any]:
        create, modify = self._cat_index[f"c/{cid}"]
        return {**self._cat_checks[cid], "CreateIndex": create, "ModifyIndex": modify}

    def _node_checks(self) -> list[dict[str, Any]]:
        checks = [self._serf_check()]
        checks += [self._cat_check_json(cid) for cid in sorted(self._cat_checks_of.get("", ()))]
        return checks

    def _instances(self, name: str) -> list[dict[str, Any]]:
        if name == "consul":
            return [self._server_service()]
        return [self._cat_service_json(sid) for sid in sorted(self._cat_names.get(name, ()))]

    def _service_checks(self, service_id: str) -> list[dict[str, Any]]:
        return [
            self._cat_check_json(cid) for cid in sorted(self._cat_checks_of.get(service_id, ()))
        ]

    def _health_entries(self, name: str) -> list[dict[str, Any]]:
        node = self._node_json()
        node_checks = self._node_checks()
        return [
            {"Node": node, "Service": svc, "Checks": node_checks + self._service_checks(svc["ID"])}
            for svc in self._instances(name)
        ]

    def _agent_service_json(self, s: _Service) -> dict[str, Any]:
        """api.AgentService as buildAgentService makes it: Tags and Meta never null."""
        out: dict[str, Any] = {}
        if s.kind:
            out["Kind"] = s.kind
        out.update(
            {
                "ID": s.service_id,
                "Service": s.name,
                "Tags": list(s.tags or []),
                "Meta": dict(s.meta or {}),
                "Port": s.port,
                "Address": s.address,
            }
        )
        if s.tagged_addresses:
            out["TaggedAddresses"] = json.loads(json.dumps(s.tagged_addresses))
        out.update(
            {
                "Weights": dict(s.weights),
                "EnableTagOverride": s.enable_tag_override,
                "Datacenter": self.config.datacenter,
            }
        )
        return out

    def _agent_check_json(self, c: _Check) -> dict[str, Any]:
        return {**self._check_repr(c, output=c.output), "CreateIndex": 0, "ModifyIndex": 0}

    # ----------------------------------------------------------------- HTTP

    def _routes(self, app: web.Application) -> None:
        r = app.router
        r.add_get("/v1/status/leader", self._h_leader)
        r.add_get("/v1/status/peers", self._h_peers)
        r.add_get("/v1/agent/self", self._h_self)
        r.add_get("/v1/agent/services", self._h_agent_services)
        r.add_get("/v1/agent/checks", self._h_agent_checks)
        r.add_put("/v1/agent/service/register", self._h_register)
        r.add_put("/v1/agent/service/deregister/{service_id:.+}", self._h_deregister)
        r.add_put("/v1/agent/service/maintenance/{service_id:.*}", self._h_maintenance)
        r.add_get("/v1/agent/service/{service_id:.+}", self._h_agent_service)
        r.add_put("/v1/agent/check/register", self._h_check_register)
        r.add_put("/v1/agent/check/deregister/{check_id:.+}", self._h_check_deregister)
        r.add_put("/v1/agent/check/pass/{check_id:.+}", self._h_check_pass)
        r.add_put("/v1/agent/check/warn/{check_id:.+}", self._h_check_warn)
        r.add_put("/v1/agent/check/fail/{check_id:.+}", self._h_check_fail)
        r.add_put("/v1/agent/check/update/{check_id:.+}", self._h_check_update)
        r.add_get("/v1/health/service/{service:.+}", self._h_health_service)
        r.add_get("/v1/health/checks/{service:.+}", self._h_health_checks)
        r.add_get("/v1/catalog/services", self._h_catalog_services)
        r.add_get("/v1/catalog/service/{service:.+}", self._h_catalog_service)

    @web.middleware
    async def _errors(
        self, request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """Consul answers errors as plain text with the status; the unsupported query
        options are refused here for every endpoint."""
        try:
            if "filter" in request.query:
                raise ConsulHTTPError(400, "the Consul double does not implement ?filter")
            if "stale" in request.query and "consistent" in request.query:
                raise ConsulHTTPError(
                    400, "Cannot specify ?stale with ?consistent, conflicting semantics."
                )
            dc = request.query.get("dc", "")
            if dc and dc != self.config.datacenter:
                raise ConsulHTTPError(500, "No path to datacenter")
            return await handler(request)
        except ConsulHTTPError as err:
            return web.Response(status=err.status, text=err.text, content_type="text/plain")
        except web.HTTPMethodNotAllowed as err:
            return web.Response(
                status=405,
                text=f"method {request.method} not allowed",
                headers={"Allow": ",".join(sorted(err.allowed_methods))},
                content_type="text/plain",
            )
        except web.HTTPNotFound:
            return web.Response(status=404, text="404 page not found\n", content_type="text/plain")

    def _json(self, obj: Any, *, index: int | None = None) -> web.Response:
        headers = {"X-Consul-Default-Acl-Policy": "allow"}
        if index is not None:
            headers.update(
                {
                    "X-Consul-Index": str(index),
                    "X-Consul-Knownleader": "true",
                    "X-Consul-Lastcontact": "0",
                    "X-Consul-Effective-Consistency": "leader",
                }
            )
        # orjson: Consul renders in Go; the double should not be the bench's bottleneck.
        return web.Response(
            body=orjson.dumps(obj), content_type="application/json", headers=headers
        )

    @staticmethod
    def _ok() -> web.Response:
        return web.Response(status=200)

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw.strip():
            raise ConsulHTTPError(400, "Request decode failed: EOF")
        try:
            return json.loads(raw)
        except ValueError as err:
            raise ConsulHTTPError(400, f"Request decode failed: {err}") from None

    async def _h_leader(self, request: web.Request) -> web.Response:
        return self._json(SERVER_RPC_ADDR)

    async def _h_peers(self, request: web.Request) -> web.Response:
        return self._json([SERVER_RPC_ADDR])

    async def _h_self(self, request: web.Request) -> web.Response:
        return self._json(
            {
                "Config": {
                    "Datacenter": self.config.datacenter,
                    "PrimaryDatacenter": self.config.datacenter,
                    "NodeName": self.config.node_name,
                    "NodeID": self._node_id,
                    "Revision": "double",
                    "Server": True,
                    "Version": CONSUL_VERSION,
                },
                "Member": {
                    "Name": self.config.node_name,
                    "Addr": self.config.host,
                    "Port": 8301,
                    "Status": 1,
                },
                "Meta": {"consul-network-segment": "", "consul-version": CONSUL_VERSION},
            }
        )

    async def _h_agent_services(self, request: web.Request) -> web.Response:
        return self._json(self.services())

    async def _h_agent_checks(self, request: web.Request) -> web.Response:
        return self._json(self.checks())

    async def _h_agent_service(self, request: web.Request) -> web.Response:
        """One local service with its ContentHash; ``?hash=`` blocks until it differs
        (Consul's hash-based blocking for agent endpoints)."""
        service_id = request.match_info["service_id"]
        _, wait_s = _wait_params(request)
        wanted = request.query.get("hash", "")

        def render() -> tuple[str, dict[str, Any]]:
            service = self._services.get(service_id)
            if service is None:
                raise ConsulHTTPError(404, f"unknown service ID: {service_id}")
            body = self._agent_service_json(service)
            digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
            return digest, {**body, "ContentHash": digest}

        digest, body = render()
        if wanted and wanted == digest:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + wait_s + self._random.uniform(0, wait_s / 16)
            while digest == wanted and not self._closing:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(remaining):
                        await self._changed.wait()
                digest, body = render()
        response = self._json(body)
        response.headers["X-Consul-Contenthash"] = digest
        return response

    async def _h_register(self, request: web.Request) -> web.Response:
        """PUT /v1/agent/service/register, validated in Consul's order."""
        d = _norm(await self._body(request), "service definition")
        specs: list[_CheckSpec] = []
        if d.get("check"):
            specs.append(_decode_check(d["check"], definition_id=False))
        many = d.get("checks") or []
        if not isinstance(many, list):
            raise ConsulHTTPError(400, "Request decode failed: Checks must be a list")
        specs += [_decode_check(raw, definition_id=False) for raw in many]
        name = _str_field(d, "name", "Name")
        if not name:
            raise ConsulHTTPError(400, "Missing service name")
        address = _str_field(d, "address", "Address")
        with contextlib.suppress(ValueError):
            if address and ipaddress.ip_address(address).is_unspecified:
                raise ConsulHTTPError(400, "Invalid service address")
        port = d.get("port", 0) or 0
        if not isinstance(port, int) or isinstance(port, bool):
            raise ConsulHTTPError(
                400, "Request decode failed: json: cannot unmarshal into field Port of type int"
            )
        tags_raw = d.get("tags")
        if tags_raw is not None and (
            not isinstance(tags_raw, list) or not all(isinstance(t, str) for t in tags_raw)
        ):
            raise ConsulHTTPError(400, "Request decode failed: Tags must be a list of strings")
        meta_raw = d.get("meta")
        if meta_raw is not None and (
            not isinstance(meta_raw, dict)
            or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta_raw.items())
        ):
            raise ConsulHTTPError(400, "Request decode failed: Meta must map strings to strings")
        weights = {"Passing": 1, "Warning": 1}
        if d.get("weights") is not None:
            w = _norm(d["weights"], "Weights")
            passing, warning = w.get("passing", 0), w.get("warning", 0)
            if not isinstance(passing, int) or not isinstance(warning, int):
                raise ConsulHTTPError(400, "Request decode failed: Weights must be integers")
            if passing < 1:
                raise ConsulHTTPError(400, "Invalid Weights: Passing must be greater than 0")
            if warning < 0:
                raise ConsulHTTPError(
                    400, "Invalid Weights: Warning must be greater or equal than 0"
                )
            if passing > 65535 or warning > 65535:
                raise ConsulHTTPError(
                    400, "Invalid Weights: DNS Weight must be between 0 and 65535"
                )
            weights = {"Passing": passing, "Warning": warning}
        # Go keeps a JSON [] or {} as empty but non-nil (shown as [] / {}) and an absent one
        # as nil (shown as null in the catalog); py-consul omits empty ones.
        meta: dict[str, str] | None = dict(meta_raw) if meta_raw is not None else None
        _validate_meta(meta or {})
        for spec in specs:
            _validate_check(spec)
        for spec in specs:
            if spec.status and spec.status not in STATUSES:
                raise ConsulHTTPError(
                    400, "Status for checks must 'passing', 'warning', 'critical'"
                )
        tagged: dict[str, dict[str, Any]] = {}
        with contextlib.suppress(ValueError):
            ip = ipaddress.ip_address(address)
            family = "ipv4" if ip.version == 4 else "ipv6"
            tagged = {
                f"lan_{family}": {"Address": address, "Port": port},
                f"wan_{family}": {"Address": address, "Port": port},
            }
        service = _Service(
            service_id=_str_field(d, "id", "ID") or name,
            name=name,
            address=address,
            port=port,
            tags=list(tags_raw) if tags_raw is not None else None,
            meta=meta,
            weights=weights,
            enable_tag_override=_bool_field(d, "enabletagoverride", "EnableTagOverride"),
            kind=_str_field(d, "kind", "Kind"),
            tagged_addresses=tagged,
        )
        replace = request.query.getall("replace-existing-checks", [])
        replace_existing = bool(replace) and request.query.get("replace-existing-checks") in (
            "",
            "true",
        )
        self._add_service(service, specs, replace_existing_checks=replace_existing)
        return self._ok()

    def _vet_service(self, service_id: str) -> _Service:
        service = self._services.get(service_id)
        if service is None:
            raise ConsulHTTPError(
                404,
                f'Unknown service ID "{service_id}". Ensure that the service ID is passed, '
                "not the service name.",
            )
        return service

    def _vet_check(self, check_id: str) -> _Check:
        check = self._checks.get(check_id)
        if check is None:
            raise ConsulHTTPError(
                404,
                f'Unknown check ID "{check_id}". Ensure that the check ID is passed, '
                "not the check name.",
            )
        return check

    async def _h_deregister(self, request: web.Request) -> web.Response:
        service_id = request.match_info["service_id"]
        self._vet_service(service_id)
        self._remove_service(service_id)
        return self._ok()

    async def _h_maintenance(self, request: web.Request) -> web.Response:
        """Maintenance mode: a critical ``_service_maintenance:<id>`` check whose Notes
        carry the reason; enabling twice keeps the first reason."""
        service_id = request.match_info["service_id"]
        if not service_id:
            raise ConsulHTTPError(400, "Missing service ID")
        if "enable" not in request.query:
            raise ConsulHTTPError(400, "Missing value for enable")
        raw = request.query["enable"]
        try:
            enable = _parse_bool(raw)
        except ValueError:
            raise ConsulHTTPError(400, f'Invalid value for enable: "{raw}"') from None
        service = self._vet_service(service_id)
        check_id = MAINT_PREFIX + service_id
        if enable:
            if check_id not in self._checks:
                check = _Check(
                    check_id=check_id,
                    name="Service Maintenance Mode",
                    service_id=service.service_id,
                    service_name=service.name,
                    service_tags=service.tags,
                    notes=request.query.get("reason", "") or DEFAULT_MAINT_REASON,
                    kind="maintenance",
                    status=CRITICAL,
                )
                self._install_check(check)
                self._sync()
        elif check_id in self._checks:
            self._remove_check(check_id)
            self._sync()
        return self._ok()

    async def _h_check_register(self, request: web.Request) -> web.Response:
        """PUT /v1/agent/check/register: a check on the node or on a service."""
        spec = _decode_check(await self._body(request), definition_id=True)
        if not spec.name:
            raise ConsulHTTPError(400, "Missing check name")
        if spec.status and spec.status not in STATUSES:
            raise ConsulHTTPError(400, "Bad check status")
        _validate_check(spec)
        service: _Service | None = None
        if spec.service_id:
            service = self._services.get(spec.service_id)
            if service is None:
                raise ConsulHTTPError(404, f'ServiceID "{spec.service_id}" does not exist')
        check = self._new_check(spec, spec.check_id or spec.name, service)
        self._install_check(check)
        self._sync()
        return self._ok()

    async def _h_check_deregister(self, request: web.Request) -> web.Response:
        check_id = request.match_info["check_id"]
        self._vet_check(check_id)
        self._remove_check(check_id)
        self._sync()
        return self._ok()

    def _ttl_update(self, check_id: str, status: str, output: str) -> web.Response:
        check = self._vet_check(check_id)
        if check.kind != "ttl":
            raise ConsulHTTPError(500, f'CheckID "{check_id}" does not have associated TTL')
        self._set_ttl_status(check, status, output)
        return self._ok()

    async def _h_check_pass(self, request: web.Request) -> web.Response:
        return self._ttl_update(request.match_info["check_id"], PASSING, _note(request))

    async def _h_check_warn(self, request: web.Request) -> web.Response:
        return self._ttl_update(request.match_info["check_id"], WARNING, _note(request))

    async def _h_check_fail(self, request: web.Request) -> web.Response:
        return self._ttl_update(request.match_info["check_id"], CRITICAL, _note(request))

    async def _h_check_update(self, request: web.Request) -> web.Response:
        """PUT /v1/agent/check/update/<id> with {"Status", "Output"}."""
        d = _norm(await self._body(request), "update")
        status = _str_field(d, "status", "Status")
        if status not in STATUSES:
            raise ConsulHTTPError(400, f"Invalid check status: '{status}'")
        output = _truncate_output(_str_field(d, "output", "Output"))
        return self._ttl_update(request.match_info["check_id"], status, output)

    async def _h_health_service(self, request: web.Request) -> web.Response:
        """GET /v1/health/service/<name>: {Node, Service, Checks} per instance, node
        checks first; ``passing`` keeps entries whose checks all pass; ``tag`` (repeatable,
        case-insensitive) keeps instances carrying every tag; blocking on the name's
        index."""
        name = request.match_info["service"]
        passing = False
        if "passing" in request.query:
            raw = request.query["passing"]
            try:
                passing = True if raw == "" else _parse_bool(raw)
            except ValueError:
                raise ConsulHTTPError(400, "Invalid value for ?passing") from None
        tags = [t.lower() for t in request.query.getall("tag", [])]
        index = await self._block(request, lambda: self._health_index(name))
        entries = self._health_entries(name)
        if tags:
            entries = [
                e
                for e in entries
                if all(t in [x.lower() for x in (e["Service"]["Tags"] or [])] for t in tags)
            ]
        if passing:
            entries = [e for e in entries if all(c["Status"] == PASSING for c in e["Checks"])]
        return self._json(entries, index=index)

    async def _h_health_checks(self, request: web.Request) -> web.Response:
        """GET /v1/health/checks/<name>: the catalog's checks of the name's instances."""
        name = request.match_info["service"]
        index = await self._block(request, lambda: self._health_index(name))
        checks: list[dict[str, Any]] = []
        for svc in self._instances(name):
            checks += self._service_checks(svc["ID"])
        return self._json(checks, index=index)

    async def _h_catalog_services(self, request: web.Request) -> web.Response:
        """GET /v1/catalog/services: name -> the union of its instances' tags."""
        index = await self._block(request, lambda: self._services_table_index)
        out: dict[str, list[str]] = {"consul": []}
        for rep in self._cat_services.values():
            tags = out.setdefault(rep["Service"], [])
            for tag in rep["Tags"] or []:
                if tag not in tags:
                    tags.append(tag)
        return self._json({k: sorted(v) for k, v in sorted(out.items())}, index=index)

    async def _h_catalog_service(self, request: web.Request) -> web.Response:
        """GET /v1/catalog/service/<name>: structs.ServiceNode per instance."""
        name = request.match_info["service"]
        tags = [t.lower() for t in request.query.getall("tag", [])]
        index = await self._block(request, lambda: self._health_index(name))
        node = self._node_json()
        out = []
        for svc in self._instances(name):
            if tags and not all(t in [x.lower() for x in (svc["Tags"] or [])] for t in tags):
                continue
            out.append(
                {
                    "ID": node["ID"],
                    "Node": node["Node"],
                    "Address": node["Address"],
                    "Datacenter": node["Datacenter"],
                    "TaggedAddresses": node["TaggedAddresses"],
                    "NodeMeta": node["Meta"],
                    "ServiceKind": svc.get("Kind", ""),
                    "ServiceID": svc["ID"],
                    "ServiceName": svc["Service"],
                    "ServiceTags": svc["Tags"] or [],
                    "ServiceAddress": svc["Address"],
                    "ServiceTaggedAddresses": svc.get("TaggedAddresses"),
                    "ServiceWeights": svc["Weights"],
                    "ServiceMeta": svc["Meta"] or {},
                    "ServicePort": svc["Port"],
                    "ServiceEnableTagOverride": svc["EnableTagOverride"],
                    "ServiceProxy": svc["Proxy"],
                    "ServiceConnect": svc["Connect"],
                    "CreateIndex": svc["CreateIndex"],
                    "ModifyIndex": svc["ModifyIndex"],
                }
            )
        return self._json(out, index=index)


def _note(request: web.Request) -> str:
    return request.query.get("note", "")


def _wait_params(request: web.Request) -> tuple[int, float]:
    """Consul's parseWait: ``index`` (uint) and ``wait`` (Go duration; none or 0 means
    5 min; more than 10 min means 10 min)."""
    wait_s = 0.0
    raw_wait = request.query.get("wait", "")
    if raw_wait:
        try:
            wait_s = parse_go_duration(raw_wait)
        except ValueError:
            raise ConsulHTTPError(400, "Invalid wait time") from None
    raw_index = request.query.get("index", "")
    index = 0
    if raw_index:
        if not raw_index.isdigit():
            raise ConsulHTTPError(400, "Invalid index")
        index = int(raw_index)
        if index >= 2**64:
            raise ConsulHTTPError(400, "Invalid index")
    if wait_s <= 0:
        wait_s = DEFAULT_WAIT_S
    return index, min(wait_s, MAX_WAIT_S)


# --------------------------------------------------------------------------- clients


def consul_client(target: ConsulDouble | str) -> Any:
    """A ``consul.aio.Consul`` for the double (or a "host:port"); call inside the loop.

    py-consul 1.8 builds its aiohttp connector with the deprecated ``ssl_context``
    argument, a DeprecationWarning that this project's ``filterwarnings = error`` would
    turn into a failure; only that warning is silenced, only while the client is built.
    """
    import consul.aio  # type: ignore[import-untyped]  # py-consul ships no type hints

    address = target.address if isinstance(target, ConsulDouble) else target
    host, _, port = address.rpartition(":")
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="ssl_context is deprecated", category=DeprecationWarning
        )
        return consul.aio.Consul(host=host, port=int(port))


# --------------------------------------------------------------------------- child process

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


class ConsulDoubleProcess:
    """The double in a child process (``python -m tests.consul_double``), for tests that
    run registry processes against it and kill things; stopped with SIGTERM."""

    def __init__(self, *, port: int = 0, args: tuple[str, ...] = ()) -> None:
        """``args`` are extra CLI options (``--first-check-at-once``, ``--reap-interval-s
        0.1``, ...)."""
        self.requested_port = port
        self.args = args
        self.proc: subprocess.Popen[str] | None = None
        self._address: str | None = None
        self._stderr: Any = None

    @property
    def address(self) -> str:
        """ "127.0.0.1:<port>" once started."""
        if self._address is None:
            raise RuntimeError("the Consul double process is not started")
        return self._address

    @property
    def url(self) -> str:
        """ "consul://127.0.0.1:<port>"."""
        return f"consul://{self.address}"

    def start(self) -> None:
        """Start it and wait for the address line it prints when it listens."""
        cmd = [sys.executable, "-m", "tests.consul_double", "--port", str(self.requested_port)]
        # stderr goes to a file: an undrained pipe could block a long-running child.
        self._stderr = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(
            [*cmd, *self.args],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(self.proc.stdout, selectors.EVENT_READ)
            if not sel.select(timeout=START_TIMEOUT_S):
                self.kill()
                raise RuntimeError("the Consul double process printed no address in time")
        line = self.proc.stdout.readline().strip()
        if not line:
            err = self.stderr_text()
            self.kill()
            raise RuntimeError(f"the Consul double process did not start:\n{err}")
        self._address = line

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it is still there after a few seconds."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT_S)
        if proc.stdout is not None:
            proc.stdout.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def stderr_text(self) -> str:
        """What the child wrote to stderr so far (for a failure message)."""
        if self._stderr is None:
            return ""
        self._stderr.seek(0)
        return str(self._stderr.read())

    def kill(self) -> None:
        """SIGKILL: the agent vanishes without answering anything."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
        self.stop()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> ConsulDoubleProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _parse_args(argv: list[str] | None) -> ConsulDoubleConfig:
    parser = argparse.ArgumentParser(
        prog="python -m tests.consul_double",
        description="A Consul agent HTTP API double; prints host:port once it listens.",
    )
    defaults = ConsulDoubleConfig()
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--port", type=int, default=defaults.port)
    parser.add_argument("--reap-interval-s", type=float, default=defaults.reap_interval_s)
    parser.add_argument(
        "--check-update-interval-s", type=float, default=defaults.check_update_interval_s
    )
    parser.add_argument("--min-check-interval-s", type=float, default=defaults.min_check_interval_s)
    parser.add_argument("--first-check-at-once", action="store_true")
    parser.add_argument("--seed", type=int, default=None)
    ns = parser.parse_args(argv)
    return ConsulDoubleConfig(
        host=ns.host,
        port=ns.port,
        reap_interval_s=ns.reap_interval_s,
        check_update_interval_s=ns.check_update_interval_s,
        min_check_interval_s=ns.min_check_interval_s,
        first_check_at_once=ns.first_check_at_once,
        seed=ns.seed,
    )


async def _serve(config: ConsulDoubleConfig) -> None:
    double = ConsulDouble(config)
    await double.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(double.address, flush=True)
    try:
        await stop.wait()
    finally:
        await double.stop()


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM or SIGINT."""
    asyncio.run(_serve(_parse_args(argv)))
    return 0


# --------------------------------------------------------------------------- fixtures

_CONFIG_FIELDS = {f.name for f in fields(ConsulDoubleConfig)}


@pytest.fixture
async def consul_double_factory() -> AsyncIterator[Callable[..., Awaitable[ConsulDouble]]]:
    """``await make(first_check_at_once=True, reap_interval_s=0.05, clock=...)``: a started
    double with those ConsulDoubleConfig fields; every one made is stopped afterwards."""
    made: list[ConsulDouble] = []

    async def make(*, clock: Callable[[], float] = time.monotonic, **options: Any) -> ConsulDouble:
        unknown = set(options) - _CONFIG_FIELDS
        if unknown:
            raise TypeError(f"unknown ConsulDoubleConfig fields: {sorted(unknown)}")
        double = ConsulDouble(ConsulDoubleConfig(**options), clock=clock)
        await double.start()
        made.append(double)
        return double

    try:
        yield make
    finally:
        for double in reversed(made):
            await double.stop()


@pytest.fixture
async def consul_double(
    consul_double_factory: Callable[..., Awaitable[ConsulDouble]],
) -> ConsulDouble:
    """A started double with Consul's defaults, stopped after the test."""
    return await consul_double_factory()


@pytest.fixture
def consul_double_process() -> Iterator[ConsulDoubleProcess]:
    """The double as a child process (Consul's defaults), stopped after the test."""
    proc = ConsulDoubleProcess()
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


if __name__ == "__main__":
    sys.exit(main())

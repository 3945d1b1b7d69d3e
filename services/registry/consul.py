"""The registry on Consul (``--registry consul://host:8500``), through py-consul's asyncio client.

Consul holds every registration and judges liveness: each agent is an instance
of one of the services ``meshwright-agent-<k>`` (a shard, see below) with a GRPC
check of the agent's endpoint and a TTL check of its lease (``_consul_codec``
has the mapping). The registry
keeps no state of its own, so every registry replica pointed at one Consul
serves the same agents. The replicas must share one Consul *agent* (the HTTP
address they are given): checks live on the Consul agent that registered them,
and a heartbeat is a write to its TTL check.

States come from check status, not from deregistration (Consul's reaper has a
one-minute floor and runs lazily):

- STARTING: the GRPC check has not run yet (Consul gives it no output until then);
- ACTIVE: both checks passing;
- DRAINING: the lease check is ``warning`` (a draining heartbeat warns it);
- INACTIVE: the lease check ran out (critical, "TTL expired") or the GRPC check
  fails after it ran (the reason is its output), or another check of the
  instance is critical (maintenance mode, a failing node);
- ERROR: the lease check is critical with an error in its note (a heartbeat with
  an error fails it, and so does ``report_failure``);
- STOPPED: registered again with ``mw_stopped`` in Meta and one critical marker
  check; ``sweep`` (any replica, idempotently) deregisters it once it has been
  stopped ``stopped_retention_s``, and Consul's reaper does should no registry run.

Consul's reaper removes an instance whose checks stayed critical longer than
DeregisterCriticalServiceAfter (``deregister_after_s``, at least 60 s): a lapsed
agent, one whose health check keeps failing, and also one that stays ERROR (its
lease check is critical while it reports the error). ``sweep`` leaves all that to it.

Heartbeats are one ``PUT /v1/agent/check/{pass,warn,fail}/mw-ttl:<agent>:<lease>``.
The lease id is in the check's id, so renewing is check-and-set by construction:
a stale lease names no check (404), and only on that path is the service read to
say which error it is (``AgentNotFound``, ``AgentStopped`` or ``LeaseMismatch``).

The note of a heartbeat is chosen so that heartbeats cost watchers nothing: Consul
raises its index when a check's output or status changes, and every index raise
makes every blocking query on the agent's shard (this backend's follower of it in
each replica, anyone else watching) read every instance of it again, cards and all. At
2,000 heartbeats a second a note that changed every time (a timestamp, say) would
be 2,000 full reads a second per watcher. So the note carries only the report
(load, draining, error) and the time it was first made: a heartbeat that repeats
the report sends the same note again, which Consul drops as no change. Only a
changed load, draining or error reaches watchers. Consequences, on purpose:
``last_heartbeat_time`` in reads is the time of the last heartbeat that changed
the report, and no replica knows when a lease ends (``lease_expire_time`` reads as
9999-12-31 while Consul holds the lease; a heartbeat's own response says
``now + ttl``). A real Consul agent also defers syncing an output-only change to
its servers by ``check_update_interval`` (5 minutes unless configured), so a new
load reaches other replicas that late, while draining and errors (status changes)
go at once; the ``load`` in a heartbeat's response is always current.

Reads (``get``, ``list``) come from this backend's mirror of Consul, kept by
background followers with blocking queries on ``GET /v1/health/service/<shard>``
(every instance, any state: the registry shows every state). Agents are spread
over ``shards`` service names by a stable hash of their id (``meshwright-agent-0``
... ``-63`` by default; one shard is plain ``meshwright-agent``), one follower
each, because a blocking query answers with every instance of its service: with
one name, each registration in a storm of 10,000 would make every replica read
up to 10,000 instances again (O(N^2) in all); with k names a change re-reads
N/k. A follower of ``/v1/catalog/services`` finds shard names this replica did
not make (another replica configured with other ``shards``, an older layout) and
follows them too, so replicas with different settings still serve one view.

A write returns once the follower has seen it (registrations, stops and status
changes), so a read in this process right after its own write finds it, and
changes still come only from Consul. A follower diffs each result against its
shard's previous one into ``Change`` s that share one revision, emitted together
in agent_id order. Revisions are this replica's own: they start at the time the
view was made, in microseconds, and grow by one per result that changed
something (Consul's index is per shard, so it cannot order changes across
shards). ``changes_since(r)`` returns every kept change with revision > r; a
revision from another replica or from before a restart lies outside what this
one keeps and is refused (``HistoryTrimmed``: list again, then watch), as on
the memory backend. When a shard's index goes backwards (a snapshot restore, a
Consul restarted in dev mode) its follower lists it again from index 0, reports
the difference, and refuses to resume from any revision before the reset.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import dataclasses
import json
import logging
import re
import time
import zlib
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import aiohttp
import consul
import consul.aio
import orjson
from consul.callback import CB

from meshwright.mesh import telemetry
from meshwright.mesh.discovery import consul_client, consul_settings, go_duration
from meshwright.mesh.errors import (
    Aborted,
    FieldViolation,
    Internal,
    InvalidArgument,
    MeshError,
    Unavailable,
)
from meshwright.registry import _consul_codec as codec
from meshwright.registry._index import RecordIndex
from meshwright.registry.backend import ChangeListener
from meshwright.registry.errors import AgentNotFound, AgentStopped, HistoryTrimmed, LeaseMismatch
from meshwright.registry.records import (
    ADDED,
    REMOVED,
    UPDATED,
    AgentQuery,
    AgentRecord,
    Change,
    Listing,
    SweepResult,
)
from meshwright.registry.v1 import registry_pb2

log = logging.getLogger(__name__)

DEFAULT_HISTORY = 10_000
"""Changes kept for watches that resume (``changes_since``)."""
DEFAULT_SHARDS = 64
"""Service names the agents are spread over (``?shards=`` in the URL)."""
MAX_SHARDS = 256
WRITE_CONNECTIONS = 64
"""HTTP connections to Consul for writes (heartbeats, registrations) beside the
followers' blocking queries. With the default shards a replica holds at most 129,
under the Consul agent's limit of 200 per client address (``limits.
http_max_conns_per_client``): replicas sharing one address must stay under it together."""

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class _Sent:
    """The last report this process wrote to an agent's lease check."""

    lease_id: str
    report: codec.Report
    note: str
    at: float
    """When the report was first made (the note's ``at``)."""


@dataclasses.dataclass(eq=False, slots=True)
class _Shard:
    """One followed agent service name and what its last result held."""

    name: str
    index: int = 0
    """X-Consul-Index of its last result."""
    prints: dict[str, codec.Fingerprint] = dataclasses.field(default_factory=dict)
    """agent id -> fingerprint of its entry in the last result."""
    foreign: dict[str, codec.Fingerprint] = dataclasses.field(default_factory=dict)
    """Entries meshwright did not write (warned about once each)."""
    error: MeshError | None = None
    """Why the last read failed; None while the follower follows."""
    task: asyncio.Task[None] | None = None


def shard_service(agent_id: str, shards: int) -> str:
    """The Consul service name the agent ``agent_id`` is an instance of, with ``shards``
    names (a stable hash: every replica and every process agrees)."""
    if shards == 1:
        return codec.SERVICE_NAME
    return f"{codec.SERVICE_NAME}-{zlib.crc32(agent_id.encode()) % shards}"


def _index_and_json(response: Any) -> tuple[str, Any]:
    """py-consul callback: ``(X-Consul-Index, the body decoded by orjson)``; Consul's
    errors raised as py-consul raises them."""
    body = CB.binary()(response)
    index = response.headers.get("X-Consul-Index")
    if index is None:
        raise consul.ConsulException(f"missing index header: {dict(response.headers)}")
    try:
        return index, orjson.loads(body)
    except orjson.JSONDecodeError as err:
        raise consul.ConsulException(f"failed to decode JSON: {body[:200]!r} {err}") from err


def _lease_status(record: AgentRecord) -> str:
    """The status of the lease check that ``record`` was read from."""
    if record.error or record.lapsed:
        return codec.CRITICAL
    return codec.WARNING if record.draining else codec.PASSING


_DB = {"peer.service": "consul"}
"""The attributes of this backend's spans (OpenTelemetry's database conventions)."""


class ConsulRegistryBackend:
    """A ``RegistryBackend`` on a Consul agent's HTTP API."""

    checks_health = True

    def __init__(
        self,
        host: str,
        port: int,
        *,
        scheme: str = "http",
        token: str | None = None,
        health_check_interval_s: float = 5.0,
        health_check_timeout_s: float = 2.0,
        deregister_after_s: float = 300.0,
        clock: Callable[[], float] = time.time,
        history_size: int = DEFAULT_HISTORY,
        grpc_use_tls: bool = False,
        watch_wait_s: float = 30.0,
        request_timeout_s: float = 10.0,
        visible_timeout_s: float = 5.0,
        retry_max_s: float = 5.0,
        shards: int = DEFAULT_SHARDS,
    ) -> None:
        """
        Args:
            host, port, scheme: the Consul agent's HTTP API (``https`` for TLS).
            token: Consul ACL token (None: none).
            health_check_interval_s: interval of Consul's GRPC check of each agent.
            health_check_timeout_s: deadline of one GRPC check.
            deregister_after_s: DeregisterCriticalServiceAfter of every check: how long
                an instance may stay critical before Consul removes it (at least 60 s,
                Consul's floor).
            clock: epoch seconds; when the follower saw a change.
            history_size: changes kept so a watch can resume after a disconnect.
            grpc_use_tls: Consul's GRPC checks use TLS (agents serve TLS).
            watch_wait_s: longest wait of one blocking query.
            request_timeout_s: deadline of one request to Consul (plus the wait, for
                blocking queries).
            visible_timeout_s: how long a write waits for the follower to see it
                before it returns anyway.
            retry_max_s: longest pause of the follower between failed queries.
            shards: service names agents are spread over (1 to 256; see the module's
                docstring). Replicas may differ: each follows every shard it finds.
        """
        if history_size < 1:
            raise ValueError("history_size must be at least 1")
        if health_check_interval_s <= 0 or health_check_timeout_s <= 0:
            raise ValueError("health_check_interval_s and health_check_timeout_s must be positive")
        if not 1 <= shards <= MAX_SHARDS:
            raise ValueError(f"shards must be 1 to {MAX_SHARDS}, not {shards}")
        if scheme not in ("http", "https"):
            raise ValueError(f"scheme must be http or https, not {scheme!r}")
        self._host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        self._port = port
        self._scheme = scheme
        self._token = token
        self.health_check_interval_s = health_check_interval_s
        self.health_check_timeout_s = health_check_timeout_s
        self.deregister_after_s = deregister_after_s
        self._clock = clock
        self.history_size = history_size
        self.grpc_use_tls = grpc_use_tls
        self.watch_wait_s = watch_wait_s
        self.request_timeout_s = request_timeout_s
        self.visible_timeout_s = visible_timeout_s
        self.retry_max_s = retry_max_s
        self.shards = shards
        self._client: Any = None  # consul.aio.Consul: py-consul has no type hints
        self._follower: asyncio.Task[None] | None = None  # of the catalog: finds shards
        self._listeners: list[ChangeListener] = []
        self._reset_view()

    @classmethod
    def from_url(cls, url: str, **options: Any) -> ConsulRegistryBackend:
        """A backend for ``consul://host:port`` (``consuls://`` for HTTPS), parsed as the
        mesh's discovery parses it: the ACL token from a ``?token=`` query, else
        ``CONSUL_HTTP_TOKEN``; ``?shards=N`` sets ``shards``. ``options`` are the
        constructor's keyword arguments. Raises ``InvalidArgument`` for a URL of
        another scheme or a bad ``shards``."""
        settings = consul_settings(url)
        match = re.search(r"[?&]shards=([^&]*)", url)
        if match is not None:
            raw = match.group(1)
            if not raw.isdigit() or not 1 <= int(raw) <= MAX_SHARDS:
                raise InvalidArgument(
                    f"shards={raw!r} in {url!r}: must be a whole number from 1 to {MAX_SHARDS}",
                    violations=[FieldViolation("registry_url", "shards must be 1 to 256")],
                )
            options = {"shards": int(raw), **options}
        return cls(
            settings["host"],
            settings["port"],
            scheme=settings["scheme"],
            token=settings["token"],
            **options,
        )

    @property
    def address(self) -> str:
        """The Consul agent's HTTP address (no token)."""
        return f"{self._scheme}://{self._host}:{self._port}"

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Check Consul has a leader, read every agent of every shard, then follow changes.

        Raises ``Unavailable`` when Consul cannot be reached or has no leader.
        """
        if self._follower is not None:
            return
        self._client = self._connect()
        try:
            leader = await self._call("the leader", self._client.status.leader())
            if not leader:
                raise Unavailable(f"consul at {self.address} has no leader (yet?)")
            catalog_index, found = await self._read_names(0)
            names = sorted(found | self._own_names())
            reads = await asyncio.gather(*(self._read(name, 0) for name in names))
        except BaseException:
            await self._disconnect()
            raise
        self._reset_view()
        for name, (index, entries) in zip(names, reads, strict=True):
            self._apply(self._shard(name), index, entries, initial=True)
        for shard in self._shards.values():
            self._start_follower(shard)
        self._follower = asyncio.create_task(
            self._follow_catalog(catalog_index), name="consul-registry-catalog"
        )

    async def close(self) -> None:
        """Stop the followers and close the HTTP session."""
        tasks = [self._follower, *(s.task for s in self._shards.values())]
        self._follower = None
        for shard in self._shards.values():
            shard.task = None
        for task in tasks:
            if task is not None:
                task.cancel()
        for task in tasks:
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._disconnect()

    def _connect(self) -> Any:
        # Each followed shard holds a connection in its blocking query; writes get
        # WRITE_CONNECTIONS beside them (one more shard found later borrows from those).
        return consul_client(
            self._host,
            self._port,
            scheme=self._scheme,
            token=self._token,
            connections=self.shards + 1 + WRITE_CONNECTIONS,
        )

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    def _reset_view(self) -> None:
        self._records = RecordIndex()
        self._shards: dict[str, _Shard] = {}
        self._owner: dict[str, str] = {}  # agent -> the shard it was last seen in
        self._sent: dict[str, _Sent] = {}
        self._shown_of: dict[str, tuple[AgentRecord, _Sent, AgentRecord]] = {}
        self._history: deque[Change] = deque()
        self._revision = time.time_ns() // 1000
        self._floor = self._revision  # every change with a revision above it is in _history
        self._applied = asyncio.Event()  # set (and replaced) after each result

    def _own_names(self) -> set[str]:
        if self.shards == 1:
            return {codec.SERVICE_NAME}
        return {f"{codec.SERVICE_NAME}-{k}" for k in range(self.shards)}

    def _shard(self, name: str) -> _Shard:
        shard = self._shards.get(name)
        if shard is None:
            shard = self._shards[name] = _Shard(name)
        return shard

    def _start_follower(self, shard: _Shard) -> None:
        shard.task = asyncio.create_task(
            self._follow_shard(shard), name=f"consul-registry-follower:{shard.name}"
        )

    # -- Consul calls --------------------------------------------------------

    def _started(self) -> Any:
        if self._client is None:
            raise Unavailable(f"the consul registry backend ({self.address}) is not started")
        return self._client

    async def _call(self, what: str, call: Awaitable[T], timeout_s: float | None = None) -> T:
        """Await one py-consul call; every failure becomes a ``MeshError`` naming ``what``."""
        timeout_s = self.request_timeout_s if timeout_s is None else timeout_s
        where = f"consul at {self.address}"
        try:
            async with asyncio.timeout(timeout_s):
                return await call
        except TimeoutError as err:
            raise Unavailable(f"{where} did not answer ({what}) within {timeout_s:g}s") from err
        except (aiohttp.ClientError, OSError) as err:
            raise Unavailable(f"{where} is unreachable ({what}): {err}") from err
        except (consul.ACLPermissionDenied, consul.ACLDisabled) as err:
            raise Internal(f"{where} refused the registry's ACL token ({what}): {err}") from err
        except consul.exceptions.BadRequest as err:
            raise Internal(f"{where} refused {what} as malformed: {err}") from err
        except consul.ConsulException as err:  # 5xx, 429, an answer that is not JSON
            raise Unavailable(f"{where} failed ({what}): {err}") from err

    async def _blocking(
        self, what: str, call: Callable[[int | None, str | None], Awaitable[Any]], index: int
    ) -> tuple[int, Any]:
        """One read that blocks while ``index`` (above 0) is current; the index and body."""
        blocking = index > 0
        # Consul adds up to wait/16 to a blocking query's wait.
        timeout_s = self.request_timeout_s + (self.watch_wait_s * 17 / 16 if blocking else 0)
        raw_index, body = await self._call(
            what,
            call(index if blocking else None, go_duration(self.watch_wait_s) if blocking else None),
            timeout_s,
        )
        try:
            return int(raw_index), body
        except (TypeError, ValueError) as err:
            raise Unavailable(f"consul at {self.address} sent index {raw_index!r}") from err

    async def _read(self, name: str, index: int) -> tuple[int, list[Mapping[str, Any]]]:
        """Every instance of the shard ``name``; blocks while ``index`` is current.

        py-consul's ``health.service`` would decode the answer with ``json``; this is
        the same GET decoded with orjson, a tenth of the CPU: the follower decodes
        every instance of a shard on each of its changes, and in the registry's
        process, beside the RPCs it serves."""
        client = self._started()

        def call(index: int | None, wait: str | None) -> Awaitable[Any]:
            params = [("index", str(index)), ("wait", wait)] if index is not None else []
            return client.http.get(
                _index_and_json,
                f"/v1/health/service/{name}",
                params=[*params, *([("dc", client.dc)] if client.dc else [])],
                headers=client.prepare_headers(),
                raw=True,
            )

        got, entries = await self._blocking(f"read the agents of {name}", call, index)
        if not isinstance(entries, list):
            raise Unavailable(f"consul at {self.address} sent a health listing that is no list")
        return got, entries

    async def _read_names(self, index: int) -> tuple[int, set[str]]:
        """The agent shard names in Consul's catalog; blocks while ``index`` is current."""
        client = self._started()

        def call(index: int | None, wait: str | None) -> Awaitable[Any]:
            return client.catalog.services(index=index, wait=wait)

        got, services = await self._blocking("read the service names", call, index)
        if not isinstance(services, Mapping):
            raise Unavailable(f"consul at {self.address} sent a service catalog that is no map")
        return got, {str(n) for n in services if codec.is_agent_service(str(n))}

    async def _register(self, body: Mapping[str, Any], what: str) -> None:
        client = self._started()
        call = client.http.put(
            CB.boolean(),
            "/v1/agent/service/register",
            params=[("replace-existing-checks", "true")],
            data=json.dumps(body),
            headers=client.prepare_headers(),
        )
        await self._call(what, call)

    async def _service(self, agent_id: str) -> Mapping[str, Any] | None:
        """The local Consul agent's definition of the agent's instance; None if unknown."""
        client = self._started()
        call = client.http.get(
            CB.json(),
            f"/v1/agent/service/{agent_id}",
            headers=client.prepare_headers(),
        )
        service = await self._call(f"read agent {agent_id}", call)
        if not isinstance(service, Mapping) or not codec.is_agent_service(
            str(service.get("Service", ""))
        ):
            return None
        return service

    async def _live_service(self, agent_id: str) -> Mapping[str, Any]:
        service = await self._service(agent_id)
        if service is None:
            raise AgentNotFound(f"agent {agent_id!r} is not registered")
        if codec.stopped_of(service) is not None:
            raise AgentStopped(
                f"agent {agent_id!r} deregistered; register again",
                metadata={"agent_id": agent_id},
            )
        return service

    async def _deregister(self, agent_id: str) -> None:
        client = self._started()
        await self._call(f"deregister agent {agent_id}", client.agent.service.deregister(agent_id))

    async def _update_lease(self, agent_id: str, sent: _Sent) -> None:
        """Set the lease check of ``lease_id`` to ``report``; raises why it cannot."""
        client = self._started()
        update = {
            codec.PASSING: client.agent.check.ttl_pass,
            codec.WARNING: client.agent.check.ttl_warn,
            codec.CRITICAL: client.agent.check.ttl_fail,
        }[sent.report.status]
        lease_id = sent.lease_id
        check_id = codec.ttl_check_id(agent_id, lease_id)
        failure: MeshError | None = None
        try:
            if await self._call(
                f"heartbeat of agent {agent_id}", update(check_id, notes=sent.note)
            ):
                self._sent[agent_id] = sent
                return
        except Unavailable as err:  # older Consul answers 500 for an unknown check
            failure = err
        # No such check (404): read the instance to say why.
        service = await self._live_service(agent_id)
        if codec.lease_of(service) != lease_id:
            raise LeaseMismatch(
                f"lease {lease_id!r} is not the current lease of agent {agent_id!r}; "
                "register again",
                metadata={"agent_id": agent_id},
            )
        raise failure or Unavailable(
            f"consul at {self.address} has no lease check {check_id!r} for the current lease"
        )

    # -- the follower --------------------------------------------------------

    async def _follow(
        self,
        what: str,
        read: Callable[[int], Awaitable[tuple[int, T]]],
        apply: Callable[[int, T, bool], None],
        index: int,
        failed: Callable[[MeshError | None], None],
    ) -> None:
        """Follow one blocking query from ``index``: ``apply(index, body, reset)`` each
        result (``reset`` after Consul's index went back and it was read from 0 again);
        ``failed(error)`` after a failed read, ``failed(None)`` once reads work again."""
        relist = False
        delay_s = 0.0
        while True:
            try:
                got, body = await read(0 if relist else index)
                if not relist and got < index:
                    # Consul's rule: an index that went backwards means start again from 0.
                    log.warning(
                        "consul index of %s went back from %d to %d: reading again",
                        what,
                        index,
                        got,
                    )
                    relist = True
                    continue
                apply(got, body, relist)
            except Exception as err:  # a follower must outlive any one bad answer
                if isinstance(err, MeshError):
                    failed(err)
                    log.warning("consul registry follower (%s): %s", what, err.message)
                else:
                    failed(Unavailable(f"consul registry follower ({what}) failed: {err!r}"))
                    log.exception("consul registry follower (%s) failed", what)
                # The one pause: a capped backoff after errors, never a poll.
                delay_s = min(self.retry_max_s, max(0.05, delay_s * 2))
                await asyncio.sleep(delay_s)
                continue
            if delay_s:
                failed(None)
            delay_s = 0.0
            relist = False
            # An index of 0 would not block; 1 always does (Consul's advice).
            index = max(got, 1)

    async def _follow_shard(self, shard: _Shard) -> None:
        def read(index: int) -> Awaitable[tuple[int, list[Mapping[str, Any]]]]:
            return self._read(shard.name, index)

        def apply(index: int, entries: list[Mapping[str, Any]], reset: bool) -> None:
            self._apply(shard, index, entries, reset=reset)

        def failed(err: MeshError | None) -> None:
            shard.error = err

        await self._follow(shard.name, read, apply, shard.index, failed)

    async def _follow_catalog(self, index: int) -> None:
        """Follow the catalog's service names; start a follower for each new shard."""

        def apply(index: int, names: set[str], reset: bool) -> None:
            for name in sorted(names - self._shards.keys()):
                log.info("consul registry: following agents of %s too", name)
                self._start_follower(self._shard(name))

        def failed(err: MeshError | None) -> None:
            pass  # the shards known so far are still followed; new ones wait

        await self._follow("the service names", self._read_names, apply, index, failed)

    def _apply(
        self,
        shard: _Shard,
        index: int,
        entries: list[Mapping[str, Any]],
        *,
        initial: bool = False,
        reset: bool = False,
    ) -> None:
        """Diff one result of ``shard`` against its last; apply and report the changes."""
        observed = self._clock()
        fresh: dict[str, tuple[codec.Fingerprint, Mapping[str, Any]]] = {}
        for entry in entries:
            agent_id = codec.service_id(entry) if isinstance(entry, Mapping) else None
            if agent_id is not None and entry["Service"].get("Service") == shard.name:
                fresh[agent_id] = (codec.fingerprint(entry), entry)
        found: list[tuple[registry_pb2.AgentEventType, AgentRecord, AgentRecord | None]] = []
        for agent_id in sorted(shard.prints.keys() | shard.foreign.keys() | fresh.keys()):
            old = self._records.get(agent_id)
            owned = self._owner.get(agent_id) == shard.name
            if agent_id not in fresh:
                # Gone from this shard; unless it moved to another (registered again by
                # a replica with other ``shards``), it is gone.
                if old is not None and owned:
                    found.append((REMOVED, old, None))
                shard.prints.pop(agent_id, None)
                shard.foreign.pop(agent_id, None)
                continue
            print_, entry = fresh[agent_id]
            # After a reset Consul's change marks start again: decode every entry.
            if not reset and old is not None and owned and shard.prints.get(agent_id) == print_:
                continue
            try:
                record = codec.decode(entry, previous=old, observed=observed)
            except ValueError as err:
                if shard.foreign.get(agent_id) != print_:
                    log.warning("ignoring a %s instance: %s", shard.name, err)
                    shard.foreign[agent_id] = print_
                shard.prints.pop(agent_id, None)
                if old is not None and owned:
                    found.append((REMOVED, old, None))
                continue
            shard.foreign.pop(agent_id, None)
            shard.prints[agent_id] = print_
            if old is None:
                found.append((ADDED, record, None))
            elif record != old or not owned:
                found.append((UPDATED, record, old))

        for kind, record, _ in found:
            agent_id = record.agent_id
            if kind == REMOVED:
                self._records.remove(agent_id)
                self._owner.pop(agent_id, None)
                self._sent.pop(agent_id, None)
                self._shown_of.pop(agent_id, None)
            else:
                self._records.put(record)
                self._owner[agent_id] = shard.name
        shard.index = index
        shard.error = None
        if not initial:
            # A reset takes a revision of its own so that none from before it is
            # mistaken for one after.
            if found or reset:
                self._revision += 1
            changes = [
                Change(
                    kind=kind,
                    record=record,
                    previous=previous,
                    revision=self._revision,
                    time_s=observed,
                )
                for kind, record, previous in found
            ]
            if reset:
                # Changes before the reset were against data Consul no longer has.
                self._history.clear()
                self._floor = self._revision
            else:
                self._remember(changes)
            for change in changes:
                for listener in tuple(self._listeners):
                    try:
                        listener(change)
                    except Exception:  # one broken listener must not stop the others
                        log.exception("registry change listener failed")
        applied, self._applied = self._applied, asyncio.Event()
        applied.set()

    def _remember(self, changes: list[Change]) -> None:
        self._history.extend(changes)
        while len(self._history) > self.history_size:
            # A revision is kept whole or not vouched for: the floor rises to it.
            self._floor = self._history.popleft().revision

    async def _until_seen(self, agent_id: str, seen: Callable[[AgentRecord | None], bool]) -> bool:
        """Wait until the follower shows ``agent_id`` as ``seen`` wants; False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.visible_timeout_s
        while not seen(self._records.get(agent_id)):
            remaining = deadline - loop.time()
            if remaining <= 0:
                log.warning(
                    "consul did not show the change of agent %s within %.1fs; reads may lag",
                    agent_id,
                    self.visible_timeout_s,
                )
                return False
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await self._applied.wait()
        return True

    async def _record_of(self, agent_id: str, lease_id: str) -> AgentRecord:
        """The mirror's record of ``lease_id`` (waiting for the follower if it lags)."""

        def has_lease(record: AgentRecord | None) -> bool:
            return record is not None and record.lease_id == lease_id

        await self._until_seen(agent_id, has_lease)
        record = self._records.get(agent_id)
        if record is None or record.lease_id != lease_id:
            raise Unavailable(
                f"consul at {self.address} has not shown the registration of agent {agent_id!r} yet"
            )
        return record

    # -- mutations -----------------------------------------------------------

    @telemetry.traced("consul put", **_DB)
    async def put(self, record: AgentRecord, *, now: float) -> AgentRecord | None:
        body = codec.registration(
            record,
            service=shard_service(record.agent_id, self.shards),
            check_interval_s=self.health_check_interval_s,
            check_timeout_s=self.health_check_timeout_s,
            deregister_after_s=self.deregister_after_s,
            grpc_use_tls=self.grpc_use_tls,
        )
        previous = self._records.get(record.agent_id)
        await self._register(body, f"register agent {record.agent_id}")
        self._sent.pop(record.agent_id, None)

        def shown(current: AgentRecord | None) -> bool:
            return current is not None and (
                current.lease_id == record.lease_id or current.register_s > record.register_s
            )

        await self._until_seen(record.agent_id, shown)
        return previous

    def _report(self, agent_id: str, lease_id: str, report: codec.Report, now: float) -> _Sent:
        """What to write for ``report``: the same note as before when the report repeats."""
        sent = self._sent.get(agent_id)
        if sent is not None and sent.lease_id == lease_id and sent.report == report:
            return sent
        current = self._records.get(agent_id)
        at = now
        if (
            current is not None
            and current.lease_id == lease_id
            and current.last_heartbeat_s is not None
            and codec.Report(current.load, current.draining, current.error, current.health_detail)
            == report
        ):
            at = current.last_heartbeat_s
        return _Sent(lease_id, report, codec.encode_note(report, at), at)

    @telemetry.traced("consul renew", **_DB)
    async def renew(
        self,
        agent_id: str,
        lease_id: str,
        *,
        now: float,
        load: int,
        draining: bool,
        error: str = "",
        health_detail: str = "",
    ) -> AgentRecord:
        report = codec.Report(
            load=load, draining=draining, error=error, health_detail=health_detail
        )
        await self._update_lease(agent_id, self._report(agent_id, lease_id, report, now))
        base = await self._record_of(agent_id, lease_id)
        if _lease_status(base) != report.status:
            # A status change: Consul syncs it at once, so wait for reads to show it.
            def shown(current: AgentRecord | None) -> bool:
                return (
                    current is None
                    or current.lease_id != lease_id
                    or _lease_status(current) == report.status
                )

            await self._until_seen(agent_id, shown)
            latest = self._records.get(agent_id)
            base = latest if latest is not None and latest.lease_id == lease_id else base
        renewed = dataclasses.replace(
            base,
            lease_expire_s=now + base.lease_ttl_s,
            last_heartbeat_s=now,
            load=load,
            draining=draining,
            lapsed=False,
            error=error,
            health_detail=health_detail,
        )
        if renewed.state_at(now) != base.state_at(now):
            keep = base.status_reason if renewed.healthy is not True else ""
            renewed = dataclasses.replace(renewed, status_s=now, status_reason=keep)
        return renewed

    @telemetry.traced("consul report_failure", **_DB)
    async def report_failure(self, agent_id: str, reason: str, *, now: float) -> AgentRecord:
        for _ in range(3):
            lease_id = codec.lease_of(await self._live_service(agent_id))
            current = self._records.get(agent_id)
            held = current is not None and current.lease_id == lease_id
            report = codec.Report(
                load=current.load if current is not None and held else 0,
                draining=current.draining if current is not None and held else False,
                error=reason,
                health_detail=current.health_detail if current is not None and held else "",
            )
            try:
                sent = _Sent(lease_id, report, codec.encode_note(report, now), now)
                await self._update_lease(agent_id, sent)
            except LeaseMismatch:
                continue  # registered again between the read and the write: once more
            break
        else:
            raise Aborted(f"agent {agent_id!r} kept registering again; report the failure again")
        base = await self._record_of(agent_id, lease_id)
        if _lease_status(base) != codec.CRITICAL:

            def shown(latest: AgentRecord | None) -> bool:
                return latest is None or latest.lease_id != lease_id or latest.error == reason

            await self._until_seen(agent_id, shown)
        latest = self._records.get(agent_id)
        if latest is not None and latest.lease_id == lease_id and latest.error == reason:
            return latest
        return dataclasses.replace(base, error=reason, status_s=now)

    @telemetry.traced("consul set_health", **_DB)
    async def set_health(
        self, agent_id: str, lease_id: str, *, healthy: bool, reason: str, now: float
    ) -> AgentRecord | None:
        """Consul checks health itself (``checks_health``): a verdict changes nothing."""
        current = self._records.get(agent_id)
        if current is None or current.lease_id != lease_id or current.stopped_s is not None:
            return None
        return current

    @telemetry.traced("consul stop", **_DB)
    async def stop(self, agent_id: str, *, now: float, retain: bool) -> AgentRecord:
        service = await self._live_service(agent_id)
        lease_id = codec.lease_of(service)
        record = await self._record_of(agent_id, lease_id)
        # Consul's agent API has no check-and-set: a registration between the read
        # above and this write would be replaced (a window of one round trip).
        if retain:
            body = codec.stopped_registration(
                service, now, deregister_after_s=self.deregister_after_s
            )
            await self._register(body, f"mark agent {agent_id} stopped")
        else:
            await self._deregister(agent_id)
        self._sent.pop(agent_id, None)

        def shown(current: AgentRecord | None) -> bool:
            return (
                current is None
                or current.lease_id != lease_id
                or (retain and current.stopped_s is not None)
            )

        await self._until_seen(agent_id, shown)
        return record

    @telemetry.traced("consul sweep", **_DB)
    async def sweep(
        self, *, now: float, deregister_after_s: float, stopped_retention_s: float
    ) -> SweepResult:
        """Deregister STOPPED agents past their retention; Consul expires leases itself
        (the follower reports a lapse when Consul does) and reaps critical instances
        after DeregisterCriticalServiceAfter."""
        removed: list[AgentRecord] = []
        due = [
            r
            for r in self._records.values()
            if r.stopped_s is not None and now - r.stopped_s >= stopped_retention_s
        ]
        for record in due:
            service = await self._service(record.agent_id)
            if (
                service is None
                or codec.stopped_of(service) != record.stopped_s
                or codec.lease_of(service) != record.lease_id
            ):
                continue  # removed by another replica, or registered again since
            await self._deregister(record.agent_id)
            removed.append(record)
        return SweepResult(lapsed=[], removed=removed)

    # -- reads ---------------------------------------------------------------

    def _vouch(self) -> None:
        """Reads serve the mirror only while the follower is following."""
        self._started()
        for shard in self._shards.values():
            if shard.error is not None:
                raise Unavailable(
                    f"{shard.error.message} (the registry's view of consul is not current)"
                )

    def _shown(self, record: AgentRecord) -> AgentRecord:
        """``record`` with the load and health detail of a newer heartbeat this process wrote.

        Consul writes an output-only change (a new load, same status) back to its
        catalog only after ``check_update_interval``, so the follower may not have
        it; this process knows it, and its reads are consistent with its writes.
        """
        sent = self._sent.get(record.agent_id)
        if (
            sent is None
            or sent.lease_id != record.lease_id
            or record.stopped_s is not None
            or sent.report.status != _lease_status(record)
            or (record.last_heartbeat_s is not None and record.last_heartbeat_s >= sent.at)
        ):
            return record
        # One shown record per (mirror record, report): a listing reuses it, and with it
        # the Agent message built for it, instead of building the message every time.
        cached = self._shown_of.get(record.agent_id)
        if cached is not None and cached[0] is record and cached[1] is sent:
            return cached[2]
        shown = dataclasses.replace(
            record,
            load=sent.report.load,
            health_detail=sent.report.health_detail,
            last_heartbeat_s=sent.at,
        )
        self._shown_of[record.agent_id] = (record, sent, shown)
        return shown

    async def get(self, agent_id: str) -> AgentRecord | None:
        self._vouch()
        record = self._records.get(agent_id)
        return None if record is None else self._shown(record)

    async def list(self, query: AgentQuery) -> Listing:
        self._vouch()
        show = self._shown if self._sent else None
        return Listing(records=self._records.select(query, show), revision=self._revision)

    async def passing(self) -> builtins.list[AgentRecord]:
        """Consul's own ``?passing`` answer, read now: the agents whose every check
        passes (ACTIVE), in agent_id order. For callers that want only live agents
        without the mirror; ``list`` with ``state=ACTIVE`` answers the same from it."""
        client = self._started()
        names = sorted(self._shards)
        reads = await asyncio.gather(
            *(
                self._call(
                    f"read the passing agents of {name}", client.health.service(name, passing=True)
                )
                for name in names
            )
        )
        now = self._clock()
        out = []
        for entry in (e for _, entries in reads for e in entries or ()):
            agent_id = codec.service_id(entry)
            if agent_id is None:
                continue
            try:
                out.append(codec.decode(entry, previous=self._records.get(agent_id), observed=now))
            except ValueError:
                continue
        return sorted(out, key=lambda r: r.agent_id)

    # -- changes -------------------------------------------------------------

    @property
    def revision(self) -> int:
        return self._revision

    def count_by_state(self, now: float) -> dict[registry_pb2.AgentState, int]:
        return self._records.count_by_state(now)

    def changes_since(self, revision: int) -> builtins.list[Change]:
        if revision > self._revision:
            raise HistoryTrimmed(
                f"revision {revision} is ahead of the registry's {self._revision} "
                "(another replica's, or Consul's index went back since?): list again, then watch",
                metadata={"revision": str(self._revision)},
            )
        if revision < self._floor:
            raise HistoryTrimmed(
                f"the changes after revision {revision} are no longer kept (kept: after "
                f"{self._floor}): list again, then watch",
                metadata={"oldest_revision": str(self._floor + 1)},
            )
        newer: builtins.list[Change] = []
        for change in reversed(self._history):
            if change.revision <= revision:
                break
            newer.append(change)
        newer.reverse()
        return newer

    def subscribe(self, listener: ChangeListener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe


__all__ = ["ConsulRegistryBackend"]

"""The registry domain: registrations, leases, liveness, discovery and watches.

Knows nothing of gRPC: ``RegistryServicer`` and in-process callers use the
same methods, which validate their input and raise ``MeshError`` classes.
The caller comes from the per-call context (``meshwright.mesh.context.caller``):
an agent acts only on its own id and is paid only into its own account, and a
lease id is shown only to the agent holding it (see ``_access``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from meshwright.agent.v1 import agent_pb2
from meshwright.mesh import paging
from meshwright.mesh.auth import Principal
from meshwright.mesh.client import ChannelPool
from meshwright.mesh.context import caller
from meshwright.mesh.errors import FieldViolation, InvalidArgument
from meshwright.mesh.validation import check_id
from meshwright.registry import _access, _validate
from meshwright.registry._convert import shared_agent, to_agent
from meshwright.registry.backend import RegistryBackend
from meshwright.registry.errors import AgentNotFound, RegistryStopped
from meshwright.registry.health import HealthCheckPolicy, HealthProber
from meshwright.registry.records import (
    ADDED,
    ANY_STATE,
    AgentQuery,
    AgentRecord,
    Change,
    SweepResult,
    skill_key,
)
from meshwright.registry.v1 import registry_pb2
from meshwright.registry.watch import AgentEvent, WatchHub, event_of

if TYPE_CHECKING:
    from meshwright.mesh.metrics import MeshMetrics

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class AgentPage(NamedTuple):
    """One page of a listing."""

    agents: list[registry_pb2.Agent]
    next_page_token: str
    """Empty on the last page."""


class Registry:
    """Who is alive and what each agent can do.

    Agents register with a lease and renew it by heartbeating; a lease past
    its expiry reads as INACTIVE at once, and the sweeper (``start``) announces
    lapses to watchers and removes agents that stayed inactive for
    ``deregister_after_s`` and STOPPED ones after ``stopped_retention_s``.
    With a ``health_check`` policy (and a backend that does not check health
    itself) agents are also probed: STARTING until the first probe passes,
    INACTIVE while probes fail.
    """

    def __init__(
        self,
        backend: RegistryBackend,
        *,
        default_lease_ttl_s: float = 10.0,
        sweep_interval_s: float = 1.0,
        deregister_after_s: float = 300.0,
        stopped_retention_s: float = 60.0,
        watch_queue_size: int = 1024,
        health_check: HealthCheckPolicy | None = None,
        probe_channels: ChannelPool | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """
        Args:
            backend: where registrations live; in this process's memory when None.
            default_lease_ttl_s: lease length for registrations that ask for none.
            sweep_interval_s: how often the sweeper looks for lapsed leases.
            deregister_after_s: how long after its lease lapsed an agent is removed.
            stopped_retention_s: how long a deregistered agent stays visible as
                STOPPED before it is removed (0: removed at once).
            watch_queue_size: events a watcher may fall behind before it is cut off.
            health_check: probe agents' grpc.health.v1 endpoints (None: leases only);
                ignored when the backend checks health itself.
            probe_channels: the prober's channel pool (its TLS); a plain one when None.
            clock: epoch seconds; tests pass a fake one.
        """
        if default_lease_ttl_s <= 0 or sweep_interval_s <= 0:
            raise ValueError("default_lease_ttl_s and sweep_interval_s must be positive")
        if deregister_after_s < 0 or stopped_retention_s < 0:
            raise ValueError("deregister_after_s and stopped_retention_s must not be negative")
        self.backend: RegistryBackend = backend
        self.default_lease_ttl_s = default_lease_ttl_s
        self.sweep_interval_s = sweep_interval_s
        self.deregister_after_s = deregister_after_s
        self.stopped_retention_s = stopped_retention_s
        self._clock = clock
        self._prober: HealthProber | None = None
        if health_check is not None and not backend.checks_health:
            self._prober = HealthProber(
                backend, probe_channels or ChannelPool(), health_check, clock=clock
            )
        self.checks_health = backend.checks_health or self._prober is not None
        """Whether agents start STARTING and must pass a health check to run."""
        self._hub = WatchHub(queue_size=watch_queue_size)
        self.metrics: MeshMetrics | None = None
        """Set by the composition root: heartbeats are counted, states read at scrape."""
        self._unsubscribe: Callable[[], None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._stopped = False

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Connect the backend, start the lease sweeper and the health prober."""
        if self._sweeper is None:
            self._stopped = False
            await self.backend.start()
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="registry-sweeper")
            if self._prober is not None:
                await self._prober.start()

    async def stop(self) -> None:
        """Stop the sweeper and end every watch with ``RegistryStopped``.

        Call before stopping the gRPC server so open watches do not hold its
        graceful shutdown for the whole grace period.
        """
        self._stopped = True
        sweeper, self._sweeper = self._sweeper, None
        if sweeper is not None:
            sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeper
        if self._prober is not None:
            await self._prober.stop()
        self._hub.close(RegistryStopped("the registry is stopping; watch again"))
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if sweeper is not None:
            await self.backend.close()

    @property
    def prober(self) -> HealthProber | None:
        """The health prober, when this registry probes agents itself."""
        return self._prober

    async def sweep(self) -> SweepResult:
        """One sweep now (the sweeper calls this every ``sweep_interval_s``)."""
        return await self.backend.sweep(
            now=self._clock(),
            deregister_after_s=self.deregister_after_s,
            stopped_retention_s=self.stopped_retention_s,
        )

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_interval_s)
            try:
                result = await self.sweep()
            except Exception:  # a failing backend must not kill the sweeper for good
                log.exception("registry sweep failed")
                continue
            for record in result.lapsed:
                log.info("agent %s lease lapsed", record.agent_id)
            for record in result.removed:
                log.info("agent %s removed after its lease lapsed", record.agent_id)

    # -- mutations -----------------------------------------------------------

    async def register(
        self,
        card: agent_pb2.AgentCard | None,
        endpoint: str,
        *,
        agent_id: str = "",
        tags: Sequence[str] = (),
        capacity: int = 0,
        lease_ttl_s: float | None = None,
        payout_account_id: str = "",
    ) -> registry_pb2.Agent:
        """Add or replace a registration and grant a fresh lease.

        An agent caller that names no ``agent_id`` registers as its token's
        subject. Raises ``InvalidArgument`` naming every bad field (paths as in
        ``RegisterAgentRequest``), ``NotOwner`` when an agent names another
        agent's id, ``PayoutNotOwn`` when it names another payout account.
        """
        who = caller()
        agent_id = _access.own_agent_id(who, agent_id)
        violations = _validate.registration_violations(
            agent_id=agent_id,
            card=card,
            endpoint=endpoint,
            tags=tags,
            capacity=capacity,
            lease_ttl_s=lease_ttl_s,
            payout_account_id=payout_account_id,
        )
        if violations or card is None:
            raise InvalidArgument("invalid registration", violations=violations)
        _access.require_self(who, agent_id)
        _access.require_own_payout(who, agent_id, payout_account_id)
        # The record owns its card: the caller may reuse or mutate its message.
        owned = agent_pb2.AgentCard()
        owned.CopyFrom(card)
        agent_id = agent_id or _generated_id(card.name)
        now = self._clock()
        record = AgentRecord.create(
            agent_id=agent_id,
            card=owned,
            endpoint=endpoint,
            tags=tuple(tags),
            capacity=capacity,
            payout_account_id=payout_account_id or agent_id,
            lease_id=secrets.token_hex(16),
            lease_ttl_s=self.default_lease_ttl_s if lease_ttl_s is None else lease_ttl_s,
            now=now,
            checked=self.checks_health,
        )
        await self.backend.put(record, now=now)
        # The caller was just granted this lease: it is its holder, so the response
        # carries it (an admin registering an agent heartbeats it with this lease).
        return to_agent(record, now)

    def agents_by_state(self) -> dict[str, int]:
        """How many agents are in each state now, by the state's short name (metrics)."""
        counts = self.backend.count_by_state(self._clock())
        prefix = "AGENT_STATE_"
        return {
            registry_pb2.AgentState.Name(state).removeprefix(prefix).lower(): n
            for state, n in counts.items()
        }

    async def heartbeat(
        self,
        agent_id: str,
        lease_id: str,
        *,
        load: int = 0,
        draining: bool = False,
        error: str = "",
        health_detail: str = "",
    ) -> registry_pb2.Agent:
        """Renew a lease and record load, draining, an error (ERROR while set) and a
        health detail (shown as the agent's ``health_detail``; its state is unchanged).

        Raises ``AgentNotFound``/``AgentStopped`` or ``LeaseMismatch`` (register
        again on either), ``NotOwner`` when an agent names another agent's id.
        """
        _raise_if(
            _validate.heartbeat_violations(agent_id, lease_id, load, error, health_detail),
            "invalid heartbeat",
        )
        who = caller()
        _access.require_self(who, agent_id)
        now = self._clock()
        record = await self.backend.renew(
            agent_id,
            lease_id,
            now=now,
            load=load,
            draining=draining,
            error=error,
            health_detail=health_detail,
        )
        if self.metrics is not None:
            self.metrics.heartbeat()
        # The caller presented the current lease: echoing it tells it nothing new.
        return to_agent(record, now)

    async def report_failure(self, agent_id: str, reason: str) -> registry_pb2.Agent:
        """Mark an agent ERROR with ``reason`` (an agent, or its supervisor as admin).

        Raises ``AgentNotFound``/``AgentStopped``, or ``NotOwner`` when an agent
        names another agent's id.
        """
        _raise_if(_validate.failure_violations(agent_id, reason), "invalid failure report")
        who = caller()
        _access.require_self(who, agent_id)
        now = self._clock()
        record = await self.backend.report_failure(agent_id, reason.strip(), now=now)
        log.info("agent %s reported failed: %s", agent_id, reason)
        return _access.shown(to_agent(record, now), who)

    async def deregister(self, agent_id: str) -> registry_pb2.Agent:
        """Stop a registration gracefully (STOPPED, removed after the retention); returns
        it as it was.

        Raises ``AgentNotFound``, ``AgentStopped`` when it is stopped already, or
        ``NotOwner`` when an agent names another agent's id.
        """
        _raise_if(check_id(agent_id, "agent_id"), "invalid agent_id")
        who = caller()
        _access.require_self(who, agent_id)
        now = self._clock()
        record = await self.backend.stop(agent_id, now=now, retain=self.stopped_retention_s > 0)
        return _access.shown(to_agent(record, now), who)

    # -- reads ---------------------------------------------------------------

    async def get_agent(self, agent_id: str) -> registry_pb2.Agent:
        """One registration, its state judged now (a shared message: read-only; copy
        to change it). Raises ``AgentNotFound``."""
        _raise_if(check_id(agent_id, "agent_id"), "invalid agent_id")
        record = await self.backend.get(agent_id)
        if record is None:
            raise AgentNotFound(f"agent {agent_id!r} is not registered")
        return _shown(record, self._clock(), caller())

    async def list_agents(
        self,
        *,
        skill: str = "",
        tag: str = "",
        state: registry_pb2.AgentState = ANY_STATE,
    ) -> list[registry_pb2.Agent]:
        """Every matching registration in agent_id order (the in-process discovery read;
        shared, read-only messages)."""
        _raise_if(_validate.state_violations(state), "invalid filter")
        now = self._clock()
        query = AgentQuery(now=now, skill=skill_key(skill), tag=tag, state=state)
        listing = await self.backend.list(query)
        who = caller()
        return [_shown(r, now, who) for r in listing.records]

    async def list_page(
        self,
        *,
        skill: str = "",
        tag: str = "",
        state: registry_pb2.AgentState = ANY_STATE,
        page_size: int = 0,
        page_token: str = "",
    ) -> AgentPage:
        """One page of matching registrations; ``page_size`` 0 means the default (100).
        The messages are shared and read-only (a response copies them)."""
        violations = _validate.state_violations(state)
        size = after = None
        try:
            size = paging.page_size(page_size, default=DEFAULT_PAGE_SIZE, maximum=MAX_PAGE_SIZE)
        except InvalidArgument as err:
            violations.extend(err.violations)
        try:
            after = paging.decode_page_token(page_token)
        except InvalidArgument as err:
            violations.extend(err.violations)
        _raise_if(violations, "invalid list request")
        assert size is not None
        now = self._clock()
        # One extra record says whether another page follows without a second query.
        query = AgentQuery(
            now=now, skill=skill_key(skill), tag=tag, state=state, after=after, limit=size + 1
        )
        records = (await self.backend.list(query)).records
        more = len(records) > size
        records = records[:size]
        token = paging.encode_page_token(records[-1].agent_id) if more else ""
        who = caller()
        return AgentPage([_shown(r, now, who) for r in records], token)

    async def watch(
        self,
        *,
        skill: str = "",
        tag: str = "",
        state: registry_pb2.AgentState = ANY_STATE,
        after_revision: int = 0,
    ) -> AsyncGenerator[AgentEvent, None]:
        """Every matching agent as ADDED, then every matching change as it happens.

        With ``after_revision`` (the revision of the last event a watcher saw),
        no snapshot: the changes after it from the backend's history, then live
        ones; ``HistoryTrimmed`` (OUT_OF_RANGE) when the history no longer
        reaches back that far. Ends with ``WatchOverflow`` if the caller falls
        ``watch_queue_size`` events behind, and with ``RegistryStopped`` when the
        registry stops. Each event's ``agent`` shows the lease id only to its
        holder (the caller when the watch began); ``record`` keeps it.
        """
        _raise_if(
            _validate.state_violations(state) + _validate.revision_violations(after_revision),
            "invalid watch request",
        )
        who = caller()
        if self._stopped:
            raise RegistryStopped("the registry is stopped")
        if self._unsubscribe is None:
            # Subscribed on first use: with nobody watching, changes cost nothing extra.
            self._unsubscribe = self.backend.subscribe(self._publish)
        watcher = self._hub.add(skill=skill_key(skill), tag=tag, state=state)
        try:
            # Subscribed before the snapshot (or the history) is read, so no change
            # falls between the two; changes already shown are skipped by revision.
            if after_revision:
                seen = after_revision
                # Read without an await after subscribing: every later change is queued.
                for change in self.backend.changes_since(after_revision):
                    seen = change.revision
                    kind = watcher.kind_of(change)
                    if kind is not None:
                        yield _seen_by(event_of(kind, change), who)
            else:
                now = self._clock()
                listing = await self.backend.list(
                    AgentQuery(now=now, skill=watcher.skill, tag=tag, state=state)
                )
                for record in listing.records:
                    yield _seen_by(AgentEvent(ADDED, record, now, listing.revision), who)
                seen = listing.revision
            while True:
                yield _seen_by(await watcher.next(seen), who)
        finally:
            self._hub.discard(watcher)

    @property
    def watcher_count(self) -> int:
        """Open watches."""
        return len(self._hub)

    def _publish(self, change: Change) -> None:
        self._hub.publish(change)


def _shown(record: AgentRecord, now: float, who: Principal | None) -> registry_pb2.Agent:
    """The record's shared, read-only message as ``who`` may see it (lease id or not)."""
    return shared_agent(record, now, lease=_access.sees_lease(who, record.agent_id))


def _seen_by(event: AgentEvent, who: Principal | None) -> AgentEvent:
    return event if _access.sees_lease(who, event.record.agent_id) else event.public()


def _raise_if(violations: list[FieldViolation], message: str) -> None:
    if violations:
        raise InvalidArgument(message, violations=violations)


_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def _generated_id(name: str) -> str:
    """``<name-slug>-<8 hex>``: readable in logs, unique enough to never collide in practice."""
    slug = _NOT_SLUG.sub("-", name.lower()).strip("-")[:100].rstrip("-") or "agent"
    return f"{slug}-{secrets.token_hex(4)}"

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
from typing import NamedTuple

from meshwright.agent.v1 import agent_pb2
from meshwright.mesh import paging
from meshwright.mesh.auth import Principal
from meshwright.mesh.context import caller
from meshwright.mesh.errors import FieldViolation, InvalidArgument
from meshwright.mesh.validation import check_id
from meshwright.registry import _access, _validate
from meshwright.registry._convert import to_agent
from meshwright.registry.backend import RegistryBackend
from meshwright.registry.errors import AgentNotFound, RegistryStopped
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
from meshwright.registry.watch import AgentEvent, WatchHub

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
    ``deregister_after_s``.
    """

    def __init__(
        self,
        backend: RegistryBackend,
        *,
        default_lease_ttl_s: float = 10.0,
        sweep_interval_s: float = 1.0,
        deregister_after_s: float = 300.0,
        watch_queue_size: int = 1024,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """
        Args:
            backend: where registrations live; in this process's memory when None.
            default_lease_ttl_s: lease length for registrations that ask for none.
            sweep_interval_s: how often the sweeper looks for lapsed leases.
            deregister_after_s: how long after its lease lapsed an agent is removed.
            watch_queue_size: events a watcher may fall behind before it is cut off.
            clock: epoch seconds; tests pass a fake one.
        """
        if default_lease_ttl_s <= 0 or sweep_interval_s <= 0:
            raise ValueError("default_lease_ttl_s and sweep_interval_s must be positive")
        if deregister_after_s < 0:
            raise ValueError("deregister_after_s must not be negative")
        self.backend: RegistryBackend = backend
        self.default_lease_ttl_s = default_lease_ttl_s
        self.sweep_interval_s = sweep_interval_s
        self.deregister_after_s = deregister_after_s
        self._clock = clock
        self._hub = WatchHub(queue_size=watch_queue_size)
        self._unsubscribe: Callable[[], None] | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._stopped = False

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Start the lease sweeper."""
        if self._sweeper is None:
            self._stopped = False
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="registry-sweeper")

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
        self._hub.close(RegistryStopped("the registry is stopping; watch again"))
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    async def sweep(self) -> SweepResult:
        """One sweep now (the sweeper calls this every ``sweep_interval_s``)."""
        return await self.backend.sweep(
            now=self._clock(), deregister_after_s=self.deregister_after_s
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
        )
        await self.backend.put(record, now=now)
        # The caller was just granted this lease: it is its holder, so the response
        # carries it (an admin registering an agent heartbeats it with this lease).
        return to_agent(record, record.state_at(now))

    async def heartbeat(
        self, agent_id: str, lease_id: str, *, load: int = 0, draining: bool = False
    ) -> registry_pb2.Agent:
        """Renew a lease and record load and draining.

        Raises ``AgentNotFound`` or ``LeaseMismatch`` (register again on either),
        ``NotOwner`` when an agent names another agent's id.
        """
        _raise_if(_validate.heartbeat_violations(agent_id, lease_id, load), "invalid heartbeat")
        who = caller()
        _access.require_self(who, agent_id)
        now = self._clock()
        record = await self.backend.renew(agent_id, lease_id, now=now, load=load, draining=draining)
        # The caller presented the current lease: echoing it tells it nothing new.
        return to_agent(record, record.state_at(now))

    async def deregister(self, agent_id: str) -> registry_pb2.Agent:
        """Remove a registration; returns it as it was.

        Raises ``AgentNotFound``, or ``NotOwner`` when an agent names another agent's id.
        """
        _raise_if(check_id(agent_id, "agent_id"), "invalid agent_id")
        who = caller()
        _access.require_self(who, agent_id)
        now = self._clock()
        record = await self.backend.delete(agent_id, now=now)
        return _access.shown(to_agent(record, record.state_at(now)), who)

    # -- reads ---------------------------------------------------------------

    async def get_agent(self, agent_id: str) -> registry_pb2.Agent:
        """One registration, its state judged now. Raises ``AgentNotFound``."""
        _raise_if(check_id(agent_id, "agent_id"), "invalid agent_id")
        record = await self.backend.get(agent_id)
        if record is None:
            raise AgentNotFound(f"agent {agent_id!r} is not registered")
        return _access.shown(to_agent(record, record.state_at(self._clock())), caller())

    async def list_agents(
        self,
        *,
        skill: str = "",
        tag: str = "",
        state: registry_pb2.AgentState = ANY_STATE,
    ) -> list[registry_pb2.Agent]:
        """Every matching registration in agent_id order (the in-process discovery read)."""
        _raise_if(_validate.state_violations(state), "invalid filter")
        now = self._clock()
        query = AgentQuery(now=now, skill=skill_key(skill), tag=tag, state=state)
        listing = await self.backend.list(query)
        who = caller()
        return [_access.shown(to_agent(r, r.state_at(now)), who) for r in listing.records]

    async def list_page(
        self,
        *,
        skill: str = "",
        tag: str = "",
        state: registry_pb2.AgentState = ANY_STATE,
        page_size: int = 0,
        page_token: str = "",
    ) -> AgentPage:
        """One page of matching registrations; ``page_size`` 0 means the default (100)."""
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
        return AgentPage([_access.shown(to_agent(r, r.state_at(now)), who) for r in records], token)

    async def watch(self, *, skill: str = "", tag: str = "") -> AsyncGenerator[AgentEvent, None]:
        """Every matching agent as ADDED, then every matching change as it happens.

        Ends with ``WatchOverflow`` if the caller falls ``watch_queue_size``
        events behind, and with ``RegistryStopped`` when the registry stops.
        Each event's ``agent`` shows the lease id only to its holder (the
        caller when the watch began); ``record`` is the domain's and keeps it.
        """
        who = caller()
        if self._stopped:
            raise RegistryStopped("the registry is stopped")
        if self._unsubscribe is None:
            # Subscribed on first use: with nobody watching, changes cost nothing extra.
            self._unsubscribe = self.backend.subscribe(self._publish)
        watcher = self._hub.add(skill=skill_key(skill), tag=tag)
        try:
            # Subscribed before the snapshot is read, so no change falls between
            # the two; changes the snapshot already shows are skipped by revision.
            now = self._clock()
            listing = await self.backend.list(AgentQuery(now=now, skill=watcher.skill, tag=tag))
            for record in listing.records:
                event = AgentEvent(ADDED, record, record.state_at(now), listing.revision)
                yield _seen_by(event, who)
            while True:
                yield _seen_by(await watcher.next(listing.revision), who)
        finally:
            self._hub.discard(watcher)

    @property
    def watcher_count(self) -> int:
        """Open watches."""
        return len(self._hub)

    def _publish(self, change: Change) -> None:
        self._hub.publish(change)


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

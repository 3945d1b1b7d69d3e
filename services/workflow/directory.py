"""The engine's view of which agents can run a skill, and how busy they are.

The directory mirrors the registry through ``WatchAgents`` (after a full
``ListAgents`` on every (re)connect), so picking an agent for a task costs no
call at all. It tracks what this engine has in flight on each agent, their
latency and failures, and keeps a small circuit breaker per agent. Tasks that
find every suitable agent saturated wait in a FIFO per skill and are woken
when a slot frees up, instead of polling.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from meshwright.mesh.client import ServiceClient
from meshwright.mesh.errors import MeshError, ResourceExhausted, Unavailable
from meshwright.registry.v1 import registry_pb2

log = logging.getLogger(__name__)

ACTIVE = registry_pb2.AGENT_STATE_ACTIVE
UNLIMITED = 1 << 30


class NoAgentAvailable(Unavailable):
    """No active agent offering the skill could take the task in time."""

    reason = "NO_AGENT_AVAILABLE"


class BudgetExhausted(ResourceExhausted):
    """Every agent offering the skill costs more than the budget has left."""

    reason = "BUDGET_EXHAUSTED"


@dataclass(slots=True)
class AgentStats:
    """What this engine has observed of one agent."""

    inflight: int = 0
    successes: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    latency_ewma_s: float = 0.0
    breaker_open_until: float = 0.0


@dataclass(frozen=True, slots=True)
class Lease:
    """A slot taken on an agent for one attempt."""

    agent_id: str
    endpoint: str
    payout_account_id: str
    price: int
    skills: frozenset[str] = field(default_factory=frozenset)


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerPolicy:
    """When an agent stops being offered work after transport failures."""

    failure_threshold: int = 3
    """Consecutive failed calls that open the breaker."""
    open_s: float = 5.0
    """How long it stays open before one trial call is allowed."""


class AgentDirectory:
    """Registry mirror plus placement: picks the best agent for a skill."""

    def __init__(
        self,
        registry: ServiceClient,
        *,
        breaker: BreakerPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        on_endpoint_gone: Callable[[str], None] | None = None,
    ) -> None:
        self._registry = registry
        self._breaker = breaker or BreakerPolicy()
        self._clock = clock
        self._wall_clock = wall_clock
        self._on_endpoint_gone = on_endpoint_gone
        self._agents: dict[str, registry_pb2.Agent] = {}
        self._prices: dict[str, dict[str, int]] = {}  # agent -> skill -> price
        self._lease_ends: dict[str, float] = {}  # agent -> lease expiry, epoch seconds
        self._by_skill: dict[str, set[str]] = {}
        self._stats: dict[str, AgentStats] = {}
        self._waiters: dict[str, deque[asyncio.Future[None]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._synced = asyncio.Event()

    # -- registry mirror ---------------------------------------------------

    async def start(self, *, sync_timeout_s: float = 5.0) -> None:
        """Start mirroring; waits (bounded) for the first full listing."""
        if self._task is None:
            self._task = asyncio.create_task(self._follow(), name="agent-directory")
        try:
            await asyncio.wait_for(self._synced.wait(), sync_timeout_s)
        except TimeoutError:
            log.warning("registry not reachable yet; the directory keeps trying")

    async def stop(self) -> None:
        """Stop mirroring and wake every waiter."""
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for q in self._waiters.values():
            for fut in q:
                if not fut.done():
                    fut.set_result(None)

    async def _follow(self) -> None:
        backoff = 0.1
        while True:
            try:
                await self._load_all()
                self._synced.set()
                async for change in self._registry.stream(
                    "WatchAgents", registry_pb2.WatchAgentsRequest()
                ):
                    self._apply(change)
                    backoff = 0.1
            except MeshError as err:
                log.info("agent watch interrupted (%s); reconnecting", err.reason)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def _load_all(self) -> None:
        fresh: dict[str, registry_pb2.Agent] = {}
        token = ""
        while True:
            page = await self._registry.call(
                "ListAgents", registry_pb2.ListAgentsRequest(page_size=1000, page_token=token)
            )
            for a in page.agents:
                fresh[a.agent_id] = a
            token = page.next_page_token
            if not token:
                break
        for agent_id in list(self._agents):
            if agent_id not in fresh:
                self._forget(agent_id)
        for a in fresh.values():
            self._upsert(a)

    def _apply(self, change: registry_pb2.WatchAgentsResponse) -> None:
        if change.type == registry_pb2.AGENT_EVENT_TYPE_REMOVED:
            self._forget(change.agent.agent_id)
        else:
            self._upsert(change.agent)

    def _upsert(self, agent: registry_pb2.Agent) -> None:
        old = self._prices.get(agent.agent_id, {})
        prices = {s.id: s.price for s in agent.card.skills}
        for skill in old.keys() - prices.keys():
            self._by_skill.get(skill, set()).discard(agent.agent_id)
        for skill in prices:
            self._by_skill.setdefault(skill, set()).add(agent.agent_id)
        self._agents[agent.agent_id] = agent
        self._prices[agent.agent_id] = prices
        expire = agent.lease_expire_time
        self._lease_ends[agent.agent_id] = (
            expire.seconds + expire.nanos / 1e9 if agent.HasField("lease_expire_time") else 0.0
        )
        self._stats.setdefault(agent.agent_id, AgentStats())
        if agent.state == ACTIVE:
            for skill in prices:
                self._wake(skill)

    def _forget(self, agent_id: str) -> None:
        gone = self._agents.pop(agent_id, None)
        self._lease_ends.pop(agent_id, None)
        self._stats.pop(agent_id, None)
        if (
            gone is not None
            and self._on_endpoint_gone is not None
            and all(a.endpoint != gone.endpoint for a in self._agents.values())
        ):
            # Nobody registered there any more: its channel can go (agents that
            # restart come back on new ports with new ids).
            self._on_endpoint_gone(gone.endpoint)
        for skill in self._prices.pop(agent_id, {}):
            self._by_skill.get(skill, set()).discard(agent_id)

    # -- queries -------------------------------------------------------------

    def agents(self) -> list[registry_pb2.Agent]:
        """The mirrored registrations."""
        return list(self._agents.values())

    async def skill_known(self, skill: str) -> bool:
        """Whether any registered agent (in any state) offers ``skill``."""
        if self._by_skill.get(skill):
            return True
        # The mirror may lag a registration that just happened: ask once.
        page = await self._registry.call(
            "ListAgents", registry_pb2.ListAgentsRequest(skill=skill, page_size=1)
        )
        return bool(page.agents)

    # -- placement -----------------------------------------------------------

    def _pick(self, skill: str, max_price: int, exclude: set[str]) -> tuple[Lease | None, bool]:
        """(best lease, whether an affordable agent exists at all)."""
        now = self._clock()
        # A lease past its end is as good as INACTIVE even before the registry's
        # sweeper says so (the registry computes state the same way on reads).
        wall = self._wall_clock()
        best: tuple[float, str] | None = None
        affordable = False
        fallback: tuple[float, str] | None = None
        candidates = self._by_skill.get(skill, ())
        max_seen_price = max((self._prices[a][skill] for a in candidates), default=0) or 1
        for agent_id in candidates:
            if not self._live(agent_id, wall):
                continue
            agent = self._agents[agent_id]
            price = self._prices[agent_id][skill]
            if price > max_price:
                continue
            affordable = True
            st = self._stats[agent_id]
            if st.breaker_open_until > now:
                continue
            cap = agent.capacity or UNLIMITED
            if st.inflight >= cap:
                continue
            score = (
                0.45 * (st.inflight / cap if cap != UNLIMITED else st.inflight / 64)
                + 0.25 * (st.failures / (st.successes + st.failures + 1))
                + 0.15 * (price / max_seen_price)
                + 0.15 * min(st.latency_ewma_s, 10.0) / 10.0
            )
            key = (score, agent_id)
            if agent_id in exclude:
                if fallback is None or key < fallback:
                    fallback = key
            elif best is None or key < best:
                best = key
        chosen = best or fallback
        if chosen is None:
            return None, affordable
        agent_id = chosen[1]
        agent = self._agents[agent_id]
        self._stats[agent_id].inflight += 1
        return (
            Lease(
                agent_id=agent_id,
                endpoint=agent.endpoint,
                payout_account_id=agent.payout_account_id or agent_id,
                price=self._prices[agent_id][skill],
                skills=frozenset(self._prices[agent_id]),
            ),
            True,
        )

    async def acquire(
        self,
        skill: str,
        *,
        max_price: Callable[[], int],
        exclude: set[str],
        timeout_s: float,
        on_unaffordable: Callable[[], bool] | None = None,
    ) -> Lease:
        """Take a slot on the best agent for ``skill``, waiting for one to free up.

        ``max_price`` is read at the moment of picking, so a caller can reserve
        budget right after this returns with no await in between.
        ``on_unaffordable`` says whether to keep waiting when only agents above
        ``max_price`` exist (the budget may free up); otherwise BudgetExhausted.
        """
        deadline = self._clock() + timeout_s
        while True:
            lease, affordable = self._pick(skill, max_price(), exclude)
            if lease is not None:
                return lease
            if not affordable and self._has_active(skill):
                if on_unaffordable is None or not on_unaffordable():
                    raise BudgetExhausted(
                        f"every active agent offering {skill!r} costs more than the "
                        f"{max_price()} left in the budget"
                    )
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise NoAgentAvailable(
                    f"no active agent offering {skill!r} could take the task within "
                    f"{timeout_s:.1f}s"
                )
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            queue = self._waiters.setdefault(skill, deque())
            while queue and queue[0].done():  # waits that timed out, oldest first
                queue.popleft()
            queue.append(fut)
            try:
                await asyncio.wait_for(fut, min(remaining, 1.0))
            except TimeoutError:
                pass
            finally:
                if not fut.done():
                    fut.cancel()

    def _live(self, agent_id: str, wall: float) -> bool:
        """ACTIVE, and its lease not past its end (the registry judges reads the same way)."""
        if self._agents[agent_id].state != ACTIVE:
            return False
        end = self._lease_ends[agent_id]
        return end == 0.0 or end >= wall

    def _has_active(self, skill: str) -> bool:
        wall = self._wall_clock()
        return any(self._live(a, wall) for a in self._by_skill.get(skill, ()))

    def release(
        self,
        lease: Lease,
        *,
        ok: bool,
        transport_failure: bool,
        latency_s: float,
        counted: bool = True,
    ) -> None:
        """Give the slot back and record how the attempt went.

        ``counted=False`` (the caller cancelled the attempt) frees the slot
        without judging the agent.
        """
        st = self._stats.setdefault(lease.agent_id, AgentStats())
        st.inflight = max(0, st.inflight - 1)
        if not counted:
            for skill in lease.skills:
                self._wake(skill, 1)
            return
        if ok:
            st.successes += 1
        else:
            st.failures += 1
        if transport_failure:
            st.consecutive_failures += 1
            if st.consecutive_failures >= self._breaker.failure_threshold:
                st.breaker_open_until = self._clock() + self._breaker.open_s
        else:
            st.consecutive_failures = 0
            st.breaker_open_until = 0.0
            st.latency_ewma_s = (
                latency_s if st.latency_ewma_s == 0 else 0.8 * st.latency_ewma_s + 0.2 * latency_s
            )
        for skill in lease.skills:
            self._wake(skill, 1)

    def wake_all(self, skill: str) -> None:
        """Wake every task waiting for ``skill`` (the budget changed)."""
        self._wake(skill, None)

    def _wake(self, skill: str, count: int | None = None) -> None:
        q = self._waiters.get(skill)
        woken = 0
        while q and (count is None or woken < count):
            fut = q.popleft()
            if not fut.done():
                fut.set_result(None)
                woken += 1

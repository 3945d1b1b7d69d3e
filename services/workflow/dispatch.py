"""One agent dispatcher for the engine and the mesh's skill router.

The dispatcher mirrors the registry through ``WatchAgents`` (after a full
``ListAgents`` on every (re)connect), so picking an agent costs no call. It
places work on the best agent offering a skill, hands out a ``Slot`` per
attempt, calls the agent (``ExecuteTask``, ``StreamTask``, ``CancelTask``)
through one cached client per endpoint, and judges agents by how the attempts
went: latency, failures and a circuit breaker per agent (``meshwright.mesh.breaker``:
a half-open breaker's probe is the trial call an agent gets after its open
period, so a slot taken then holds the probe until it is released). Attempts that
find every suitable agent saturated wait in a FIFO per skill and are woken
when a slot frees up, instead of polling.

How busy an agent is comes from two sources. The registry carries the load
the agent reported at its last heartbeat (everything it runs, for any engine
replica or direct caller); this dispatcher knows the slots it took itself.
The estimate of the agent's in-flight work is

    max(own slots in flight, reported load + own slots taken since that report)

where a slot taken before the report and released after it takes one off the
reported figure (the report counted it). So a replica fills only the room the
last report left plus what it frees itself, and two replicas do not overfill
one agent between heartbeats; a stale report (the agent was busier when it
sent it than now) costs a few slots of concurrency until the next heartbeat,
never a stall. An agent that answers "at capacity" anyway (another replica
took the room first) is taken as full until its next report: the answer is a
placement miss, not a fault, so it does not count toward its breaker.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Collection, Coroutine
from dataclasses import dataclass, field
from typing import Any

import grpc

from meshwright.agent.v1 import agent_pb2
from meshwright.mesh.breaker import BreakerPolicy, CircuitBreaker, Permit
from meshwright.mesh.client import ChannelPool, RemoteServiceClient, ServiceClient
from meshwright.mesh.context import detached
from meshwright.mesh.errors import DeadlineExceeded, MeshError, ResourceExhausted, Unavailable
from meshwright.registry.v1 import registry_pb2

log = logging.getLogger(__name__)

AGENT_SERVICE = agent_pb2.DESCRIPTOR.services_by_name["AgentService"]
ACTIVE = registry_pb2.AGENT_STATE_ACTIVE
STOPPED = registry_pb2.AGENT_STATE_STOPPED
UNLIMITED = 1 << 30
"""A price or capacity no agent reaches: "no limit"."""
AGENT_AT_CAPACITY = "AGENT_AT_CAPACITY"
"""The reason of the agent runtime's ``AgentAtCapacity`` (``meshwright.agent.errors``),
matched by string: importing the agent package would pull its whole runtime in."""
CANCEL_TIMEOUT_S = 2.0
"""Deadline of a best-effort ``CancelTask`` sent to an agent."""
STOP_GRACE_S = 2.0
"""How long ``stop`` lets background calls (cancels, channel closes) finish."""
_UNLIMITED_SCALE = 64
"""In-flight tasks that count as "fully loaded" for an agent without a capacity."""


_BREAKER_POLL_S = 1.0
"""How often a task waiting behind open breakers looks again."""


class NoAgentAvailable(Unavailable):
    """No active agent offering the skill could take the task in time."""

    reason = "NO_AGENT_AVAILABLE"


class BudgetExhausted(ResourceExhausted):
    """Every agent offering the skill costs more than the budget has left."""

    reason = "BUDGET_EXHAUSTED"


def is_at_capacity(err: MeshError) -> bool:
    """Whether ``err`` is an agent's answer that it runs as many tasks as it can."""
    return isinstance(err, ResourceExhausted) and err.reason == AGENT_AT_CAPACITY


def is_transport_failure(err: MeshError) -> bool:
    """THE rule: whether a failed agent call counts against the agent.

    Unavailable, DeadlineExceeded and ResourceExhausted do (the agent is down,
    slow or overloaded: its circuit breaker counts them and a retry goes
    elsewhere), except the agent's own "at capacity" answer, which says only
    that the room was taken first.
    """
    if is_at_capacity(err):
        return False
    return isinstance(err, Unavailable | DeadlineExceeded | ResourceExhausted)


@dataclass(frozen=True, slots=True)
class Slot:
    """A slot taken on an agent for one attempt (give it back with ``release``)."""

    agent_id: str
    endpoint: str
    payout_account_id: str
    price: int
    """The agent's price for the skill the slot was taken for."""
    skills: frozenset[str] = field(default_factory=frozenset)
    """Every skill the agent offered when the slot was taken (who to wake on release)."""


@dataclass(slots=True)
class _AgentState:
    """What this dispatcher knows of one agent's load and health."""

    breaker: CircuitBreaker
    """Opened by transport failures (``is_transport_failure``); its half-open probes are
    the trial calls an agent gets after its open period."""
    inflight: int = 0
    """Own slots in flight."""
    reported: int = 0
    """Load at the last report, less own slots it counted that were released since."""
    fresh: int = 0
    """Own slots in flight taken since the last report (not in it)."""
    generation: int = 0
    """Counts load reports; a slot remembers the one it was taken under."""
    report_key: bytes = b""
    """Identifies the last report (registration and heartbeat times)."""
    successes: int = 0
    failures: int = 0
    latency_ewma_s: float = 0.0

    def effective(self) -> int:
        return max(self.inflight, self.reported + self.fresh)

    def report(self, load: int) -> None:
        """A new load figure: every own slot in flight is now counted in it."""
        self.reported = max(0, load)
        self.fresh = 0
        self.generation += 1


@dataclass(slots=True)
class _Taken:
    """Bookkeeping of one slot handed out."""

    slot: Slot
    state: _AgentState
    generation: int
    permit: Permit
    """The agent's breaker let this attempt through; settled on release."""


def _report_key(agent: registry_pb2.Agent) -> bytes:
    return (
        agent.register_time.SerializeToString(deterministic=True)
        + b"/"
        + agent.last_heartbeat_time.SerializeToString(deterministic=True)
    )


class AgentDispatcher:
    """Registry mirror, placement, slots and agent calls, shared by engine and router."""

    def __init__(
        self,
        registry: ServiceClient,
        channels: ChannelPool,
        *,
        breaker: BreakerPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """``channels`` belongs to the caller: the dispatcher makes its agent clients
        from it and discards the channels of endpoints no agent is registered at any
        more, but never closes the pool. ``breaker`` is the policy of every agent's
        breaker; ``clock`` (monotonic) times them and the waits for an agent."""
        self._registry = registry
        self._channels = channels
        self._breaker = breaker or BreakerPolicy()
        self._clock = clock
        self._wall_clock = wall_clock
        self._agents: dict[str, registry_pb2.Agent] = {}
        self._prices: dict[str, dict[str, int]] = {}  # agent -> skill -> price
        self._lease_ends: dict[str, float] = {}  # agent -> lease expiry, epoch seconds
        self._by_skill: dict[str, set[str]] = {}
        self._state: dict[str, _AgentState] = {}
        self._taken: dict[int, _Taken] = {}  # id(slot) -> its bookkeeping
        self._waiters: dict[str, deque[asyncio.Future[None]]] = {}
        self._clients: dict[str, RemoteServiceClient] = {}
        self._registered_at: dict[str, int] = {}  # endpoint -> agents registered there
        self._endpoint_slots: dict[str, int] = {}  # endpoint -> own slots in flight
        self._gone: set[str] = set()  # endpoints to drop once their slots are back
        self._background: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._synced = asyncio.Event()
        self._stopped = False
        self._breaker_held = False
        """Whether the last pick skipped an agent for its open breaker."""

    # -- lifecycle -----------------------------------------------------------

    async def start(self, *, sync_timeout_s: float = 5.0) -> None:
        """Start mirroring; waits (bounded) for the first full listing."""
        self._stopped = False
        if self._task is None:
            self._task = asyncio.create_task(self._follow(), name="agent-dispatcher")
        try:
            await asyncio.wait_for(self._synced.wait(), sync_timeout_s)
        except TimeoutError:
            log.warning("registry not reachable yet; the dispatcher keeps trying")

    async def stop(self) -> None:
        """Stop mirroring, end every wait for an agent, let background calls finish.

        Waiting ``acquire`` calls (and later ones) raise NoAgentAvailable. CancelTask
        calls and channel closes under way get ``STOP_GRACE_S`` to finish.
        """
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        for skill in list(self._waiters):
            self._wake(skill)
        if self._background:
            await asyncio.wait(list(self._background), timeout=STOP_GRACE_S)
        for t in list(self._background):
            t.cancel()
        self._clients.clear()

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
                if a.state != STOPPED:
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
        # A STOPPED agent left for good (it registers again to come back): its
        # endpoint's client can go now, not when the registry removes the record.
        if change.type == registry_pb2.AGENT_EVENT_TYPE_REMOVED or change.agent.state == STOPPED:
            self._forget(change.agent.agent_id)
        else:
            self._upsert(change.agent)

    def _upsert(self, agent: registry_pb2.Agent) -> None:
        agent_id = agent.agent_id
        old_prices = self._prices.get(agent_id, {})
        prices = {s.id: s.price for s in agent.card.skills}
        for skill in old_prices.keys() - prices.keys():
            self._by_skill.get(skill, set()).discard(agent_id)
        for skill in prices:
            self._by_skill.setdefault(skill, set()).add(agent_id)
        previous = self._agents.get(agent_id)
        self._agents[agent_id] = agent
        self._prices[agent_id] = prices
        if previous is None or previous.endpoint != agent.endpoint:
            self._registered_at[agent.endpoint] = self._registered_at.get(agent.endpoint, 0) + 1
            self._gone.discard(agent.endpoint)
            if previous is not None:
                self._left_endpoint(previous.endpoint)
        expire = agent.lease_expire_time
        self._lease_ends[agent_id] = (
            expire.seconds + expire.nanos / 1e9 if agent.HasField("lease_expire_time") else 0.0
        )
        st = self._state.get(agent_id)
        if st is None:
            st = _AgentState(breaker=CircuitBreaker(self._breaker, clock=self._clock))
            self._state[agent_id] = st
        key = _report_key(agent)
        if key != st.report_key:
            # A heartbeat (or a new registration) since the last one we saw; the
            # same report seen again (the listing, then the watch) changes nothing.
            st.report_key = key
            st.report(agent.load)
        if agent.state == ACTIVE and self._has_room(agent, st):
            for skill in prices:
                self._wake(skill)

    def _forget(self, agent_id: str) -> None:
        gone = self._agents.pop(agent_id, None)
        self._lease_ends.pop(agent_id, None)
        self._state.pop(agent_id, None)
        for skill in self._prices.pop(agent_id, {}):
            self._by_skill.get(skill, set()).discard(agent_id)
        if gone is not None:
            self._left_endpoint(gone.endpoint)

    def _left_endpoint(self, endpoint: str) -> None:
        left = self._registered_at.get(endpoint, 0) - 1
        if left > 0:
            self._registered_at[endpoint] = left
            return
        self._registered_at.pop(endpoint, None)
        # Nobody registered there any more: its client and channel can go (agents
        # that restart come back on new ports with new ids), once the attempts
        # still running there are over.
        if self._endpoint_slots.get(endpoint):
            self._gone.add(endpoint)
        else:
            self._drop_endpoint(endpoint)

    def _drop_endpoint(self, endpoint: str) -> None:
        self._gone.discard(endpoint)
        if self._clients.pop(endpoint, None) is not None:
            self._spawn(self._channels.discard(endpoint))

    # -- queries -------------------------------------------------------------

    def agents(self) -> list[registry_pb2.Agent]:
        """The mirrored registrations (every state)."""
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

    def _live(self, agent_id: str, wall: float) -> bool:
        """ACTIVE, and its lease not past its end (the registry judges reads the same way)."""
        if self._agents[agent_id].state != ACTIVE:
            return False
        end = self._lease_ends[agent_id]
        return end == 0.0 or end >= wall

    @staticmethod
    def _has_room(agent: registry_pb2.Agent, st: _AgentState) -> bool:
        return st.effective() < (agent.capacity or UNLIMITED)

    def _has_active(self, skill: str) -> bool:
        wall = self._wall_clock()
        return any(self._live(a, wall) for a in self._by_skill.get(skill, ()))

    def agent_breaker(self, agent_id: str) -> CircuitBreaker | None:
        """The breaker of a mirrored agent (None for an agent not registered), for metrics."""
        st = self._state.get(agent_id)
        return None if st is None else st.breaker

    def _pick(
        self, skill: str, max_price: int, exclude: Collection[str], prefer: str
    ) -> tuple[Slot | None, bool]:
        """(a slot on the best agent, whether an affordable live agent exists at all)."""
        self._breaker_held = False
        # A lease past its end is as good as INACTIVE even before the registry's
        # sweeper says so.
        wall = self._wall_clock()
        candidates = self._by_skill.get(skill, ())
        affordable = False
        best: tuple[float, str] | None = None
        fallback: tuple[float, str] | None = None
        max_seen_price = max((self._prices[a][skill] for a in candidates), default=0) or 1
        for agent_id in candidates:
            if not self._live(agent_id, wall):
                continue
            price = self._prices[agent_id][skill]
            if price > max_price:
                continue
            affordable = True
            st = self._state[agent_id]
            agent = self._agents[agent_id]
            if not st.breaker.allows():
                self._breaker_held = True
                continue
            if not self._has_room(agent, st):
                continue
            if agent_id == prefer:
                return self._take(agent_id, skill, st), True
            cap = agent.capacity
            load = st.effective() / (cap or _UNLIMITED_SCALE)
            score = (
                0.45 * load
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
        return self._take(agent_id, skill, self._state[agent_id]), True

    def _take(self, agent_id: str, skill: str, st: _AgentState) -> Slot:
        agent = self._agents[agent_id]
        slot = Slot(
            agent_id=agent_id,
            endpoint=agent.endpoint,
            payout_account_id=agent.payout_account_id or agent_id,
            price=self._prices[agent_id][skill],
            skills=frozenset(self._prices[agent_id]),
        )
        permit = st.breaker.try_acquire()
        if permit is None:
            # _pick saw allows() with no await since, and time only moves a breaker
            # toward letting calls through: unreachable unless the breaker is broken.
            raise RuntimeError(f"breaker of {agent_id} refused a permit it had allowed")
        st.inflight += 1
        st.fresh += 1
        self._taken[id(slot)] = _Taken(slot, st, st.generation, permit)
        self._endpoint_slots[slot.endpoint] = self._endpoint_slots.get(slot.endpoint, 0) + 1
        return slot

    async def acquire(
        self,
        skill: str,
        *,
        max_price: Callable[[], int],
        exclude: Collection[str] = (),
        prefer: str = "",
        timeout_s: float,
        on_unaffordable: Callable[[], bool] | None = None,
    ) -> Slot:
        """Take a slot on the best agent for ``skill``, waiting for one to free up.

        ``max_price`` is read at the moment of picking, so a caller can reserve
        budget right after this returns with no await in between. Agents in
        ``exclude`` are taken only when no other agent can. ``prefer`` names an
        agent to take whenever it can take the slot at all (live, offering the
        skill, affordable, breaker not open, room left), even if it is also in
        ``exclude``; otherwise placement is as usual. ``on_unaffordable`` says
        whether to keep waiting when only agents above ``max_price`` are live
        (the budget may free up); without it, or when it says no, BudgetExhausted.
        Raises NoAgentAvailable after ``timeout_s``, or when the dispatcher stops.
        """
        deadline = self._clock() + timeout_s
        while True:
            if self._stopped:
                raise NoAgentAvailable("the mesh is shutting down: no agent is offered work")
            slot, affordable = self._pick(skill, max_price(), exclude, prefer)
            if slot is not None:
                return slot
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
            # Woken by a released slot, a load report or a new agent. Only a breaker's
            # open period ends with no event, so only then is the wait bounded: a
            # poll of every waiter each second costs more than the tasks themselves
            # in a large fan-out (thousands of waiters).
            wait = min(remaining, _BREAKER_POLL_S) if self._breaker_held else remaining
            try:
                await asyncio.wait((fut,), timeout=wait)
            finally:
                if not fut.done():
                    fut.cancel()

    def release(
        self,
        slot: Slot,
        *,
        ok: bool,
        failure: MeshError | None = None,
        latency_s: float,
        counted: bool = True,
    ) -> None:
        """Give the slot back and record how the attempt went.

        ``failure`` is the error the agent call raised, if it did: a transport
        failure (``is_transport_failure``) counts toward the agent's breaker; the
        agent's "at capacity" answer counts for nothing and marks the agent full
        until its next load report. ``counted=False`` (the caller cancelled the
        attempt) frees the slot without judging the agent. Releasing a slot twice
        does nothing the second time.
        """
        # Keyed by identity: the entry holds the slot, so its id is not reused meanwhile.
        taken = self._taken.pop(id(slot), None)
        if taken is None:
            log.debug("slot on %s released twice (or never taken)", slot.agent_id)
            return
        left = self._endpoint_slots.get(slot.endpoint, 0) - 1
        if left > 0:
            self._endpoint_slots[slot.endpoint] = left
        else:
            self._endpoint_slots.pop(slot.endpoint, None)
            if slot.endpoint in self._gone:
                self._drop_endpoint(slot.endpoint)
        st = taken.state
        if self._state.get(slot.agent_id) is st:  # else the agent left the registry
            self._settle(st, taken, ok=ok, failure=failure, latency_s=latency_s, counted=counted)
        for skill in slot.skills:
            self._wake(skill, 1)

    def _settle(
        self,
        st: _AgentState,
        taken: _Taken,
        *,
        ok: bool,
        failure: MeshError | None,
        latency_s: float,
        counted: bool,
    ) -> None:
        st.inflight = max(0, st.inflight - 1)
        if taken.generation == st.generation:
            st.fresh = max(0, st.fresh - 1)
        else:
            st.reported = max(0, st.reported - 1)  # the last report counted it
        if not counted:
            st.breaker.release(taken.permit)
            return
        if failure is not None and is_at_capacity(failure):
            # Another caller took the room first: the agent did no wrong, it is full.
            st.breaker.release(taken.permit)
            agent = self._agents.get(taken.slot.agent_id)
            if agent is not None and agent.capacity:
                st.report(agent.capacity)
            return
        if ok:
            st.successes += 1
        else:
            st.failures += 1
        if failure is not None and is_transport_failure(failure):
            st.breaker.record_failure(taken.permit)
        else:
            # Any answer of the agent's own (a result, or an error about the task) shows
            # it reachable: the breaker counts it as a success.
            st.breaker.record_success(taken.permit)
            st.latency_ewma_s = (
                latency_s if st.latency_ewma_s == 0 else 0.8 * st.latency_ewma_s + 0.2 * latency_s
            )

    def wake_all(self, skill: str) -> None:
        """Wake every attempt waiting for ``skill`` (the budget changed)."""
        self._wake(skill)

    def _wake(self, skill: str, count: int | None = None) -> None:
        q = self._waiters.get(skill)
        woken = 0
        while q and (count is None or woken < count):
            fut = q.popleft()
            if not fut.done():
                fut.set_result(None)
                woken += 1

    # -- agent calls ---------------------------------------------------------

    def _client(self, endpoint: str) -> RemoteServiceClient:
        client = self._clients.get(endpoint)
        if client is None:
            # The task attempt's span stands for the call: no CLIENT span of its own.
            client = self._channels.client(endpoint, AGENT_SERVICE, client_spans=False)
            self._clients[endpoint] = client
        return client

    async def execute(
        self,
        slot: Slot,
        request: agent_pb2.ExecuteTaskRequest,
        *,
        timeout_s: float | None = None,
    ) -> agent_pb2.Task:
        """Run ``request`` on the slot's agent (ExecuteTask); returns the agent's task.

        Raises the agent call's MeshError; pass it to ``release``.
        """
        reply = await self._client(slot.endpoint).call("ExecuteTask", request, timeout=timeout_s)
        task: agent_pb2.Task = reply.task
        return task

    async def stream(
        self,
        slot: Slot,
        request: agent_pb2.StreamTaskRequest,
        *,
        timeout_s: float | None = None,
    ) -> AsyncIterator[agent_pb2.StreamTaskResponse]:
        """Run ``request`` on the slot's agent (StreamTask), yielding its updates.

        ``timeout_s`` bounds the whole stream. The last update yielded is the final
        one; a stream the agent ends without it raises Unavailable.
        """
        final = False
        async for update in self._client(slot.endpoint).stream(
            "StreamTask", request, timeout=timeout_s
        ):
            if final:
                continue  # nothing follows the final update
            final = update.final
            yield update
        if not final:
            raise Unavailable(f"agent {slot.agent_id} ended the stream without a final task")

    async def cancel_task(
        self, slot: Slot, request: agent_pb2.CancelTaskRequest, *, timeout_s: float
    ) -> agent_pb2.CancelTaskResponse:
        """Send CancelTask to the slot's agent and return its answer (raises MeshError)."""
        reply: agent_pb2.CancelTaskResponse = await self._client(slot.endpoint).call(
            "CancelTask", request, timeout=timeout_s
        )
        return reply

    async def cancel_on_agent(self, slot: Slot, task_id: str) -> None:
        """Ask the slot's agent to cancel ``task_id``: best effort, never raises MeshError.

        The call runs on its own (``CANCEL_TIMEOUT_S`` deadline, detached from the
        current call's): a caller cancelled meanwhile does not cut it off, and
        ``stop`` lets it finish.
        """
        if slot.endpoint not in self._clients and slot.endpoint not in self._registered_at:
            return  # nobody there to tell, and no channel to open for it
        request = agent_pb2.CancelTaskRequest(task_id=task_id)
        await asyncio.shield(self._spawn(self._cancel_quietly(slot, request)))

    async def _cancel_quietly(self, slot: Slot, request: agent_pb2.CancelTaskRequest) -> None:
        try:
            await self.cancel_task(slot, request, timeout_s=CANCEL_TIMEOUT_S)
        except (MeshError, grpc.aio.UsageError):
            pass  # it may have finished already, or the agent is gone

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        t = asyncio.create_task(coro, context=detached())
        self._background.add(t)
        t.add_done_callback(self._background.discard)
        return t


__all__ = [
    "AGENT_AT_CAPACITY",
    "AgentDispatcher",
    "BreakerPolicy",
    "BudgetExhausted",
    "NoAgentAvailable",
    "Slot",
    "UNLIMITED",
    "is_at_capacity",
    "is_transport_failure",
]

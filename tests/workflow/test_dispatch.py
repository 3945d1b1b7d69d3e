"""The agent dispatcher against a real registry (gRPC, port 0) and real agents.

Registrations, loads and prices go in through the registry's own API
(RegisterAgent, Heartbeat, DeregisterAgent); the dispatcher sees them through
its WatchAgents mirror, as in production. Agent calls cross a real socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor

from meshwright.agent import Agent, AgentRuntime, TaskContext
from meshwright.agent.errors import AgentAtCapacity
from meshwright.agent.v1 import agent_pb2
from meshwright.mesh import MeshServer, RemoteServiceClient
from meshwright.mesh.client import ChannelPool
from meshwright.mesh.errors import (
    Aborted,
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    MeshError,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    from_status_proto,
    to_status_proto,
)
from meshwright.mesh.security import insecure_pipeline
from meshwright.registry import SERVICE as REGISTRY_SERVICE
from meshwright.registry import MemoryRegistryBackend, Registry
from meshwright.registry.v1 import registry_pb2
from meshwright.workflow.dispatch import (
    AGENT_AT_CAPACITY,
    AGENT_SERVICE,
    AgentDispatcher,
    BreakerPolicy,
    BudgetExhausted,
    NoAgentAvailable,
    Slot,
    is_at_capacity,
    is_transport_failure,
)
from tests.conftest import eventually
from tests.registry.conftest import serving

SKILL = "x.echo"
A = agent_pb2
R = registry_pb2


class RecordingPool(ChannelPool):
    """A real channel pool that remembers which clients it made and which channels it dropped."""

    def __init__(self) -> None:
        super().__init__()
        self.made: list[str] = []
        self.discarded: list[str] = []

    def client(
        self, target: str, service: descriptor.ServiceDescriptor, *, client_spans: bool = True
    ) -> RemoteServiceClient:
        self.made.append(target)
        return super().client(target, service, client_spans=client_spans)

    async def discard(self, target: str) -> None:
        self.discarded.append(target)
        await super().discard(target)


class OffsetClock:
    """``time.monotonic()`` plus an offset a test moves forward (timeouts keep working)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset


@dataclass
class World:
    """A registry on a real port, a channel pool, and what a test started."""

    server: MeshServer
    registry: RemoteServiceClient
    pool: RecordingPool
    dispatchers: list[AgentDispatcher] = field(default_factory=list)
    runtimes: list[AgentRuntime] = field(default_factory=list)
    _ports: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def dispatcher(self, **options: Any) -> AgentDispatcher:
        d = AgentDispatcher(self.registry, self.pool, **options)
        self.dispatchers.append(d)
        await d.start(sync_timeout_s=5)
        return d

    async def register(
        self,
        agent_id: str,
        *,
        capacity: int = 4,
        price: int = 0,
        skills: tuple[str, ...] = (SKILL,),
        endpoint: str | None = None,
    ) -> R.Agent:
        """An agent registered through the registry API (nothing listens at its endpoint)."""
        card = A.AgentCard(
            name=agent_id, skills=[A.AgentSkill(id=s, name=s, price=price) for s in skills]
        )
        reply = await self.registry.call(
            "RegisterAgent",
            R.RegisterAgentRequest(
                agent_id=agent_id,
                card=card,
                endpoint=endpoint or f"127.0.0.1:{next(self._ports)}",
                capacity=capacity,
            ),
        )
        agent: R.Agent = reply.agent
        return agent

    async def beat(self, agent: R.Agent, load: int, *, draining: bool = False) -> R.Agent:
        """A heartbeat reporting ``load``."""
        reply = await self.registry.call(
            "Heartbeat",
            R.HeartbeatRequest(
                agent_id=agent.agent_id, lease_id=agent.lease_id, load=load, draining=draining
            ),
        )
        renewed: R.Agent = reply.agent
        return renewed

    async def start_agent(self, agent: Agent, **options: Any) -> AgentRuntime:
        options.setdefault("lease_ttl_s", 5)
        rt = await agent.start(registry=self.server.address, insecure_no_auth=True, **options)
        self.runtimes.append(rt)
        await rt.wait_registered(10)
        return rt


@contextlib.asynccontextmanager
async def running_world() -> AsyncIterator[World]:
    """A registry served on port 0 for one test; what the test started stops on exit."""
    registry = Registry(MemoryRegistryBackend(), default_lease_ttl_s=30.0, deregister_after_s=60.0)
    async with serving(registry) as server:
        channel = grpc.aio.insecure_channel(server.address)
        w = World(server, RemoteServiceClient(channel, REGISTRY_SERVICE), RecordingPool())
        try:
            yield w
        finally:
            for d in w.dispatchers:
                await d.stop()
            for rt in w.runtimes:  # before the registry they deregister from
                await rt.stop()
            await w.pool.close()
            await channel.close()


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with running_world() as w:
        yield w


async def mirrored(d: AgentDispatcher, *agents: R.Agent) -> None:
    """Wait until ``d`` mirrors each registration as the registry answered it."""

    def same() -> bool:
        seen = {a.agent_id: a for a in d.agents()}
        return all(
            (m := seen.get(a.agent_id)) is not None
            and m.load == a.load
            and m.state == a.state
            and m.last_heartbeat_time == a.last_heartbeat_time
            and m.register_time == a.register_time
            for a in agents
        )

    await eventually(same, timeout=5)


def free(price: int = 1 << 30) -> Any:
    return lambda: price


async def take(d: AgentDispatcher, **options: Any) -> Slot:
    options.setdefault("max_price", free())
    options.setdefault("timeout_s", 2.0)
    return await d.acquire(SKILL, **options)


async def none_free(d: AgentDispatcher, **options: Any) -> None:
    """No slot within 0.1 s."""
    with pytest.raises(NoAgentAvailable):
        await take(d, timeout_s=0.1, **options)


def at_capacity() -> MeshError:
    return ResourceExhausted("agent is at capacity (2 tasks in flight)", reason=AGENT_AT_CAPACITY)


# -- the one rule --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("err", "transport"),
    [
        (Unavailable("down"), True),
        (DeadlineExceeded("slow"), True),
        (ResourceExhausted("overloaded"), True),
        (ResourceExhausted("slow down", reason="RATE_LIMITED"), True),
        (NoAgentAvailable("none"), True),
        (AgentAtCapacity("full"), False),
        (ResourceExhausted("full", reason=AGENT_AT_CAPACITY), False),
        (InvalidArgument("bad"), False),
        (NotFound("gone"), False),
        (AlreadyExists("dup"), False),
        (FailedPrecondition("not now"), False),
        (PermissionDenied("no"), False),
        (Unauthenticated("who"), False),
        (Cancelled("stop"), False),
        (Aborted("conflict"), False),
        (Unimplemented("what"), False),
        (Internal("bug"), False),
    ],
    ids=lambda v: f"{type(v).__name__}:{v.reason}" if isinstance(v, MeshError) else str(v),
)
def test_is_transport_failure_for_each_error_class(err: MeshError, transport: bool) -> None:
    assert is_transport_failure(err) is transport


def test_the_agents_at_capacity_answer_is_recognised_after_crossing_the_wire() -> None:
    assert AGENT_AT_CAPACITY == AgentAtCapacity.reason
    wire = from_status_proto(to_status_proto(AgentAtCapacity("full")))
    assert is_at_capacity(wire) and not is_transport_failure(wire)
    assert is_at_capacity(at_capacity())
    assert not is_at_capacity(ResourceExhausted("overloaded"))
    # The reason alone under another code is not the agent's answer.
    assert not is_at_capacity(Unavailable("full", reason=AGENT_AT_CAPACITY))


# -- placement -----------------------------------------------------------------------------


async def test_placement_picks_the_least_loaded_agent(world: World) -> None:
    d = await world.dispatcher()
    a, b, c = [await world.register(n, capacity=8) for n in ("a", "b", "c")]
    a, b, c = await world.beat(a, 3), await world.beat(b, 1), await world.beat(c, 2)
    await mirrored(d, a, b, c)
    assert (await take(d)).agent_id == "b"
    assert {x.agent_id for x in d.agents()} == {"a", "b", "c"}


async def test_an_agent_reporting_load_equal_to_capacity_is_not_picked(world: World) -> None:
    d = await world.dispatcher()
    a = await world.register("a", capacity=4)
    b = await world.register("b", capacity=4, price=5)  # dearer: a wins whenever it has room
    a, b = await world.beat(a, 4), await world.beat(b, 3)
    await mirrored(d, a, b)
    assert (await take(d)).agent_id == "b"  # room for exactly one more
    await none_free(d)
    a = await world.beat(a, 3)  # capacity - 1: room again
    await mirrored(d, a)
    assert (await take(d)).agent_id == "a"
    await none_free(d)


async def test_own_slots_add_to_the_reported_load(world: World) -> None:
    d = await world.dispatcher()
    a = await world.beat(await world.register("a", capacity=3), 1)  # one task of someone else
    await mirrored(d, a)
    s1, s2 = await take(d), await take(d)
    await none_free(d)  # 1 reported + 2 own
    a = await world.beat(a, 3)  # the report now counts our two
    await mirrored(d, a)
    await none_free(d)
    d.release(s1, ok=True, latency_s=0.01)  # counted in the report: one off it
    s3 = await take(d)
    await none_free(d)
    for s in (s2, s3):
        d.release(s, ok=True, latency_s=0.01)


async def test_two_dispatchers_share_an_agent_by_its_reports(world: World) -> None:
    d1, d2 = await world.dispatcher(), await world.dispatcher()
    a = await world.register("a", capacity=2)
    await mirrored(d1, a)
    await mirrored(d2, a)
    await take(d1)
    a = await world.beat(a, 1)  # the agent reports d1's task
    await mirrored(d2, a)
    await take(d2)
    await none_free(d2)  # 1 reported + its own 1
    a = await world.beat(a, 2)
    await mirrored(d1, a)
    await none_free(d1)


async def test_the_same_report_seen_again_on_reconnect_changes_nothing(world: World) -> None:
    a = await world.beat(await world.register("a", capacity=3), 1)
    d = AgentDispatcher(world.registry, world.pool)
    world.dispatchers.append(d)
    await d.start(sync_timeout_s=5)  # the listing is in; the watch replays it next
    held = [await take(d), await take(d)]  # 1 reported + 2 own
    # A registration after the replay: once it is seen, the replay was applied.
    await mirrored(d, await world.register("later", skills=("x.other",)))
    await none_free(d)  # the replayed report of load 1 did not forget our two
    assert [s.agent_id for s in held] == [a.agent_id] * 2


async def test_a_report_older_than_a_release_costs_a_slot_not_a_stall(world: World) -> None:
    d = await world.dispatcher()
    a = await world.register("a", capacity=2)
    await mirrored(d, a)
    s1, s2 = await take(d), await take(d)
    d.release(s1, ok=True, latency_s=0.01)
    a = await world.beat(a, 2)  # sent while both ran, seen after s1 came back
    await mirrored(d, a)
    await none_free(d)
    d.release(s2, ok=True, latency_s=0.01)  # taken before the report: one off it
    await take(d)


async def test_prefer_is_honoured_when_the_agent_can_take_the_slot(world: World) -> None:
    d = await world.dispatcher(breaker=BreakerPolicy(failure_threshold=1, open_s=60))
    best = await world.register("a", capacity=4)
    other = await world.beat(await world.register("b", capacity=4), 2)
    full = await world.beat(await world.register("c", capacity=4), 4)
    dear = await world.register("d", capacity=4, price=10)
    elsewhere = await world.register("e", capacity=4, skills=("x.other",))
    draining = await world.beat(await world.register("f", capacity=4), 0, draining=True)
    broken = await world.register("g", capacity=4)
    await mirrored(d, best, other, full, dear, elsewhere, draining, broken)

    slot = await take(d, prefer="b")
    assert slot.agent_id == "b"  # although a is less loaded
    d.release(slot, ok=True, latency_s=0.01)
    slot = await take(d, prefer="b", exclude={"b"})  # naming it wins over excluding it
    assert slot.agent_id == "b"
    d.release(slot, ok=True, latency_s=0.01)
    slot = await take(d, prefer="g")
    assert slot.agent_id == "g"
    d.release(slot, ok=False, failure=Unavailable("down"), latency_s=0.01)  # breaker opens

    for ineligible in ("c", "d", "e", "f", "g", "no-such-agent"):
        slot = await take(d, prefer=ineligible, max_price=free(9))
        assert slot.agent_id == "a", ineligible
        d.release(slot, ok=True, latency_s=0.01)


async def test_excluded_agents_are_taken_only_when_nothing_else_can(world: World) -> None:
    d = await world.dispatcher()
    a = await world.register("a", capacity=4)
    b = await world.beat(await world.register("b", capacity=4), 1)
    await mirrored(d, a, b)
    slots = [await take(d, exclude={"a"}), await take(d, exclude={"a", "b"})]
    assert [s.agent_id for s in slots] == ["b", "a"]


async def test_an_agent_whose_lease_ran_out_is_not_offered_work(world: World) -> None:
    # The registry's leases here last 30 s: 31 s ahead, every one has lapsed.
    d = await world.dispatcher(wall_clock=lambda: time.time() + 31)
    a = await world.register("a", price=5)
    await mirrored(d, a)
    with pytest.raises(NoAgentAvailable):  # not BudgetExhausted: nobody live at all
        await take(d, timeout_s=0.1, max_price=free(0))


# -- the breaker ---------------------------------------------------------------------------


async def test_the_breaker_opens_at_exactly_the_threshold(world: World) -> None:
    clock = OffsetClock()
    d = await world.dispatcher(breaker=BreakerPolicy(failure_threshold=3, open_s=5), clock=clock)
    a = await world.register("a", capacity=8)
    await mirrored(d, a)
    for err in (Unavailable("down"), DeadlineExceeded("slow")):
        d.release(await take(d), ok=False, failure=err, latency_s=0.01)
    probe = await take(d)  # threshold - 1: still offered work
    d.release(probe, ok=False, latency_s=0.01, counted=False)  # judges nothing
    d.release(await take(d), ok=False, failure=ResourceExhausted("busy"), latency_s=0.01)
    await none_free(d)

    clock.offset += 5  # open period over: one trial call
    trial = await take(d)
    await none_free(d)
    d.release(trial, ok=False, failure=Unavailable("still down"), latency_s=0.01)
    await none_free(d)  # the failed trial opened it again

    clock.offset += 5
    trial = await take(d)
    d.release(trial, ok=True, latency_s=0.01)  # closed
    await take(d)
    await take(d)


async def test_a_failure_that_is_not_transport_resets_the_count(world: World) -> None:
    d = await world.dispatcher(breaker=BreakerPolicy(failure_threshold=3, open_s=60))
    a = await world.register("a", capacity=8)
    await mirrored(d, a)
    for failure in (Unavailable("down"), Unavailable("down"), InvalidArgument("bad input")):
        d.release(await take(d), ok=False, failure=failure, latency_s=0.01)
    for _ in range(2):
        d.release(await take(d), ok=False, failure=Unavailable("down"), latency_s=0.01)
    slot = await take(d)  # two in a row since the reset: closed
    d.release(slot, ok=False, failure=Unavailable("down"), latency_s=0.01)
    await none_free(d)


async def test_at_capacity_answers_never_open_the_breaker_and_mark_the_agent_full(
    world: World,
) -> None:
    d = await world.dispatcher(breaker=BreakerPolicy(failure_threshold=3, open_s=60))
    a = await world.register("a", capacity=2)
    b = await world.register("b", capacity=2)  # identical: a wins on its id alone
    await mirrored(d, a, b)
    for _ in range(5):
        a = await world.beat(a, 0)
        await mirrored(d, a)
        slot = await take(d)
        assert slot.agent_id == "a"
        # A long latency too: an answer that is not an attempt must not be scored.
        d.release(slot, ok=False, failure=at_capacity(), latency_s=5.0)
        slot = await take(d)  # a counts as full until its next report
        assert slot.agent_id == "b"
        d.release(slot, ok=True, latency_s=0.01, counted=False)
    a = await world.beat(a, 0)
    await mirrored(d, a)
    # Breaker closed, no failure and no latency on record: a still wins over b.
    assert (await take(d)).agent_id == "a"


# -- budget, waiting, timeouts -------------------------------------------------------------


async def test_budget_exhausted_versus_no_agent_available(world: World) -> None:
    d = await world.dispatcher()
    dear = await world.register("a", price=5)
    drained = await world.beat(
        await world.register("b", price=1, skills=("x.drained",)), 0, draining=True
    )
    await mirrored(d, dear, drained)

    t0 = time.monotonic()
    with pytest.raises(BudgetExhausted) as err:
        await take(d, max_price=free(4), timeout_s=5)
    assert time.monotonic() - t0 < 1.0  # at once, not after the timeout
    assert isinstance(err.value, ResourceExhausted) and err.value.reason == "BUDGET_EXHAUSTED"
    with pytest.raises(BudgetExhausted):
        await take(d, max_price=free(4), on_unaffordable=lambda: False)
    slot = await take(d, max_price=free(5))  # the price exactly: affordable
    assert slot.price == 5 and slot.payout_account_id == "a" and slot.skills == {SKILL}
    d.release(slot, ok=True, latency_s=0.01)

    # Told to wait for budget: it waits, then no agent was available in time.
    with pytest.raises(NoAgentAvailable) as none:
        await take(d, max_price=free(4), timeout_s=0.2, on_unaffordable=lambda: True)
    assert isinstance(none.value, Unavailable) and none.value.reason == "NO_AGENT_AVAILABLE"
    for skill in ("x.drained", "x.nobody"):  # only a draining agent; nobody at all
        with pytest.raises(NoAgentAvailable):
            await d.acquire(skill, max_price=free(0), timeout_s=0.1)


@pytest.mark.parametrize("timeout_s", [0.3, 1.5])
async def test_the_wait_for_an_agent_lasts_timeout_s(world: World, timeout_s: float) -> None:
    d = await world.dispatcher()
    a = await world.register("a", capacity=1)
    await mirrored(d, a)
    await take(d)
    t0 = time.monotonic()
    with pytest.raises(NoAgentAvailable):
        await take(d, timeout_s=timeout_s)
    assert timeout_s <= time.monotonic() - t0 < timeout_s + 0.3


async def test_a_release_wakes_the_oldest_waiter(world: World) -> None:
    d = await world.dispatcher()
    a = await world.register("a", capacity=1)
    await mirrored(d, a)
    held = await take(d)
    first = asyncio.create_task(take(d, timeout_s=10))
    await asyncio.sleep(0)  # queued first
    second = asyncio.create_task(take(d, timeout_s=10))
    await asyncio.sleep(0)
    d.release(held, ok=True, latency_s=0.01)
    # Woken, not found by the 1 s re-check.
    slot = await asyncio.wait_for(first, 0.5)
    assert not second.done()
    d.release(slot, ok=True, latency_s=0.01)
    await asyncio.wait_for(second, 0.5)
    d.release(slot, ok=True, latency_s=0.01)  # a second release changes nothing
    await none_free(d)


async def test_wake_all_lets_waiters_see_a_larger_budget(world: World) -> None:
    d = await world.dispatcher()
    a = await world.register("a", price=5)
    await mirrored(d, a)
    budget = [0]
    waiting = asyncio.create_task(
        d.acquire(SKILL, max_price=lambda: budget[0], timeout_s=10, on_unaffordable=lambda: True)
    )
    await asyncio.sleep(0)
    budget[0] = 5
    d.wake_all(SKILL)
    assert (await asyncio.wait_for(waiting, 0.5)).agent_id == "a"


async def test_skill_known_asks_the_registry_when_the_mirror_has_not_seen_it(
    world: World,
) -> None:
    await world.register("a")
    d = AgentDispatcher(world.registry, world.pool)  # not started: an empty mirror
    assert await d.skill_known(SKILL)
    assert not await d.skill_known("x.nobody")
    started = await world.dispatcher()
    await eventually(lambda: started.agents(), timeout=5)
    assert await started.skill_known(SKILL)


# -- agent calls ---------------------------------------------------------------------------


@dataclass
class Worker:
    agent: Agent
    started: asyncio.Event


def worker(name: str, *, capacity: int = 4) -> Worker:
    agent = Agent(name, capacity=capacity)
    started = asyncio.Event()

    @agent.skill(SKILL)
    async def echo(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        await ctx.progress("halfway", 0.5)
        return {"echo": input.get("text", "")}

    @agent.skill("x.hang")
    async def hang(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        started.set()
        await asyncio.Event().wait()
        return {}

    return Worker(agent, started)


def execute_request(task_id: str, skill: str = SKILL, text: str = "hi") -> A.ExecuteTaskRequest:
    request = A.ExecuteTaskRequest(task_id=task_id, skill=skill)
    request.input.update({"text": text})
    return request


async def test_execute_and_stream_run_on_the_agent(world: World) -> None:
    d = await world.dispatcher()
    rt = await world.start_agent(worker("w").agent)
    await eventually(lambda: d.agents(), timeout=5)
    slot = await take(d)
    assert slot.agent_id == rt.agent_id and slot.endpoint == rt.endpoint

    task = await d.execute(slot, execute_request("t1"), timeout_s=5)
    assert task.status.state == A.TASK_STATE_COMPLETED
    assert dict(task.output) == {"echo": "hi"}

    stream = A.StreamTaskRequest(task_id="t2", skill=SKILL)
    stream.input.update({"text": "there"})
    updates = [u async for u in d.stream(slot, stream, timeout_s=5)]
    assert updates[-1].final and [u.final for u in updates].count(True) == 1
    assert updates[-1].task.status.state == A.TASK_STATE_COMPLETED
    assert dict(updates[-1].task.output) == {"echo": "there"}
    assert any(u.WhichOneof("update") == "status_update" for u in updates[:-1])
    d.release(slot, ok=True, latency_s=0.01)
    assert world.pool.made == [rt.endpoint]  # one cached client for both calls


async def test_cancel_on_agent_cancels_the_task_and_never_raises(world: World) -> None:
    d = await world.dispatcher()
    w = worker("w")
    await world.start_agent(w.agent)
    await eventually(lambda: d.agents(), timeout=5)
    slot = await take(d)
    running = asyncio.create_task(d.execute(slot, execute_request("t1", "x.hang"), timeout_s=10))
    await asyncio.wait_for(w.started.wait(), 5)
    await d.cancel_on_agent(slot, "t1")
    task = await asyncio.wait_for(running, 5)
    assert task.status.state == A.TASK_STATE_CANCELED
    await d.cancel_on_agent(slot, "no-such-task")  # the agent's NOT_FOUND is swallowed
    with pytest.raises(NotFound):
        await d.cancel_task(slot, A.CancelTaskRequest(task_id="no-such-task"), timeout_s=2)
    d.release(slot, ok=False, latency_s=0.01, counted=False)


async def test_an_agent_at_capacity_answers_so_and_is_marked_full(world: World) -> None:
    # Two dispatchers (two engine replicas) both see an idle agent of capacity 1.
    d1, d2 = await world.dispatcher(), await world.dispatcher()
    w = worker("w", capacity=1)
    await world.start_agent(w.agent)
    await eventually(lambda: d1.agents() and d2.agents(), timeout=5)
    mine, theirs = await take(d1), await take(d2)
    running = asyncio.create_task(d1.execute(mine, execute_request("t1", "x.hang"), timeout_s=10))
    await asyncio.wait_for(w.started.wait(), 5)
    with pytest.raises(ResourceExhausted) as err:
        await d2.execute(theirs, execute_request("t2"), timeout_s=5)
    assert is_at_capacity(err.value) and not is_transport_failure(err.value)
    d2.release(theirs, ok=False, failure=err.value, latency_s=0.01)
    await none_free(d2)  # full until the agent reports again
    await d1.cancel_on_agent(mine, "t1")
    await running
    d1.release(mine, ok=False, latency_s=0.01, counted=False)
    # The next heartbeat reports load 0, and the breaker never opened.
    slot = await take(d2, timeout_s=5)
    task = await d2.execute(slot, execute_request("t3"), timeout_s=5)
    assert task.status.state == A.TASK_STATE_COMPLETED


class NoFinalAgent:
    """An agent that breaks the contract: its stream ends without the final update."""

    async def GetAgentCard(self, request: A.GetAgentCardRequest) -> Any:
        return A.GetAgentCardResponse()

    async def ExecuteTask(self, request: A.ExecuteTaskRequest) -> Any:
        return A.ExecuteTaskResponse()

    async def StreamTask(self, request: A.StreamTaskRequest) -> AsyncIterator[Any]:
        yield A.StreamTaskResponse(status_update=A.TaskStatus(message="working"))

    async def CancelTask(self, request: A.CancelTaskRequest) -> Any:
        return A.CancelTaskResponse()


async def test_a_stream_without_a_final_update_is_unavailable(world: World) -> None:
    server = MeshServer(pipeline=insecure_pipeline(), port=0, grace_s=0)
    server.add(NoFinalAgent(), AGENT_SERVICE)
    await server.start()
    try:
        d = await world.dispatcher()
        await mirrored(d, await world.register("a", endpoint=server.address))
        slot = await take(d)
        seen = []
        with pytest.raises(Unavailable) as err:
            async for update in d.stream(slot, A.StreamTaskRequest(task_id="t", skill=SKILL)):
                seen.append(update)
        assert len(seen) == 1 and is_transport_failure(err.value)
        d.release(slot, ok=False, failure=err.value, latency_s=0.01)
    finally:
        await server.stop(0)


async def test_the_client_of_an_endpoint_goes_with_its_last_agent(world: World) -> None:
    d = await world.dispatcher()
    rt = await world.start_agent(worker("w").agent)
    await eventually(lambda: d.agents(), timeout=5)
    slot = await take(d)
    await d.execute(slot, execute_request("t1"), timeout_s=5)
    d.release(slot, ok=True, latency_s=0.01)
    await rt.stop()  # deregisters
    await eventually(lambda: world.pool.discarded == [rt.endpoint], timeout=5)
    assert not d.agents()


async def test_an_endpoint_left_with_attempts_running_is_dropped_when_they_end(
    world: World,
) -> None:
    d = await world.dispatcher()
    a = await world.register("a", endpoint="127.0.0.1:9")  # nothing listens there
    await mirrored(d, a)
    slot = await take(d)
    with pytest.raises(Unavailable) as err:
        await d.execute(slot, execute_request("t1"), timeout_s=2)
    assert is_transport_failure(err.value)
    await world.registry.call("DeregisterAgent", R.DeregisterAgentRequest(agent_id="a"))
    await eventually(lambda: not d.agents(), timeout=5)
    assert world.pool.discarded == []  # the attempt still holds its slot
    d.release(slot, ok=False, failure=err.value, latency_s=0.01)  # agent gone: no harm
    await eventually(lambda: world.pool.discarded == ["127.0.0.1:9"], timeout=5)
    made = len(world.pool.made)
    await d.cancel_on_agent(slot, "t1")  # nobody there: no call, no new channel
    assert len(world.pool.made) == made


async def test_stop_ends_waits_and_lets_a_cancel_under_way_reach_the_agent(
    world: World,
) -> None:
    d = await world.dispatcher()
    w = worker("w", capacity=1)
    await world.start_agent(w.agent)
    await eventually(lambda: d.agents(), timeout=5)
    slot = await take(d)
    running = asyncio.create_task(d.execute(slot, execute_request("t1", "x.hang"), timeout_s=10))
    await asyncio.wait_for(w.started.wait(), 5)
    waiting = asyncio.create_task(take(d, timeout_s=10))
    cancel = asyncio.create_task(d.cancel_on_agent(slot, "t1"))
    await asyncio.sleep(0)  # the CancelTask call is under way
    cancel.cancel()  # its caller gives up; the call goes on
    await d.stop()
    with pytest.raises(NoAgentAvailable):
        await asyncio.wait_for(waiting, 0.5)
    task = await asyncio.wait_for(running, 5)
    assert task.status.state == A.TASK_STATE_CANCELED
    with pytest.raises(NoAgentAvailable):
        await take(d)

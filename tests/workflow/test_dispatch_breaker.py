"""The dispatcher's per-agent circuit breaker against a real agent that fails on command.

The agent is a small AgentService servicer on a real MeshServer (port 0),
registered through the real registry; every attempt is a real ExecuteTask over
a socket, and the servicer counts what reached it, so "not offered work" means
no call arrived. The dispatcher's clock is monotonic time plus an offset the
test moves, so open periods pass without sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from meshwright.agent.v1 import agent_pb2
from meshwright.mesh import MeshServer
from meshwright.mesh.breaker import BreakerState
from meshwright.mesh.errors import (
    DeadlineExceeded,
    InvalidArgument,
    MeshError,
    ResourceExhausted,
    Unavailable,
)
from meshwright.mesh.security import insecure_pipeline
from meshwright.workflow.dispatch import (
    AGENT_AT_CAPACITY,
    AGENT_SERVICE,
    AgentDispatcher,
    BreakerPolicy,
    Slot,
)
from tests.workflow.test_dispatch import (
    OffsetClock,
    World,
    mirrored,
    none_free,
    running_world,
    take,
)

A = agent_pb2
OPEN_S = 30.0


class FlakyAgent:
    """An agent whose ExecuteTask fails with ``fail_with`` until it is set back to None."""

    def __init__(self) -> None:
        self.fail_with: MeshError | None = None
        self.hang = False
        self.calls = 0

    async def GetAgentCard(self, request: A.GetAgentCardRequest) -> Any:
        return A.GetAgentCardResponse()

    async def ExecuteTask(self, request: A.ExecuteTaskRequest) -> Any:
        self.calls += 1
        if self.hang:
            await asyncio.Event().wait()
        if self.fail_with is not None:
            raise self.fail_with
        status = A.TaskStatus(state=A.TASK_STATE_COMPLETED)
        return A.ExecuteTaskResponse(task=A.Task(task_id=request.task_id, status=status))

    async def StreamTask(self, request: A.StreamTaskRequest) -> AsyncIterator[Any]:
        raise Unavailable("not streaming today")
        yield  # pragma: no cover (makes this an async generator)

    async def CancelTask(self, request: A.CancelTaskRequest) -> Any:
        return A.CancelTaskResponse()


class Served:
    """A FlakyAgent on a real port."""

    def __init__(self) -> None:
        self.agent = FlakyAgent()
        self.server = MeshServer(pipeline=insecure_pipeline(), port=0, grace_s=0)
        self.server.add(self.agent, AGENT_SERVICE)


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with running_world() as w:
        yield w


@pytest.fixture
async def flaky() -> AsyncIterator[Served]:
    served = Served()
    await served.server.start()
    try:
        yield served
    finally:
        await served.server.stop(0)


async def setup(
    world: World, served: Served, *, agent_id: str = "flaky", threshold: int = 3
) -> tuple[AgentDispatcher, OffsetClock]:
    clock = OffsetClock()
    d = await world.dispatcher(
        breaker=BreakerPolicy(failure_threshold=threshold, open_s=OPEN_S), clock=clock
    )
    await mirrored(d, await world.register(agent_id, capacity=8, endpoint=served.server.address))
    return d, clock


async def attempt(d: AgentDispatcher, slot: Slot, *, timeout_s: float = 5.0) -> MeshError | None:
    """Run one task on ``slot`` and release it as the engine does; the error, if any."""
    started = time.monotonic()
    try:
        await d.execute(
            slot, A.ExecuteTaskRequest(task_id="t", skill="x.echo"), timeout_s=timeout_s
        )
    except MeshError as err:
        d.release(slot, ok=False, failure=err, latency_s=time.monotonic() - started)
        return err
    d.release(slot, ok=True, latency_s=time.monotonic() - started)
    return None


async def test_consecutive_unavailable_stops_work_for_open_s_then_a_probe_closes_it(
    world: World, flaky: Served
) -> None:
    d, clock = await setup(world, flaky, threshold=3)
    flaky.agent.fail_with = Unavailable("agent is restarting")
    for n in (1, 2):  # threshold - 1: still offered work
        assert isinstance(await attempt(d, await take(d)), Unavailable)
        assert flaky.agent.calls == n  # AgentService calls are not retried by the channel
    breaker = d.agent_breaker("flaky")
    assert breaker is not None and breaker.state is BreakerState.CLOSED
    assert isinstance(await attempt(d, await take(d)), Unavailable)  # the threshold
    assert breaker.state is BreakerState.OPEN and breaker.times_opened == 1

    await none_free(d)
    clock.offset += OPEN_S - 1  # still open
    await none_free(d)
    assert flaky.agent.calls == 3  # nothing reached the agent while open

    clock.offset += 1  # open_s over: one probe
    probe = await take(d)
    assert breaker.state is BreakerState.HALF_OPEN and breaker.probes_in_flight == 1
    await none_free(d)  # one past the probe limit
    flaky.agent.fail_with = None  # recovered
    assert await attempt(d, probe) is None
    assert breaker.state is BreakerState.CLOSED and breaker.consecutive_failures == 0
    slots = [await take(d), await take(d)]  # closed: work flows again
    for slot in slots:
        assert await attempt(d, slot) is None
    assert flaky.agent.calls == 6


async def test_a_failed_probe_reopens_it_for_another_open_s(world: World, flaky: Served) -> None:
    d, clock = await setup(world, flaky, threshold=2)
    flaky.agent.fail_with = Unavailable("down")
    for _ in range(2):
        await attempt(d, await take(d))
    clock.offset += OPEN_S
    assert isinstance(await attempt(d, await take(d)), Unavailable)  # the probe fails
    breaker = d.agent_breaker("flaky")
    assert breaker is not None and breaker.state is BreakerState.OPEN
    assert breaker.times_opened == 2
    clock.offset += OPEN_S - 1
    await none_free(d)
    assert flaky.agent.calls == 3
    clock.offset += 1
    flaky.agent.fail_with = None
    assert await attempt(d, await take(d)) is None
    assert breaker.state is BreakerState.CLOSED


async def test_a_probe_the_caller_cancels_lets_another_probe_through(
    world: World, flaky: Served
) -> None:
    d, clock = await setup(world, flaky, threshold=1)
    flaky.agent.fail_with = Unavailable("down")
    await attempt(d, await take(d))
    clock.offset += OPEN_S
    probe = await take(d)
    await none_free(d)
    d.release(probe, ok=False, latency_s=0.01, counted=False)  # judged nothing
    breaker = d.agent_breaker("flaky")
    assert breaker is not None and breaker.state is BreakerState.HALF_OPEN
    flaky.agent.fail_with = None
    assert await attempt(d, await take(d)) is None
    assert breaker.state is BreakerState.CLOSED


async def test_a_deadline_counts_and_an_error_about_the_task_resets_the_count(
    world: World, flaky: Served
) -> None:
    d, _ = await setup(world, flaky, threshold=2)
    flaky.agent.hang = True
    assert isinstance(await attempt(d, await take(d), timeout_s=0.2), DeadlineExceeded)
    flaky.agent.hang = False
    flaky.agent.fail_with = InvalidArgument("no such skill input")  # the agent answered
    assert isinstance(await attempt(d, await take(d)), InvalidArgument)
    breaker = d.agent_breaker("flaky")
    assert breaker is not None and breaker.consecutive_failures == 0
    flaky.agent.fail_with = Unavailable("down")
    await attempt(d, await take(d))
    assert breaker.state is BreakerState.CLOSED  # one in a row since the reset
    flaky.agent.hang = True
    assert isinstance(await attempt(d, await take(d), timeout_s=0.2), DeadlineExceeded)
    assert breaker.state is BreakerState.OPEN
    flaky.agent.hang = False


async def test_at_capacity_answers_never_count_toward_the_breaker(
    world: World, flaky: Served
) -> None:
    d, _ = await setup(world, flaky, threshold=2)
    agent = next(a for a in d.agents() if a.agent_id == "flaky")
    flaky.agent.fail_with = ResourceExhausted("agent is at capacity", reason=AGENT_AT_CAPACITY)
    for n in range(1, 6):  # well past the threshold
        err = await attempt(d, await take(d))
        assert isinstance(err, ResourceExhausted) and err.reason == AGENT_AT_CAPACITY
        assert flaky.agent.calls == n
        await none_free(d)  # full until its next load report, not broken
        agent = await world.beat(agent, 0)
        await mirrored(d, agent)
    breaker = d.agent_breaker("flaky")
    assert breaker is not None and breaker.state is BreakerState.CLOSED
    assert breaker.consecutive_failures == 0 and breaker.times_opened == 0
    flaky.agent.fail_with = None
    assert await attempt(d, await take(d)) is None


async def test_while_open_the_work_goes_to_the_healthy_agent(world: World, flaky: Served) -> None:
    healthy = Served()
    await healthy.server.start()
    try:
        d, _ = await setup(world, flaky, agent_id="a-flaky", threshold=2)
        # Dearer, so the flaky one wins every placement while its breaker lets it.
        other = await world.register(
            "b-healthy", capacity=8, price=5, endpoint=healthy.server.address
        )
        await mirrored(d, other)
        flaky.agent.fail_with = Unavailable("down")
        for _ in range(2):
            slot = await take(d)
            assert slot.agent_id == "a-flaky"
            await attempt(d, slot)
        for _ in range(5):
            slot = await take(d)
            assert slot.agent_id == "b-healthy"
            assert await attempt(d, slot) is None
        assert (flaky.agent.calls, healthy.agent.calls) == (2, 5)
        assert d.agent_breaker("no-such-agent") is None
    finally:
        await healthy.server.stop(0)

"""The mesh's skill router on the shared dispatcher: what it adds to placement.

Ownership, billing and duplicate-id rules are covered through a whole node in
test_auth.py and test_engine_robustness.py; here the router runs on its own
dispatcher (a real registry on port 0, real agents), called in-process through
the same pipeline as over gRPC.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from meshwright.agent.v1 import agent_pb2
from meshwright.mesh import LocalServiceClient
from meshwright.mesh.errors import Unavailable
from meshwright.mesh.security import insecure_pipeline
from meshwright.workflow.dispatch import AGENT_SERVICE, AgentDispatcher, BreakerPolicy
from meshwright.workflow.router import SkillRouter
from tests.conftest import eventually
from tests.workflow.test_dispatch import (
    SKILL,
    World,
    execute_request,
    mirrored,
    running_world,
    take,
    worker,
)

A = agent_pb2


@pytest.fixture
async def world() -> AsyncIterator[World]:
    async with running_world() as w:
        yield w


def routed(d: AgentDispatcher, *, agent_wait_s: float = 5.0) -> LocalServiceClient:
    """The router on ``d``, called as the mesh's AgentService is."""
    return LocalServiceClient(
        SkillRouter(d, agent_wait_s=agent_wait_s), AGENT_SERVICE, insecure_pipeline(), mesh=True
    )


async def busy_elsewhere(w: World) -> tuple[AgentDispatcher, Any]:
    """Agents "a" (capacity 1, kept busy by another dispatcher) and "b" (idle).

    Their heartbeats come every 10 s, so the router's dispatcher still sees
    "a" idle and picks it first (same score, smaller id).
    """
    other = await w.dispatcher()
    busy = worker("a", capacity=1)
    await w.start_agent(busy.agent, agent_id="a", lease_ttl_s=30)
    await w.start_agent(worker("b", capacity=1).agent, agent_id="b", lease_ttl_s=30)
    await eventually(lambda: len(other.agents()) == 2, timeout=5)
    slot = await take(other, prefer="a")
    running = asyncio.create_task(
        other.execute(slot, execute_request("theirs", "x.hang"), timeout_s=10)
    )
    await asyncio.wait_for(busy.started.wait(), 5)
    return other, running


async def test_a_task_an_agent_is_too_full_for_is_placed_again(world: World) -> None:
    _, running = await busy_elsewhere(world)
    d = await world.dispatcher()
    await eventually(lambda: len(d.agents()) == 2, timeout=5)
    router = routed(d)
    reply = await router.call("ExecuteTask", execute_request("t1"))
    assert reply.task.status.state == A.TASK_STATE_COMPLETED
    assert dict(reply.task.output) == {"echo": "hi"}
    # "a" answered at capacity, so the task went to "b"; "a" is now taken as full.
    stream = A.StreamTaskRequest(task_id="t2", skill=SKILL)
    updates = [u async for u in router.stream("StreamTask", stream)]
    assert updates[-1].final and updates[-1].task.status.state == A.TASK_STATE_COMPLETED
    running.cancel()


async def test_an_agent_at_capacity_leaves_the_call_waiting_for_room(world: World) -> None:
    _, running = await busy_elsewhere(world)
    d = await world.dispatcher()
    await eventually(lambda: len(d.agents()) == 2, timeout=5)
    router = routed(d, agent_wait_s=0.3)
    hold = await take(d, prefer="b")  # the only agent with room is taken here
    with pytest.raises(Unavailable) as err:
        await router.call("ExecuteTask", execute_request("t1"))
    assert err.value.reason == "NO_AGENT_AVAILABLE"  # not the agent's RESOURCE_EXHAUSTED
    d.release(hold, ok=True, latency_s=0.01, counted=False)
    running.cancel()


async def test_the_router_judges_agents_by_the_one_rule(world: World) -> None:
    d = await world.dispatcher(breaker=BreakerPolicy(failure_threshold=1, open_s=60))
    await mirrored(d, await world.register("a", endpoint="127.0.0.1:9"))  # nobody listens
    router = routed(d, agent_wait_s=0.2)
    with pytest.raises(Unavailable) as err:
        await router.call("ExecuteTask", execute_request("t1"))
    assert err.value.reason == "UNAVAILABLE"
    # A transport failure: the breaker (threshold 1) is open, the agent not offered work.
    with pytest.raises(Unavailable) as err:
        await router.call("ExecuteTask", execute_request("t2"))
    assert err.value.reason == "NO_AGENT_AVAILABLE"


async def test_cancel_through_the_router_reaches_the_agent(world: World) -> None:
    d = await world.dispatcher()
    w = worker("w")
    await world.start_agent(w.agent)
    await eventually(lambda: d.agents(), timeout=5)
    router = routed(d)
    call = asyncio.create_task(router.call("ExecuteTask", execute_request("t1", "x.hang")))
    await asyncio.wait_for(w.started.wait(), 5)
    reply = await router.call("CancelTask", A.CancelTaskRequest(task_id="t1"))
    assert reply.task.task_id == "t1"
    assert (await asyncio.wait_for(call, 5)).task.status.state == A.TASK_STATE_CANCELED
    # The task id is free again, and the slot came back.
    again = await router.call("ExecuteTask", execute_request("t1"))
    assert again.task.status.state == A.TASK_STATE_COMPLETED
    card = await router.call("GetAgentCard", A.GetAgentCardRequest())
    assert sorted(s.id for s in card.card.skills) == sorted([SKILL, "x.hang"])

"""AgentServicer over a real MeshServer and RemoteServiceClient."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from meshwright.agent import (
    SERVICE,
    Agent,
    AgentAtCapacity,
    AgentServicer,
    SkillNotFound,
    TaskContext,
    TaskNotFound,
    TaskRejected,
)
from meshwright.agent.v1 import agent_pb2
from meshwright.mesh import InvalidArgument, MeshServer, RemoteServiceClient
from meshwright.mesh.errors import DeadlineExceeded
from meshwright.mesh.security import insecure_pipeline
from tests.conftest import eventually

pytestmark = pytest.mark.timeout(20)


def make_agent() -> tuple[Agent, threading.Event]:
    agent = Agent("testbed", description="skills for tests", version="2.1.0", capacity=2)
    release = threading.Event()

    @agent.skill("text.wordcount", description="Counts words", price=2, tags=["text"])
    async def wordcount(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return {
            "words": len(input["text"].split()),
            "upstream": sorted(ctx.upstream),
            "context_id": ctx.context_id,
            "meta": ctx.metadata,
        }

    @agent.skill("math.double", price=1)
    def double(input: dict[str, Any], ctx: TaskContext) -> int:
        """Sync: runs in a worker thread; a bare value becomes {"result": ...}."""
        assert threading.current_thread() is not threading.main_thread()
        ctx.progress_nowait("doubling", 0.5)
        return int(input["n"]) * 2

    @agent.skill("demo.boom")
    async def boom(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        raise ValueError("the input made me explode")

    @agent.skill("demo.picky")
    async def picky(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        raise TaskRejected("I only take even numbers")

    @agent.skill("demo.steps")
    async def steps(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        for i in range(1, 4):
            await ctx.progress(f"step {i}", i / 3)
            await ctx.artifact(f"part-{i}", {"i": i})
        return {"steps": 3}

    @agent.skill("demo.wait")
    async def wait(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        await ctx.progress("waiting")
        await asyncio.to_thread(release.wait, 10)
        return {"waited": True}

    @agent.skill("demo.forever")
    async def forever(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        await ctx.progress("sleeping")
        await asyncio.sleep(60)
        return {}

    @agent.skill("demo.bad_output")
    async def bad_output(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return {"x": object()}

    return agent, release


@pytest.fixture
async def served() -> AsyncIterator[tuple[AgentServicer, RemoteServiceClient, threading.Event]]:
    agent, release = make_agent()
    servicer = AgentServicer(agent)
    server = MeshServer(pipeline=insecure_pipeline(), port=0)
    server.add(servicer, SERVICE)
    await server.start()
    channel = grpc.aio.insecure_channel(server.address)
    try:
        yield servicer, RemoteServiceClient(channel, SERVICE), release
    finally:
        release.set()
        await channel.close()
        await server.stop(0)


def struct(**values: Any) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


def execute(task_id: str, skill: str, **kw: Any) -> agent_pb2.ExecuteTaskRequest:
    return agent_pb2.ExecuteTaskRequest(task_id=task_id, skill=skill, **kw)


async def test_card(served: Any) -> None:
    _, client, _ = served
    card = (await client.call("GetAgentCard", agent_pb2.GetAgentCardRequest())).card
    assert (card.name, card.version, card.description) == ("testbed", "2.1.0", "skills for tests")
    skills = {s.id: s for s in card.skills}
    assert skills["text.wordcount"].price == 2
    assert list(skills["text.wordcount"].tags) == ["text"]
    assert skills["text.wordcount"].name == "text.wordcount"
    assert "worker thread" in skills["math.double"].description  # from the docstring
    assert card.capabilities.streaming and card.capabilities.cancellation


async def test_execute_completed(served: Any) -> None:
    servicer, client, _ = served
    request = execute("t1", "text.wordcount", input=struct(text="to be or not"), context_id="wf-1")
    request.upstream_outputs["a"].update({"x": 1})
    request.metadata["k"] = "v"
    task = (await client.call("ExecuteTask", request)).task
    assert task.status.state == agent_pb2.TASK_STATE_COMPLETED
    assert dict(task.output) == {
        "words": 4.0,
        "upstream": ["a"],
        "context_id": "wf-1",
        "meta": {"k": "v"},
    }
    assert (task.task_id, task.skill, task.context_id) == ("t1", "text.wordcount", "wf-1")
    assert task.status.progress == 1.0
    assert task.end_time.ToNanoseconds() >= task.create_time.ToNanoseconds() > 0
    assert servicer.load == 0


async def test_sync_skill_and_plain_return(served: Any) -> None:
    _, client, _ = served
    task = (await client.call("ExecuteTask", execute("t2", "math.double", input=struct(n=21)))).task
    assert task.status.state == agent_pb2.TASK_STATE_COMPLETED
    assert dict(task.output) == {"result": 42.0}


@pytest.mark.parametrize(
    ("skill", "state", "message"),
    [
        ("demo.boom", agent_pb2.TASK_STATE_FAILED, "ValueError: the input made me explode"),
        ("demo.picky", agent_pb2.TASK_STATE_REJECTED, "I only take even numbers"),
        ("demo.bad_output", agent_pb2.TASK_STATE_FAILED, "output is not JSON-like data"),
    ],
)
async def test_execute_failed_or_rejected_is_a_task_not_an_error(
    served: Any, skill: str, state: int, message: str
) -> None:
    servicer, client, _ = served
    task = (await client.call("ExecuteTask", execute("t3", skill))).task
    assert task.status.state == state
    assert task.status.message.startswith(message)
    assert not task.HasField("output")
    assert servicer.load == 0


async def test_validation_and_unknown_skill(served: Any) -> None:
    _, client, _ = served
    with pytest.raises(InvalidArgument) as bad:
        await client.call("ExecuteTask", agent_pb2.ExecuteTaskRequest())
    assert [v.field for v in bad.value.violations] == ["task_id", "skill"]
    with pytest.raises(InvalidArgument) as bad:
        await client.call("ExecuteTask", agent_pb2.ExecuteTaskRequest(skill="math.double"))
    assert [v.field for v in bad.value.violations] == ["task_id"]
    with pytest.raises(SkillNotFound) as missing:
        await client.call("ExecuteTask", execute("t", "no.such"))
    assert missing.value.reason == "SKILL_NOT_FOUND"
    with pytest.raises(SkillNotFound):
        async for _ in client.stream(
            "StreamTask", agent_pb2.StreamTaskRequest(task_id="t", skill="x")
        ):
            pass
    with pytest.raises(TaskNotFound):
        await client.call("CancelTask", agent_pb2.CancelTaskRequest(task_id="nope"))
    with pytest.raises(InvalidArgument):
        await client.call("CancelTask", agent_pb2.CancelTaskRequest())


async def test_stream_updates_in_order_then_final(served: Any) -> None:
    _, client, _ = served
    seen: list[tuple[str, Any]] = []
    final = None
    async for item in client.stream(
        "StreamTask", agent_pb2.StreamTaskRequest(task_id="s1", skill="demo.steps")
    ):
        if item.final:
            final = item
            break
        kind = item.WhichOneof("update")
        if kind == "status_update":
            seen.append(("status", (item.status_update.state, item.status_update.message)))
        else:
            seen.append(("artifact", (item.artifact_update.name, dict(item.artifact_update.data))))
    W = agent_pb2.TASK_STATE_WORKING
    assert seen == [
        ("status", (W, "")),
        ("status", (W, "step 1")),
        ("artifact", ("part-1", {"i": 1.0})),
        ("status", (W, "step 2")),
        ("artifact", ("part-2", {"i": 2.0})),
        ("status", (W, "step 3")),
        ("artifact", ("part-3", {"i": 3.0})),
    ]
    assert final is not None
    assert final.task.status.state == agent_pb2.TASK_STATE_COMPLETED
    assert final.status_update.state == agent_pb2.TASK_STATE_COMPLETED
    assert dict(final.task.output) == {"steps": 3.0}
    assert [a.artifact_id for a in final.task.artifacts] == [
        "artifact-1",
        "artifact-2",
        "artifact-3",
    ]


async def test_sync_progress_is_streamed(served: Any) -> None:
    _, client, _ = served
    items = [
        item
        async for item in client.stream(
            "StreamTask",
            agent_pb2.StreamTaskRequest(task_id="s2", skill="math.double", input=struct(n=2)),
        )
    ]
    assert [i.status_update.message for i in items[:-1]] == ["", "doubling"]
    assert items[1].status_update.progress == 0.5
    assert items[-1].final and dict(items[-1].task.output) == {"result": 4.0}


async def test_cancel_execute(served: Any) -> None:
    servicer, client, _ = served
    running = asyncio.create_task(client.call("ExecuteTask", execute("c1", "demo.forever")))
    await eventually(lambda: servicer.load == 1)
    cancelled = (await client.call("CancelTask", agent_pb2.CancelTaskRequest(task_id="c1"))).task
    assert cancelled.status.state == agent_pb2.TASK_STATE_CANCELED
    task = (await running).task
    assert task.status.state == agent_pb2.TASK_STATE_CANCELED
    assert task.status.message == "canceled by request"
    assert servicer.load == 0


async def test_cancel_stream_ends_with_canceled_final(served: Any) -> None:
    servicer, client, _ = served
    items = []
    async for item in client.stream(
        "StreamTask", agent_pb2.StreamTaskRequest(task_id="c2", skill="demo.forever")
    ):
        items.append(item)
        if item.status_update.message == "sleeping":
            await client.call("CancelTask", agent_pb2.CancelTaskRequest(task_id="c2"))
    assert items[-1].final
    assert items[-1].task.status.state == agent_pb2.TASK_STATE_CANCELED
    assert servicer.load == 0


async def test_caller_going_away_cancels_the_task(served: Any) -> None:
    servicer, client, _ = served
    with pytest.raises(DeadlineExceeded):
        await client.call("ExecuteTask", execute("gone", "demo.forever"), timeout=0.3)
    await eventually(lambda: servicer.load == 0)


async def test_capacity_duplicates_and_load(served: Any) -> None:
    servicer, client, release = served
    first = asyncio.create_task(client.call("ExecuteTask", execute("w1", "demo.wait")))
    await eventually(lambda: servicer.load == 1)
    # The same request while it runs joins it (no new slot); test_result_memory.py
    # pins joins and re-dispatches in detail.
    joined = asyncio.create_task(client.call("ExecuteTask", execute("w1", "demo.wait")))
    await eventually(lambda: servicer.runner._running["w1"].waiters == 2)
    second = asyncio.create_task(client.call("ExecuteTask", execute("w2", "demo.wait")))
    await eventually(lambda: servicer.load == 2)
    with pytest.raises(AgentAtCapacity) as full:
        await client.call("ExecuteTask", execute("w3", "text.wordcount"))
    assert full.value.reason == "AGENT_AT_CAPACITY"
    assert full.value.metadata == {"capacity": "2"}
    release.set()
    for call in (first, joined, second):
        assert (await call).task.status.state == agent_pb2.TASK_STATE_COMPLETED
    assert (await joined).task == (await first).task
    assert servicer.load == 0
    # Once finished, the id is remembered: the same request gets the recorded task.
    again = await client.call("ExecuteTask", execute("w1", "demo.wait"))
    assert again.task == (await first).task


def test_skill_definitions_are_checked() -> None:
    agent = Agent("x")
    with pytest.raises(ValueError, match="dotted lower case"):
        agent.skill("Bad Id")(lambda i, c: {})
    with pytest.raises(ValueError, match="negative"):
        agent.skill("a.b", price=-1)(lambda i, c: {})
    agent.skill("a.b")(lambda i, c: {})
    with pytest.raises(ValueError, match="already has"):
        agent.skill("a.b")(lambda i, c: {})

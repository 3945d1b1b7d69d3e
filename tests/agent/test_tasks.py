"""``TaskRunner`` directly: slots held by abandoned threads, closed streams, slow readers."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest

from meshwright.agent import AgentAtCapacity, Skill, TaskContext, TaskRunner
from meshwright.agent.v1 import agent_pb2
from tests.conftest import eventually

pytestmark = pytest.mark.timeout(20)

CANCELED = agent_pb2.TASK_STATE_CANCELED
COMPLETED = agent_pb2.TASK_STATE_COMPLETED


@pytest.fixture
async def release() -> AsyncIterator[threading.Event]:
    """Async, so a failed test unblocks its worker thread before the loop shuts down."""
    event = threading.Event()
    yield event
    event.set()


def blocking_runner(release: threading.Event, **kw: Any) -> TaskRunner:
    def block(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        """Sync: holds its worker thread until released (as a long computation would)."""
        release.wait(5)
        return {"done": True}

    async def quick(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return {"ok": True}

    skills = {s.id: s for s in (Skill(id="sync.block", fn=block), Skill(id="quick", fn=quick))}
    return TaskRunner(skills, **kw)


def request(task_id: str, skill: str) -> agent_pb2.ExecuteTaskRequest:
    return agent_pb2.ExecuteTaskRequest(task_id=task_id, skill=skill)


async def test_cancelled_sync_skill_keeps_its_slot_until_the_thread_finishes(
    release: threading.Event,
) -> None:
    runner = blocking_runner(release, capacity=1)
    call = asyncio.create_task(runner.execute(request("t1", "sync.block")))
    await eventually(lambda: runner.load == 1)
    await asyncio.sleep(0.05)  # the worker thread is inside the skill now

    cancelled = await asyncio.wait_for(runner.cancel("t1"), 1)
    # The caller hears CANCELED at once...
    assert cancelled.status.state == CANCELED
    assert cancelled.status.message == "canceled by request"
    assert (await asyncio.wait_for(call, 1)).status.state == CANCELED
    # ...but the thread still runs the skill, so it still counts against capacity.
    assert runner.load == 1
    with pytest.raises(AgentAtCapacity):
        await runner.execute(request("t2", "quick"))
    await asyncio.sleep(0.1)
    assert runner.load == 1

    release.set()  # the skill returns; its slot frees
    await eventually(lambda: runner.load == 0, timeout=2)
    assert (await runner.execute(request("t2", "quick"))).status.state == COMPLETED
    runner.close()


async def test_caller_going_away_from_a_sync_skill_keeps_the_slot_too(
    release: threading.Event,
) -> None:
    runner = blocking_runner(release, capacity=1)
    call = asyncio.create_task(runner.execute(request("t1", "sync.block")))
    await eventually(lambda: runner.load == 1)
    await asyncio.sleep(0.05)
    call.cancel()  # as gRPC does when the deadline passes or the client leaves
    await asyncio.wait({call}, timeout=1)
    assert call.done()
    assert runner.load == 1
    with pytest.raises(AgentAtCapacity):
        await runner.execute(request("t2", "quick"))
    release.set()
    await eventually(lambda: runner.load == 0, timeout=2)
    runner.close()


async def test_a_call_past_its_deadline_raises_instead_of_returning_a_canceled_task() -> None:
    """The skill's task swallows its cancellation (it ends CANCELED); the call's own
    cancellation must still reach the caller, or a deadline would answer "success"."""

    async def forever(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        await asyncio.sleep(60)
        return {}

    runner = TaskRunner({"forever": Skill(id="forever", fn=forever)})
    for _ in range(20):  # the race it had was lost only now and then
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await runner.execute(request("t1", "forever"))
        await eventually(lambda: runner.load == 0, timeout=1)


async def test_stream_closed_before_the_task_ran_frees_its_slot(
    release: threading.Event,
) -> None:
    runner = blocking_runner(release, capacity=1)
    stream = runner.stream(agent_pb2.StreamTaskRequest(task_id="s1", skill="quick"))
    first = await stream.__anext__()  # WORKING; the skill has not been started yet
    assert first.status_update.state == agent_pb2.TASK_STATE_WORKING
    assert runner.load == 1
    await stream.aclose()
    await eventually(lambda: runner.load == 0, timeout=1)
    assert (await runner.execute(request("s1", "quick"))).status.state == COMPLETED


async def test_progress_to_a_reader_that_does_not_read_is_coalesced() -> None:
    n = 100_000
    artifacts_at = {10, 50_000, n - 1}

    async def chatty(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        for i in range(n):
            await ctx.progress(f"step {i}", i / n)
            if i in artifacts_at:
                await ctx.artifact(f"part-{i}", {"i": i})
        return {"steps": n}

    runner = TaskRunner({"chatty": Skill(id="chatty", fn=chatty)})
    stream = runner.stream(agent_pb2.StreamTaskRequest(task_id="c", skill="chatty"))
    assert (await stream.__anext__()).status_update.message == ""  # WORKING
    (updates,) = runner._running["c"].streams
    await eventually(lambda: runner.load == 0)  # the skill ran to the end; nobody read
    # Latest progress before each artifact, the artifacts, the end: not 100k messages.
    assert updates.qsize() <= 2 * len(artifacts_at) + 2

    items = [item async for item in stream]
    final = items[-1]
    assert final.final and final.task.status.state == COMPLETED
    assert dict(final.task.output) == {"steps": float(n)}
    assert len(final.task.artifacts) == len(artifacts_at)
    seen = [
        i.status_update.message if i.HasField("status_update") else i.artifact_update.name
        for i in items[:-1]
    ]
    # Only the latest progress before each artifact is left; no artifact is lost.
    expected = []
    for i in sorted(artifacts_at):
        expected += [f"step {i}", f"part-{i}"]
    assert seen == expected

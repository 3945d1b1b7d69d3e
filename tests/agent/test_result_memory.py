"""Task ids as idempotency keys: finished tasks remembered, running ones joined.

Skills count their calls, so "the skill did not run again" is a number, not
an inference. Over a real MeshServer where a caller is involved; the memory
itself with an injected clock.
"""

from __future__ import annotations

import argparse
import asyncio
import threading
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from meshwright.agent import (
    DEFAULT_RESULT_MEMORY,
    DEFAULT_RESULT_TTL_S,
    SERVICE,
    Agent,
    AgentAtCapacity,
    AgentServicer,
    ResultMemory,
    TaskAlreadyRunning,
    TaskContext,
    TaskIdReused,
    TaskRejected,
)
from meshwright.agent.cli import add_run_arguments
from meshwright.agent.results import request_fingerprint
from meshwright.agent.runtime import AgentRuntime, ServeOptions
from meshwright.agent.v1 import agent_pb2
from meshwright.mesh import InvalidArgument, MeshServer, RemoteServiceClient
from meshwright.mesh.errors import DeadlineExceeded
from meshwright.mesh.security import insecure_pipeline
from tests.conftest import eventually

pytestmark = pytest.mark.timeout(20)

COMPLETED = agent_pb2.TASK_STATE_COMPLETED
FAILED = agent_pb2.TASK_STATE_FAILED
REJECTED = agent_pb2.TASK_STATE_REJECTED
CANCELED = agent_pb2.TASK_STATE_CANCELED
WORKING = agent_pb2.TASK_STATE_WORKING


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Bed:
    """An agent with counting skills, served on a real port."""

    servicer: AgentServicer
    client: RemoteServiceClient
    address: str
    calls: Counter[str]
    gate: asyncio.Event
    thread_gate: threading.Event
    clock: FakeClock
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    async def execute(self, task_id: str, skill: str = "count.ok", **kw: Any) -> agent_pb2.Task:
        reply = await self.client.call("ExecuteTask", request(task_id, skill, **kw))
        return reply.task

    async def stream(
        self, task_id: str, skill: str = "count.ok", **kw: Any
    ) -> list[agent_pb2.StreamTaskResponse]:
        req = as_stream(request(task_id, skill, **kw))
        return [item async for item in self.client.stream("StreamTask", req)]

    def other_client(self) -> RemoteServiceClient:
        """A client on its own channel (as another process would have)."""
        channel = grpc.aio.insecure_channel(self.address)
        self.channels.append(channel)
        return RemoteServiceClient(channel, SERVICE)


def request(task_id: str, skill: str, **input: Any) -> agent_pb2.ExecuteTaskRequest:
    s = struct_pb2.Struct()
    s.update(input)
    return agent_pb2.ExecuteTaskRequest(task_id=task_id, skill=skill, input=s, context_id="wf")


def as_stream(req: agent_pb2.ExecuteTaskRequest) -> agent_pb2.StreamTaskRequest:
    """The same request for StreamTask (the two have the same fields under the same numbers)."""
    return agent_pb2.StreamTaskRequest.FromString(req.SerializeToString())


def counting_agent(
    calls: Counter[str], gate: asyncio.Event, thread_gate: threading.Event, capacity: int
) -> Agent:
    agent = Agent("counting", capacity=capacity)

    @agent.skill("count.ok")
    async def ok(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        calls["count.ok"] += 1
        return {"run": calls["count.ok"]}

    @agent.skill("count.boom")
    async def boom(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        calls["count.boom"] += 1
        raise ValueError(f"boom {calls['count.boom']}")

    @agent.skill("count.picky")
    async def picky(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        calls["count.picky"] += 1
        raise TaskRejected(f"no {calls['count.picky']}")

    @agent.skill("count.hold")
    async def hold(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        calls["count.hold"] += 1
        await ctx.progress("started", 0.25)
        await ctx.artifact("early", {"i": 1})
        await gate.wait()
        await ctx.artifact("late", {"i": 2})
        return {"run": calls["count.hold"]}

    @agent.skill("count.sync_hold")
    def sync_hold(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        calls["count.sync_hold"] += 1
        thread_gate.wait(10)
        return {"run": calls["count.sync_hold"]}

    return agent


@asynccontextmanager
async def served(capacity: int = 4, **servicer_kw: Any) -> AsyncIterator[Bed]:
    calls: Counter[str] = Counter()
    gate, thread_gate, clock = asyncio.Event(), threading.Event(), FakeClock()
    agent = counting_agent(calls, gate, thread_gate, capacity)
    servicer = AgentServicer(agent, clock=clock, **servicer_kw)
    server = MeshServer(pipeline=insecure_pipeline(), port=0)
    server.add(servicer, SERVICE)
    await server.start()
    channel = grpc.aio.insecure_channel(server.address)
    bed = Bed(
        servicer,
        RemoteServiceClient(channel, SERVICE),
        server.address,
        calls,
        gate,
        thread_gate,
        clock,
    )
    try:
        yield bed
    finally:
        gate.set()
        thread_gate.set()
        for c in (channel, *bed.channels):
            await c.close()
        await server.stop(0)
        servicer.runner.close()


def waiters(bed: Bed, task_id: str) -> int:
    r = bed.servicer.runner._running.get(task_id)
    return r.waiters if r is not None else 0


# -- the memory itself ------------------------------------------------------------------


def test_defaults_are_ten_thousand_tasks_for_fifteen_minutes() -> None:
    assert (DEFAULT_RESULT_MEMORY, DEFAULT_RESULT_TTL_S) == (10_000, 900.0)
    memory = ResultMemory()
    assert (memory.max_entries, memory.ttl_s) == (10_000, 900.0)
    runner = AgentServicer(Agent("x")).runner
    assert (runner.results.max_entries, runner.results.ttl_s) == (10_000, 900.0)


def test_memory_holds_exactly_max_entries_and_forgets_the_oldest_first() -> None:
    n = 5
    memory = ResultMemory(max_entries=n, ttl_s=60, clock=FakeClock())
    tasks = {f"t{i}": agent_pb2.Task(task_id=f"t{i}") for i in range(n + 1)}
    for i in range(n):
        memory.put(f"t{i}", b"fp", tasks[f"t{i}"])
    assert len(memory) == n
    assert all(memory.get(f"t{i}") is not None for i in range(n))  # N fit
    memory.put(f"t{n}", b"fp", tasks[f"t{n}"])  # N + 1: the oldest goes
    assert len(memory) == n
    assert memory.get("t0") is None
    assert [memory.get(f"t{i}") is not None for i in range(1, n + 1)] == [True] * n
    recorded = memory.get(f"t{n}")
    assert recorded is not None and recorded.task is tasks[f"t{n}"]
    assert recorded.fingerprint == b"fp"


def test_memory_forgets_a_task_ttl_after_it_finished() -> None:
    clock = FakeClock()
    memory = ResultMemory(max_entries=10, ttl_s=900, clock=clock)
    memory.put("t", b"fp", agent_pb2.Task(task_id="t"))
    recorded = memory.get("t")
    assert recorded is not None and recorded.expires_at == 1900.0
    clock.now = 1000.0 + 900 - 1e-6
    assert memory.get("t") is not None  # just before
    clock.now = 1000.0 + 900
    assert memory.get("t") is None  # at the TTL it is gone
    assert len(memory) == 0


def test_expired_entries_do_not_take_room_from_new_ones() -> None:
    clock = FakeClock()
    memory = ResultMemory(max_entries=2, ttl_s=10, clock=clock)
    memory.put("old", b"fp", agent_pb2.Task())
    clock.now += 5
    memory.put("mid", b"fp", agent_pb2.Task())
    clock.now += 5  # "old" expired, "mid" has 5 s left
    memory.put("new", b"fp", agent_pb2.Task())
    assert len(memory) == 2
    assert memory.get("mid") is not None and memory.get("new") is not None


def test_zero_remembers_nothing_and_negative_is_refused() -> None:
    for memory in (ResultMemory(max_entries=0), ResultMemory(ttl_s=0)):
        memory.put("t", b"fp", agent_pb2.Task())
        assert memory.get("t") is None and len(memory) == 0
    with pytest.raises(ValueError, match="max_entries"):
        ResultMemory(max_entries=-1)
    with pytest.raises(ValueError, match="ttl_s"):
        ResultMemory(ttl_s=-1)


def test_fingerprint_is_the_same_for_execute_and_stream_and_sees_every_field() -> None:
    base = request("t", "count.ok", a=1, b=[1, "x"])
    base.upstream_outputs["up"].update({"k": 1})
    base.metadata.update({"m": "1", "n": "2"})
    assert request_fingerprint(as_stream(base)) == request_fingerprint(base)
    # Map order does not matter (deterministic serialisation).
    reordered = agent_pb2.ExecuteTaskRequest(task_id="t", skill="count.ok", context_id="wf")
    reordered.input.update({"b": [1, "x"], "a": 1})
    reordered.metadata.update({"n": "2", "m": "1"})
    reordered.upstream_outputs["up"].update({"k": 1})
    assert request_fingerprint(reordered) == request_fingerprint(base)
    # An empty input sent or left out, and the task id: the skill sees no difference.
    bare = agent_pb2.ExecuteTaskRequest(task_id="t", skill="count.ok")
    empty = agent_pb2.ExecuteTaskRequest(task_id="u", skill="count.ok")
    empty.input.SetInParent()
    assert empty.HasField("input") and not bare.HasField("input")
    assert request_fingerprint(empty) == request_fingerprint(bare)
    changes: list[Callable[[agent_pb2.ExecuteTaskRequest], None]] = [
        lambda r: setattr(r, "skill", "count.boom"),
        lambda r: r.input.update({"a": 2}),
        lambda r: r.upstream_outputs["up"].update({"k": 2}),
        lambda r: setattr(r, "context_id", "other"),
        lambda r: r.metadata.update({"m": "9"}),
        # Moving bytes between neighbouring parts is a change, too.
        lambda r: (setattr(r, "skill", "count.o"), setattr(r, "context_id", "kwf")),
        lambda r: r.metadata.update({"": ""}),
        lambda r: r.upstream_outputs["up2"].Clear(),
    ]
    for change in changes:
        changed = agent_pb2.ExecuteTaskRequest()
        changed.CopyFrom(base)
        change(changed)
        assert request_fingerprint(changed) != request_fingerprint(base)


# -- re-dispatch of a finished task -----------------------------------------------------


async def test_redispatch_of_a_finished_task_answers_the_record_without_running() -> None:
    async with served() as bed:
        first = await bed.execute("wf.a.1", x=1)
        assert first.status.state == COMPLETED and dict(first.output) == {"run": 1.0}
        again = await bed.execute("wf.a.1", x=1)
        assert again == first  # the same task: output, times, status
        streamed = await bed.stream("wf.a.1", x=1)
        assert len(streamed) == 1  # only the final message, at once
        assert streamed[0].final and streamed[0].task == first
        assert streamed[0].status_update == first.status
        # From another caller (a new owner) too.
        other = await bed.other_client().call("ExecuteTask", request("wf.a.1", "count.ok", x=1))
        assert other.task == first
        assert bed.calls["count.ok"] == 1
        # Another attempt id is another task.
        assert dict((await bed.execute("wf.a.2", x=1)).output) == {"run": 2.0}
        assert bed.calls["count.ok"] == 2


async def test_a_streamed_task_is_remembered_for_execute() -> None:
    async with served() as bed:
        items = await bed.stream("s", x=1)
        assert items[-1].final and items[-1].task.status.state == COMPLETED
        assert await bed.execute("s", x=1) == items[-1].task
        assert bed.calls["count.ok"] == 1


@pytest.mark.parametrize(("skill", "state"), [("count.boom", FAILED), ("count.picky", REJECTED)])
async def test_failed_and_rejected_tasks_are_remembered(skill: str, state: int) -> None:
    async with served() as bed:
        first = await bed.execute("t", skill)
        assert first.status.state == state and first.status.message.endswith("1")
        assert await bed.execute("t", skill) == first
        assert bed.calls[skill] == 1


async def test_a_canceled_task_is_not_remembered_and_runs_again() -> None:
    async with served() as bed:
        call = asyncio.create_task(bed.execute("c", "count.hold"))
        await eventually(lambda: bed.calls["count.hold"] == 1)
        await bed.client.call("CancelTask", agent_pb2.CancelTaskRequest(task_id="c"))
        assert (await call).status.state == CANCELED
        assert len(bed.servicer.runner.results) == 0
        bed.gate.set()
        again = await bed.execute("c", "count.hold")
        assert again.status.state == COMPLETED and dict(again.output) == {"run": 2.0}
        assert bed.calls["count.hold"] == 2


async def test_memory_at_capacity_n_and_n_plus_one_over_grpc() -> None:
    n = 3
    async with served(result_memory=n) as bed:
        first = [await bed.execute(f"t{i}") for i in range(n)]
        assert bed.calls["count.ok"] == n
        # All N remembered (newest first, so re-reading does not evict anything).
        for i in reversed(range(n)):
            assert await bed.execute(f"t{i}") == first[i]
        assert bed.calls["count.ok"] == n
        await bed.execute(f"t{n}")  # the N+1st pushes out t0
        assert bed.calls["count.ok"] == n + 1
        for i in range(1, n + 1):
            await bed.execute(f"t{i}")
        assert bed.calls["count.ok"] == n + 1
        rerun = await bed.execute("t0")
        assert dict(rerun.output) == {"run": float(n + 2)}  # forgotten: it ran again
        assert bed.calls["count.ok"] == n + 2


async def test_ttl_just_before_and_after_over_grpc() -> None:
    async with served(result_ttl_s=60) as bed:
        first = await bed.execute("t")
        bed.clock.now += 60 - 0.001
        assert await bed.execute("t") == first
        assert bed.calls["count.ok"] == 1
        bed.clock.now += 0.001
        again = await bed.execute("t")
        assert dict(again.output) == {"run": 2.0}
        assert bed.calls["count.ok"] == 2


async def test_memory_off_runs_every_dispatch() -> None:
    async with served(result_memory=0) as bed:
        await bed.execute("t")
        await bed.execute("t")
        assert bed.calls["count.ok"] == 2


async def test_a_remembered_id_is_answered_at_capacity() -> None:
    async with served(capacity=1) as bed:
        done = await bed.execute("done")
        busy = asyncio.create_task(bed.execute("busy", "count.hold"))
        await eventually(lambda: bed.servicer.load == 1)
        with pytest.raises(AgentAtCapacity):
            await bed.execute("new")
        assert await bed.execute("done") == done  # costs no slot
        bed.gate.set()
        assert (await busy).status.state == COMPLETED


async def test_same_id_with_another_request_is_invalid_argument_on_task_id() -> None:
    async with served() as bed:
        await bed.execute("t", x=1)
        for skill, kw in (("count.ok", {"x": 2}), ("count.boom", {"x": 1})):
            with pytest.raises(TaskIdReused) as reused:
                await bed.execute("t", skill, **kw)
            err = reused.value
            assert isinstance(err, InvalidArgument)
            assert err.reason == "TASK_ID_REUSED"
            assert [v.field for v in err.violations] == ["task_id"]
            assert err.metadata == {"task_id": "t"}
        with pytest.raises(TaskIdReused):
            await bed.stream("t", x=2)
        # Running, too.
        held = asyncio.create_task(bed.execute("h", "count.hold", x=1))
        await eventually(lambda: bed.servicer.load == 1)
        with pytest.raises(TaskIdReused):
            await bed.execute("h", "count.hold", x=2)
        bed.gate.set()
        assert (await held).status.state == COMPLETED
        assert bed.calls == Counter({"count.ok": 1, "count.hold": 1})


# -- re-dispatch of a running task: joining -----------------------------------------------


async def test_redispatch_of_a_running_task_joins_it() -> None:
    async with served() as bed:
        first = asyncio.create_task(bed.execute("j", "count.hold"))
        await eventually(lambda: bed.calls["count.hold"] == 1)
        joined = asyncio.create_task(
            bed.other_client().call("ExecuteTask", request("j", "count.hold"))
        )
        await eventually(lambda: waiters(bed, "j") == 2)
        assert bed.servicer.load == 1  # one task, one slot
        bed.gate.set()
        task = await first
        assert task.status.state == COMPLETED
        assert (await joined).task == task
        assert bed.calls["count.hold"] == 1


async def test_first_caller_gone_does_not_cancel_a_task_another_waits_for() -> None:
    """The engine's process died (its deadline, its connection) after a new owner
    re-dispatched the same attempt: the task must live on for the new owner."""
    async with served() as bed:
        short = asyncio.create_task(
            bed.client.call("ExecuteTask", request("j", "count.hold"), timeout=1.0)
        )
        await eventually(lambda: bed.calls["count.hold"] == 1)
        joiner = asyncio.create_task(
            bed.other_client().call("ExecuteTask", request("j", "count.hold"))
        )
        await eventually(lambda: waiters(bed, "j") == 2)
        with pytest.raises(DeadlineExceeded):
            await short
        await eventually(lambda: waiters(bed, "j") == 1)
        assert bed.servicer.load == 1
        assert bed.servicer.runner._running["j"].task.status.state == WORKING
        bed.gate.set()
        assert (await joiner).task.status.state == COMPLETED
        assert bed.calls["count.hold"] == 1


async def test_first_callers_connection_dropping_does_not_cancel_the_joined_task() -> None:
    async with served() as bed:
        dying = bed.other_client()
        first = asyncio.create_task(dying.call("ExecuteTask", request("j", "count.hold")))
        await eventually(lambda: bed.calls["count.hold"] == 1)
        joined = asyncio.create_task(bed.execute("j", "count.hold"))
        await eventually(lambda: waiters(bed, "j") == 2)
        await bed.channels[-1].close()  # the first caller's process is gone
        await asyncio.wait({first})
        await eventually(lambda: waiters(bed, "j") == 1)
        bed.gate.set()
        task = await joined
        assert task.status.state == COMPLETED and dict(task.output) == {"run": 1.0}
        assert bed.calls["count.hold"] == 1


async def test_the_last_caller_going_away_cancels_and_the_task_is_not_remembered() -> None:
    async with served() as bed:
        calls = [
            asyncio.create_task(
                bed.client.call("ExecuteTask", request("j", "count.hold"), timeout=t)
            )
            for t in (0.3, 0.6)
        ]
        await eventually(lambda: waiters(bed, "j") == 2)
        for call in calls:
            with pytest.raises(DeadlineExceeded):
                await call
        await eventually(lambda: bed.servicer.load == 0)
        assert len(bed.servicer.runner.results) == 0
        bed.gate.set()
        assert (await bed.execute("j", "count.hold")).status.state == COMPLETED
        assert bed.calls["count.hold"] == 2


async def test_cancel_task_cancels_for_every_waiter() -> None:
    async with served() as bed:
        calls = [asyncio.create_task(bed.execute("j", "count.hold")) for _ in range(2)]
        await eventually(lambda: waiters(bed, "j") == 2)
        await bed.client.call("CancelTask", agent_pb2.CancelTaskRequest(task_id="j"))
        for call in calls:
            task = await call
            assert task.status.state == CANCELED
            assert task.status.message == "canceled by request"


async def test_a_stream_joining_a_running_task_starts_with_its_state_so_far() -> None:
    async with served() as bed:
        first_items: list[agent_pb2.StreamTaskResponse] = []

        async def follow_first() -> None:
            async for item in bed.client.stream(
                "StreamTask", agent_pb2.StreamTaskRequest(task_id="s", skill="count.hold")
            ):
                first_items.append(item)

        first = asyncio.create_task(follow_first())
        await eventually(lambda: len(first_items) == 3)  # WORKING, "started", "early"
        second_items: list[agent_pb2.StreamTaskResponse] = []

        async def follow_second() -> None:
            async for item in bed.other_client().stream(
                "StreamTask", agent_pb2.StreamTaskRequest(task_id="s", skill="count.hold")
            ):
                second_items.append(item)

        second = asyncio.create_task(follow_second())
        await eventually(lambda: len(second_items) == 2)
        status, early = second_items
        assert (status.status_update.state, status.status_update.message) == (WORKING, "started")
        assert status.status_update.progress == 0.25
        assert early.artifact_update.name == "early"
        bed.gate.set()
        await asyncio.gather(first, second)
        assert second_items[2].artifact_update.name == "late"
        assert second_items[-1].final and first_items[-1].final
        assert second_items[-1].task == first_items[-1].task
        assert [a.name for a in second_items[-1].task.artifacts] == ["early", "late"]
        assert bed.calls["count.hold"] == 1


async def test_an_execute_joining_a_stream_keeps_the_task_when_the_stream_closes() -> None:
    async with served() as bed:
        stream = bed.client.stream("StreamTask", as_stream(request("s", "count.hold")))
        assert isinstance(stream, AsyncGenerator)
        async for item in stream:
            if item.HasField("artifact_update"):
                break  # "early": the skill waits at its gate now
        joined = asyncio.create_task(bed.execute("s", "count.hold"))
        await eventually(lambda: waiters(bed, "s") == 2)
        await stream.aclose()
        await eventually(lambda: waiters(bed, "s") == 1)
        bed.gate.set()
        assert (await joined).status.state == COMPLETED
        assert bed.calls["count.hold"] == 1


async def test_a_canceled_sync_task_whose_thread_runs_is_already_running() -> None:
    """Not joinable (it ended CANCELED) and not runnable twice at once (the thread still
    runs its first call): refused until the thread returns, then it runs again."""
    async with served() as bed:
        call = asyncio.create_task(bed.execute("y", "count.sync_hold"))
        await eventually(lambda: bed.calls["count.sync_hold"] == 1)
        await bed.client.call("CancelTask", agent_pb2.CancelTaskRequest(task_id="y"))
        assert (await call).status.state == CANCELED
        with pytest.raises(TaskAlreadyRunning) as running:
            await bed.execute("y", "count.sync_hold")
        assert running.value.reason == "TASK_ALREADY_RUNNING"
        bed.thread_gate.set()
        await eventually(lambda: bed.servicer.load == 0)
        again = await bed.execute("y", "count.sync_hold")
        assert again.status.state == COMPLETED and dict(again.output) == {"run": 2.0}


# -- the knobs ------------------------------------------------------------------------------


async def test_serve_options_set_the_memory() -> None:
    agent = counting_agent(Counter(), asyncio.Event(), threading.Event(), 1)
    runtime = await agent.start(insecure_no_auth=True, result_memory=7, result_ttl_s=30)
    try:
        results = runtime.servicer.runner.results
        assert (results.max_entries, results.ttl_s) == (7, 30)
    finally:
        await runtime.stop()
    with pytest.raises(ValueError, match="max_entries"):
        AgentRuntime(agent, ServeOptions(result_memory=-1))


def test_cli_flags_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    def parse(*argv: str) -> argparse.Namespace:
        parser = argparse.ArgumentParser()
        add_run_arguments(parser)
        return parser.parse_args(["m:a", *argv])

    monkeypatch.delenv("MESHWRIGHT_RESULT_MEMORY", raising=False)
    monkeypatch.delenv("MESHWRIGHT_RESULT_TTL_S", raising=False)
    args = parse()
    assert (args.result_memory, args.result_ttl) == (10_000, 900.0)
    args = parse("--result-memory", "5", "--result-ttl", "2.5")
    assert (args.result_memory, args.result_ttl) == (5, 2.5)
    monkeypatch.setenv("MESHWRIGHT_RESULT_MEMORY", "0")
    monkeypatch.setenv("MESHWRIGHT_RESULT_TTL_S", "60")
    args = parse()
    assert (args.result_memory, args.result_ttl) == (0, 60.0)
    assert parse("--result-memory", "3").result_memory == 3  # the flag wins

"""How a task ends says whether trying again can help: TaskStatus.reason and non_retryable.

Over a real MeshServer, for ExecuteTask and StreamTask alike.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import pytest

from meshwright.agent import (
    OUTPUT_NOT_JSON,
    SERVICE,
    SKILL_ERROR,
    TASK_FAILED,
    TASK_REJECTED,
    Agent,
    AgentServicer,
    TaskContext,
    TaskFailed,
    TaskRejected,
)
from meshwright.agent.v1 import agent_pb2
from meshwright.mesh import MeshServer, RemoteServiceClient
from meshwright.mesh.security import insecure_pipeline
from tests.conftest import eventually

pytestmark = pytest.mark.timeout(20)

COMPLETED = agent_pb2.TASK_STATE_COMPLETED
FAILED = agent_pb2.TASK_STATE_FAILED
REJECTED = agent_pb2.TASK_STATE_REJECTED
CANCELED = agent_pb2.TASK_STATE_CANCELED

LONGEST_REASON = "R" * 64


def make_agent() -> Agent:
    agent = Agent("retryability", capacity=0)

    def add(skill_id: str, raise_: Callable[[], BaseException | None]) -> None:
        async def fn(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
            err = raise_()
            if err is not None:
                raise err
            return {"ok": True}

        agent.skill(skill_id)(fn)

    add("ok", lambda: None)
    add("reject.default", lambda: TaskRejected("odd numbers only"))
    add("reject.own", lambda: TaskRejected("busy", reason="DEVICE_BUSY", retryable=True))
    add("fail.default", lambda: TaskFailed("upstream hiccup"))
    add("fail.final", lambda: TaskFailed("quota", reason="QUOTA_USED_UP", retryable=False))
    add("fail.longest", lambda: TaskFailed("long", reason=LONGEST_REASON, retryable=False))
    add("boom", lambda: KeyError("text"))
    add("bad.reason", lambda: TaskFailed("x", reason="not_upper"))

    @agent.skill("sync.final")
    def sync_final(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        raise TaskFailed("from a thread", reason="THREAD_SAYS_NO", retryable=False)

    @agent.skill("sync.reject")
    def sync_reject(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        raise TaskRejected("from a thread")

    @agent.skill("bad.output")
    async def bad_output(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return {"x": object()}

    @agent.skill("forever")
    async def forever(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        await asyncio.sleep(60)
        return {}

    return agent


@pytest.fixture
async def served() -> AsyncIterator[tuple[AgentServicer, RemoteServiceClient]]:
    servicer = AgentServicer(make_agent())
    server = MeshServer(pipeline=insecure_pipeline(), port=0)
    server.add(servicer, SERVICE)
    await server.start()
    channel = grpc.aio.insecure_channel(server.address)
    try:
        yield servicer, RemoteServiceClient(channel, SERVICE)
    finally:
        await channel.close()
        await server.stop(0)
        servicer.runner.close()


Run = Callable[[RemoteServiceClient, str, str], Awaitable[agent_pb2.Task]]


async def run_execute(client: RemoteServiceClient, task_id: str, skill: str) -> agent_pb2.Task:
    request = agent_pb2.ExecuteTaskRequest(task_id=task_id, skill=skill)
    return (await client.call("ExecuteTask", request)).task


async def run_stream(client: RemoteServiceClient, task_id: str, skill: str) -> agent_pb2.Task:
    request = agent_pb2.StreamTaskRequest(task_id=task_id, skill=skill)
    items = [item async for item in client.stream("StreamTask", request)]
    assert items[-1].final and items[-1].status_update == items[-1].task.status
    return items[-1].task


ENDS = [
    # skill, state, reason, non_retryable, message
    ("ok", COMPLETED, "", False, ""),
    ("reject.default", REJECTED, TASK_REJECTED, True, "odd numbers only"),
    ("reject.own", REJECTED, "DEVICE_BUSY", False, "busy"),
    ("fail.default", FAILED, TASK_FAILED, False, "upstream hiccup"),
    ("fail.final", FAILED, "QUOTA_USED_UP", True, "quota"),
    ("fail.longest", FAILED, LONGEST_REASON, True, "long"),
    ("boom", FAILED, SKILL_ERROR, False, "KeyError: 'text'"),
    ("sync.final", FAILED, "THREAD_SAYS_NO", True, "from a thread"),
    ("sync.reject", REJECTED, TASK_REJECTED, True, "from a thread"),
    ("bad.output", FAILED, OUTPUT_NOT_JSON, False, "output is not JSON-like data"),
    # A reason that is not UPPER_SNAKE_CASE is the skill's bug: an unexpected error.
    ("bad.reason", FAILED, SKILL_ERROR, False, "ValueError: reason 'not_upper' must be"),
]


@pytest.mark.parametrize("run", [run_execute, run_stream], ids=["execute", "stream"])
@pytest.mark.parametrize(("skill", "state", "reason", "non_retryable", "message"), ENDS)
async def test_how_each_end_is_reported(
    served: Any, run: Run, skill: str, state: int, reason: str, non_retryable: bool, message: str
) -> None:
    servicer, client = served
    task = await run(client, "t", skill)
    status = task.status
    assert (status.state, status.reason, status.non_retryable) == (state, reason, non_retryable)
    assert status.message.startswith(message)
    # The remembered task says the same.
    assert await run(client, "t", skill) == task
    assert servicer.load == 0


async def test_canceled_has_no_reason(served: Any) -> None:
    servicer, client = served
    call = asyncio.create_task(run_execute(client, "c", "forever"))
    await eventually(lambda: servicer.load == 1)
    await client.call("CancelTask", agent_pb2.CancelTaskRequest(task_id="c"))
    status = (await call).status
    assert (status.state, status.reason, status.non_retryable) == (CANCELED, "", False)


def test_reason_rules_and_defaults() -> None:
    rejected = TaskRejected("no")
    assert (rejected.message, rejected.reason, rejected.retryable) == ("no", "TASK_REJECTED", False)
    failed = TaskFailed("no")
    assert (failed.message, failed.reason, failed.retryable) == ("no", "TASK_FAILED", True)
    assert TaskFailed("x", reason=LONGEST_REASON).reason == LONGEST_REASON  # 64: the limit
    for bad in ("R" * 65, "lower", "1ST", "_LEADING", "WITH SPACE", "DASH-ED", "É"):
        for cls in (TaskFailed, TaskRejected):
            with pytest.raises(ValueError, match="UPPER_SNAKE_CASE of at most 64"):
                cls("x", reason=bad)
    assert TaskRejected("x", reason="A").reason == "A"  # one character is enough
    assert str(TaskFailed("said")) == "said"

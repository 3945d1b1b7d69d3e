"""What is retried and what is not; per-task timeouts that really fire; the workflow deadline."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from meshwright.agent import Agent, TaskContext, TaskFailed, TaskRejected
from meshwright.agent.v1 import agent_pb2
from meshwright.economy.v1 import economy_pb2
from meshwright.mesh.client import RemoteServiceClient
from meshwright.mesh.config import MeshConfig
from meshwright.node import AGENT_SERVICE, Node, start_node
from meshwright.workflow import EngineConfig
from meshwright.workflow._dag import (
    MAX_NON_RETRYABLE,
    MAX_REASON_CHARS,
    MAX_WORKFLOW_TIMEOUT_S,
    check_definition,
)
from meshwright.workflow.retry import OUTPUT_REFUSED, RetryDefaults, TaskRetry
from meshwright.workflow.v1 import workflow_pb2
from tests.conftest import eventually
from tests.workflow.conftest import Running, fund, run

W = workflow_pb2


def counting_agent(name: str, behaviour: Any, *, capacity: int = 8) -> tuple[Agent, list[int]]:
    """An agent whose skill ``x.work`` calls ``behaviour(call_number)``; calls are counted."""
    agent = Agent(name, capacity=capacity)
    calls: list[int] = []

    @agent.skill("x.work")
    async def work(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        calls.append(len(calls) + 1)
        result: dict[str, Any] = await behaviour(len(calls))
        return result

    return agent, calls


def one(**task: Any) -> dict[str, Any]:
    return {"tasks": [{"id": "t", "skill": "x.work", **task}]}


async def test_a_rejected_task_is_not_retried(node: Node, agents: Running) -> None:
    async def reject(_: int) -> dict[str, Any]:
        raise TaskRejected("input needs a text")

    agent, calls = counting_agent("rejecter", reject)
    await agents.start(agent, node)
    wf = await run(node, one(retry={"maxAttempts": 5}))
    assert wf.state == W.WORKFLOW_STATE_FAILED
    assert calls == [1]
    assert wf.tasks[0].attempts == 1
    assert "input needs a text" in wf.tasks[0].error


async def test_a_rejection_marked_retryable_is_retried(node: Node, agents: Running) -> None:
    async def busy(n: int) -> dict[str, Any]:
        if n < 3:
            raise TaskRejected("resource busy", retryable=True)
        return {"ok": True}

    agent, calls = counting_agent("busy", busy)
    await agents.start(agent, node)
    wf = await run(node, one(retry={"maxAttempts": 3}))
    assert wf.state == W.WORKFLOW_STATE_SUCCEEDED
    assert calls == [1, 2, 3]


async def test_a_failure_marked_non_retryable_is_final(node: Node, agents: Running) -> None:
    async def fail(_: int) -> dict[str, Any]:
        raise TaskFailed("quota used up", reason="QUOTA_USED_UP", retryable=False)

    agent, calls = counting_agent("final", fail)
    await agents.start(agent, node)
    wf = await run(node, one(retry={"maxAttempts": 4}))
    assert wf.state == W.WORKFLOW_STATE_FAILED
    assert calls == [1]


@pytest.mark.parametrize(("listed", "expected_calls"), [(["QUOTA_USED_UP"], 1), (["OTHER"], 3)])
async def test_reasons_the_policy_lists_are_not_retried(
    node: Node, agents: Running, listed: list[str], expected_calls: int
) -> None:
    async def fail(_: int) -> dict[str, Any]:
        raise TaskFailed("quota used up", reason="QUOTA_USED_UP")  # retryable by itself

    agent, calls = counting_agent("listed", fail)
    await agents.start(agent, node)
    wf = await run(node, one(retry={"maxAttempts": 3, "nonRetryableReasons": listed}))
    assert wf.state == W.WORKFLOW_STATE_FAILED
    assert len(calls) == expected_calls


async def test_an_unexpected_skill_error_is_retried(node: Node, agents: Running) -> None:
    async def flaky(n: int) -> dict[str, Any]:
        if n == 1:
            raise RuntimeError("boom")
        return {"n": n}

    agent, calls = counting_agent("flaky", flaky)
    await agents.start(agent, node)
    wf = await run(node, one())
    assert wf.state == W.WORKFLOW_STATE_SUCCEEDED
    assert calls == [1, 2]
    assert wf.tasks[0].attempts == 2


async def test_a_task_timeout_fires_and_the_task_is_retried(node: Node, agents: Running) -> None:
    async def slow_first(n: int) -> dict[str, Any]:
        if n == 1:
            await asyncio.sleep(30)
        return {"n": n}

    agent, calls = counting_agent("slow-first", slow_first)
    await agents.start(agent, node)
    started = time.monotonic()
    wf = await run(node, one(timeout="0.3s"))
    assert wf.state == W.WORKFLOW_STATE_SUCCEEDED
    assert wf.tasks[0].attempts == 2
    assert calls == [1, 2]
    assert time.monotonic() - started < 10  # the 30 s attempt was cut at its deadline


async def test_a_task_timeout_fails_the_task_per_policy(node: Node, agents: Running) -> None:
    async def hang(_: int) -> dict[str, Any]:
        await asyncio.sleep(30)
        return {}

    agent, calls = counting_agent("hang", hang)
    await agents.start(agent, node)
    started = time.monotonic()
    wf = await run(
        node,
        one(timeout="0.2s", retry={"maxAttempts": 3, "nonRetryableReasons": ["DEADLINE_EXCEEDED"]}),
    )
    assert wf.state == W.WORKFLOW_STATE_FAILED
    assert wf.tasks[0].attempts == 1
    assert wf.tasks[0].error.startswith("DEADLINE_EXCEEDED")
    assert time.monotonic() - started < 10
    assert calls == [1]


async def test_the_workflow_deadline_ends_it_failed_and_refunds(
    node: Node, agents: Running
) -> None:
    async def hang(_: int) -> dict[str, Any]:
        await asyncio.sleep(30)
        return {}

    agent, _ = counting_agent("deadline", hang)
    await agents.start(agent, node)
    await fund(node, "dl", 10)
    started = time.monotonic()
    wf = await run(node, {**one(), "timeout": "0.5s", "budget": 10, "payerAccountId": "dl"})
    assert wf.state == W.WORKFLOW_STATE_FAILED
    assert wf.error == "workflow deadline exceeded"
    assert wf.tasks[0].state == W.TASK_RUN_STATE_CANCELLED
    assert 0.4 < time.monotonic() - started < 10
    account = await node.clients["economy"].call(
        "GetAccount", economy_pb2.GetAccountRequest(account_id="dl")
    )
    assert (account.account.balance, account.account.escrowed) == (10, 0)


async def test_a_deadline_not_reached_does_not_end_it(node: Node, agents: Running) -> None:
    async def quick(n: int) -> dict[str, Any]:
        return {"n": n}

    agent, _ = counting_agent("quick", quick)
    await agents.start(agent, node)
    wf = await run(node, {**one(), "timeout": "30s"})
    assert wf.state == W.WORKFLOW_STATE_SUCCEEDED


@pytest.fixture
async def patient_node() -> AsyncIterator[Node]:
    """A node whose tasks wait long enough for an agent to report a freed slot."""
    n = await start_node(
        MeshConfig(insecure_no_auth=True, grpc_port=0, http_port=0, grace_s=0),
        gateway=False,
        engine_config=EngineConfig(initial_backoff_s=0.01, agent_wait_s=15, handoff_grace_s=0.5),
    )
    try:
        yield n
    finally:
        await n.stop()


async def test_at_capacity_is_not_an_attempt(patient_node: Node, agents: Running) -> None:
    """The agent's only slot is taken behind the mesh's back: the engine's call is answered
    AGENT_AT_CAPACITY, which spends no attempt (nor trips the breaker); the task runs once
    the agent reports its slot free."""
    node = patient_node
    release = asyncio.Event()

    async def gated(n: int) -> dict[str, Any]:
        if n == 1:
            await release.wait()
        return {"n": n}

    agent, calls = counting_agent("single", gated, capacity=1)
    await agents.start(agent, node)
    endpoint = agents.runtimes[-1].endpoint
    assert node.engine is not None
    direct = node.engine.dispatcher._channels.client(endpoint, AGENT_SERVICE)
    assert isinstance(direct, RemoteServiceClient)
    behind = asyncio.create_task(
        direct.call("ExecuteTask", agent_pb2.ExecuteTaskRequest(task_id="behind", skill="x.work"))
    )
    await eventually(lambda: calls == [1])
    creating = asyncio.create_task(run(node, one(retry={"maxAttempts": 1})))
    await asyncio.sleep(0.5)  # the engine tries, is told "at capacity", waits
    assert not creating.done()
    release.set()
    await behind
    wf = await asyncio.wait_for(creating, 15)
    assert wf.state == W.WORKFLOW_STATE_SUCCEEDED, wf.tasks[0].error
    assert wf.tasks[0].attempts == 1
    assert calls == [1, 2]


# -- the rules themselves ------------------------------------------------------


def test_backoff_grows_by_the_multiplier_up_to_its_cap() -> None:
    spec = W.TaskSpec(id="t", skill="s")
    spec.retry.backoff_multiplier = 3
    spec.retry.max_backoff.FromMilliseconds(1000)
    rules = TaskRetry.of(spec, RetryDefaults(initial_backoff_s=0.1))
    assert [round(rules.backoff_after(n), 6) for n in (1, 2, 3, 4)] == [0.1, 0.3, 0.9, 1.0]


def test_output_refused_is_never_retryable_and_listed_reasons_are_not() -> None:
    spec = W.TaskSpec(id="t", skill="s")
    spec.retry.non_retryable_reasons.append("NO_AGENT_AVAILABLE")
    rules = TaskRetry.of(spec, RetryDefaults())
    assert not rules.retryable_reason(OUTPUT_REFUSED)
    assert not rules.retryable_reason("NO_AGENT_AVAILABLE")
    assert rules.retryable_reason("UNAVAILABLE")
    status = agent_pb2.TaskStatus(state=agent_pb2.TASK_STATE_FAILED, reason="NO_AGENT_AVAILABLE")
    assert not rules.retryable_task(status)
    status.reason = "SKILL_ERROR"
    assert rules.retryable_task(status)
    status.non_retryable = True
    assert not rules.retryable_task(status)


def _fields(d: W.WorkflowDefinition) -> list[str]:
    return [v.field for v in check_definition(d)]


def test_workflow_timeout_bounds() -> None:
    d = W.WorkflowDefinition(tasks=[W.TaskSpec(id="t", skill="s")])
    d.timeout.FromSeconds(int(MAX_WORKFLOW_TIMEOUT_S))
    assert _fields(d) == []
    d.timeout.FromSeconds(int(MAX_WORKFLOW_TIMEOUT_S) + 1)
    assert _fields(d) == ["definition.timeout"]
    d.timeout.FromSeconds(-1)
    assert _fields(d) == ["definition.timeout"]


def test_non_retryable_reasons_bounds() -> None:
    def with_reasons(reasons: list[str]) -> W.WorkflowDefinition:
        d = W.WorkflowDefinition(tasks=[W.TaskSpec(id="t", skill="s")])
        d.tasks[0].retry.non_retryable_reasons.extend(reasons)
        return d

    where = "definition.tasks[0].retry.non_retryable_reasons"
    assert _fields(with_reasons([f"R{i}" for i in range(MAX_NON_RETRYABLE)])) == []
    assert _fields(with_reasons([f"R{i}" for i in range(MAX_NON_RETRYABLE + 1)])) == [where]
    assert _fields(with_reasons(["A" * MAX_REASON_CHARS])) == []
    assert _fields(with_reasons(["A" * (MAX_REASON_CHARS + 1)])) == [f"{where}[0]"]
    assert _fields(with_reasons(["OK", "lower_case"])) == [f"{where}[1]"]
    assert _fields(with_reasons(["_LEADING"])) == [f"{where}[0]"]

"""The engine against real in-process agents (SDK, real gRPC): placement, budget, capacity."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from google.protobuf import json_format

from meshwright.agent import Agent, TaskContext
from meshwright.economy.v1 import economy_pb2
from meshwright.mesh.errors import AlreadyExists
from meshwright.node import Node
from meshwright.workflow.v1 import workflow_pb2
from tests.workflow.conftest import Running, Split, echo_agent, fan, fund, run

W = workflow_pb2


async def test_the_cheaper_agent_wins_when_both_are_idle(node: Node, agents: Running) -> None:
    cheap = await agents.start(echo_agent("cheap", price=1), node)
    await agents.start(echo_agent("pricey", price=10), node)
    await fund(node, "p1", 100)
    wf = await run(
        node, {"budget": 100, "payerAccountId": "p1", "tasks": [{"id": "only", "skill": "x.echo"}]}
    )
    assert wf.tasks[0].agent_id == cheap and wf.spent == 1


async def test_agents_the_budget_cannot_pay_are_skipped(node: Node, agents: Running) -> None:
    cheap = await agents.start(echo_agent("cheap", price=1, delay=0.02), node)
    await agents.start(echo_agent("pricey", price=10), node)
    await fund(node, "p2", 100)
    wf = await run(node, fan(6, budget=6, payerAccountId="p2"))
    assert wf.state == W.WORKFLOW_STATE_SUCCEEDED
    assert {t.agent_id for t in wf.tasks} == {cheap}
    assert wf.spent == 6


async def test_a_budget_too_small_fails_the_task_without_overspending(
    node: Node, agents: Running
) -> None:
    await agents.start(echo_agent("cheap", price=1, delay=0.02), node)
    await fund(node, "p3", 100)
    wf = await run(node, fan(3, budget=2, payerAccountId="p3"))
    assert wf.state == W.WORKFLOW_STATE_FAILED
    assert wf.spent == 2
    failed = [t for t in wf.tasks if t.state == W.TASK_RUN_STATE_FAILED]
    assert len(failed) == 1
    assert "costs more than the 0 left in the budget" in failed[0].error
    assert failed[0].attempts == 0  # never dispatched: retrying cannot grow a budget
    balance = await node.clients["economy"].call(
        "GetAccount", economy_pb2.GetAccountRequest(account_id="p3")
    )
    assert balance.account.balance == 98


async def test_capacity_is_respected_and_waiting_tasks_still_finish(
    node: Node, agents: Running
) -> None:
    agent = echo_agent("narrow", price=0, capacity=2, delay=0.03)
    await agents.start(agent, node)
    wf = await run(node, fan(12))
    assert wf.state == W.WORKFLOW_STATE_SUCCEEDED
    assert agent.metadata_seen["max"] == 2  # type: ignore[attr-defined]


async def test_load_is_spread_over_equal_agents(node: Node, agents: Running) -> None:
    a = await agents.start(echo_agent("a", price=0, capacity=4, delay=0.03), node)
    b = await agents.start(echo_agent("b", price=0, capacity=4, delay=0.03), node)
    wf = await run(node, fan(16))
    used = [t.agent_id for t in wf.tasks]
    assert used.count(a) >= 4 and used.count(b) >= 4


async def test_outputs_reach_every_dependant(node: Node, agents: Running) -> None:
    await agents.start(echo_agent("e", price=0), node)
    wf = await run(
        node,
        {
            "tasks": [
                {"id": "a", "skill": "x.echo"},
                {"id": "b", "skill": "x.echo"},
                {"id": "join", "skill": "x.echo", "dependsOn": ["b", "a"]},
            ]
        },
    )
    join = next(t for t in wf.tasks if t.task_id == "join")
    assert list(join.output["upstream"]) == ["a", "b"]


async def test_an_inactive_agent_is_never_dispatched_to(node: Node) -> None:
    from meshwright.agent.v1 import agent_pb2
    from meshwright.registry.v1 import registry_pb2
    from tests.conftest import eventually

    registry = node.clients["registry"]
    card = agent_pb2.AgentCard(name="ghost", skills=[agent_pb2.AgentSkill(id="x.ghost")])
    reply = await registry.call(
        "RegisterAgent",
        registry_pb2.RegisterAgentRequest(
            card=card, endpoint="127.0.0.1:9", lease_ttl=duration(1.0)
        ),
    )
    ghost = reply.agent.agent_id

    async def lapsed() -> bool:
        got = await registry.call("GetAgent", registry_pb2.GetAgentRequest(agent_id=ghost))
        return got.agent.state == registry_pb2.AGENT_STATE_INACTIVE

    await eventually(lapsed, timeout=5)
    wf = await run(node, {"tasks": [{"id": "t", "skill": "x.ghost", "retry": {"maxAttempts": 2}}]})
    assert wf.state == W.WORKFLOW_STATE_FAILED
    assert wf.tasks[0].attempts == 0  # it waited for an active agent; none came
    assert "no active agent offering 'x.ghost'" in wf.tasks[0].error


def duration(seconds: float) -> Any:
    from google.protobuf import duration_pb2

    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


async def test_stopping_the_engine_hands_its_runs_off_without_cancelling(
    node: Node, agents: Running
) -> None:
    await agents.start(echo_agent("slow", price=1, delay=30), node)
    await fund(node, "p4", 10)
    wfs = node.clients["workflow"]
    d = json_format.ParseDict(fan(1, budget=10, payerAccountId="p4"), W.WorkflowDefinition())
    reply = await wfs.call("CreateWorkflow", W.CreateWorkflowRequest(definition=d))
    assert node.engine is not None
    engine = node.engine
    wf_id = reply.workflow.workflow_id

    async def running() -> bool:
        wf = await engine.get_workflow(wf_id)
        return wf.tasks[0].state == W.TASK_RUN_STATE_RUNNING

    from tests.conftest import eventually

    await eventually(running)
    assert await engine.store.orphans(10) == []  # leased while it runs here
    await engine.stop()
    wf = await engine.get_workflow(wf_id)
    # Not cancelled, not refunded: the run stays as stored, its lease released at once
    # so another replica (or this one restarted) resumes it.
    assert wf.state == W.WORKFLOW_STATE_RUNNING
    assert wf.tasks[0].state == W.TASK_RUN_STATE_RUNNING
    assert await engine.store.orphans(10) == [wf_id]
    balance = await node.clients["economy"].call(
        "GetAccount", economy_pb2.GetAccountRequest(account_id="p4")
    )
    assert (balance.account.balance, balance.account.escrowed) == (0, 10)


async def test_a_budget_exactly_covering_the_work_is_spent_exactly(
    node: Node, agents: Running
) -> None:
    await agents.start(echo_agent("a", price=1, capacity=3, delay=0.01), node)
    await agents.start(echo_agent("b", price=1, capacity=3, delay=0.01), node)
    await fund(node, "p5", 40)
    wf = await run(node, fan(40, budget=40, payerAccountId="p5"))
    assert wf.state == W.WORKFLOW_STATE_SUCCEEDED, [t.error for t in wf.tasks if t.error]
    assert wf.spent == 40


async def test_concurrent_creates_of_one_id_escrow_once(split: Split, agents: Running) -> None:
    """With the economy behind a real network hop, creates interleave at every await."""
    node = split.node
    await agents.start(echo_agent("a", price=1), node, economy=split.economy_address)
    economy = node.clients["economy"]
    await economy.call(
        "CreateAccount", economy_pb2.CreateAccountRequest(account_id="p6", initial_balance=10)
    )
    d = json_format.ParseDict(fan(1, budget=5, payerAccountId="p6"), W.WorkflowDefinition())
    req = W.CreateWorkflowRequest(definition=d, workflow_id="same-id")
    wfs = node.clients["workflow"]
    results = await asyncio.gather(
        *(wfs.call("CreateWorkflow", req) for _ in range(3)), return_exceptions=True
    )
    created = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, AlreadyExists)]
    assert len(created) == 1 and len(refused) == 2, results
    async for _ in wfs.stream("WatchWorkflow", W.WatchWorkflowRequest(workflow_id="same-id")):
        pass
    got = await wfs.call("GetWorkflow", W.GetWorkflowRequest(workflow_id="same-id"))
    assert got.workflow.state == W.WORKFLOW_STATE_SUCCEEDED, got.workflow.tasks[0].error
    acct = await economy.call("GetAccount", economy_pb2.GetAccountRequest(account_id="p6"))
    assert acct.account.balance == 10 - 1  # one escrow of 5: 1 spent, 4 refunded


async def test_a_missing_payout_account_is_opened_at_payment(node: Node, agents: Running) -> None:
    # The agent cannot reach an economy at start (nothing listens on port 9).
    agent_id = await agents.start(echo_agent("orphan", price=3), node, economy="127.0.0.1:9")
    from meshwright.mesh.errors import NotFound

    economy = node.clients["economy"]
    with pytest.raises(NotFound):
        await economy.call("GetAccount", economy_pb2.GetAccountRequest(account_id=agent_id))
    await fund(node, "p7", 10)
    wf = await run(node, fan(1, budget=10, payerAccountId="p7"))
    assert wf.state == W.WORKFLOW_STATE_SUCCEEDED
    got = await economy.call("GetAccount", economy_pb2.GetAccountRequest(account_id=agent_id))
    assert got.account.balance == 3
    # Opened by the mesh, owned by the agent: it can spend what it earned.
    assert got.account.owner == f"agent:{agent_id}"


def progress_agent() -> Agent:
    agent = Agent("reporter", capacity=4)

    @agent.skill("x.report")
    async def report(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        steps = int(input.get("steps", 4))
        pause = float(input.get("pause", 0.12))
        for i in range(1, steps + 1):
            await asyncio.sleep(pause)
            await ctx.progress(f"step {i} of {steps}", i / steps)
        return {"steps": steps}

    return agent


async def events_of(node: Node, data: dict[str, Any]) -> list[W.WorkflowEvent]:
    wfs = node.clients["workflow"]
    d = json_format.ParseDict(data, W.WorkflowDefinition())
    reply = await wfs.call("CreateWorkflow", W.CreateWorkflowRequest(definition=d))
    request = W.WatchWorkflowRequest(workflow_id=reply.workflow.workflow_id)
    return [r.event async for r in wfs.stream("WatchWorkflow", request)]


async def test_stream_progress_records_the_agents_reports(node: Node, agents: Running) -> None:
    await agents.start(progress_agent(), node)
    events = await events_of(
        node, {"tasks": [{"id": "r", "skill": "x.report", "streamProgress": True}]}
    )
    progress = [e for e in events if e.type == W.WORKFLOW_EVENT_TYPE_TASK_PROGRESS]
    assert [e.message for e in progress] == [f"step {i} of 4" for i in range(1, 5)]
    assert [e.progress for e in progress] == [0.25, 0.5, 0.75, 1.0]
    assert events[-1].type == W.WORKFLOW_EVENT_TYPE_WORKFLOW_SUCCEEDED
    succeeded = next(e for e in events if e.type == W.WORKFLOW_EVENT_TYPE_TASK_SUCCEEDED)
    assert succeeded.output["steps"] == 4
    assert max(e.sequence for e in progress) < succeeded.sequence


async def test_progress_is_throttled_and_off_by_default(node: Node, agents: Running) -> None:
    await agents.start(progress_agent(), node)
    chatty = {"steps": 200, "pause": 0.001}
    events = await events_of(
        node,
        {
            "tasks": [
                {"id": "loud", "skill": "x.report", "streamProgress": True, "input": chatty},
                {"id": "quiet", "skill": "x.report", "input": {"steps": 2, "pause": 0.01}},
            ]
        },
    )
    progress = [e for e in events if e.type == W.WORKFLOW_EVENT_TYPE_TASK_PROGRESS]
    assert {e.task_id for e in progress} == {"loud"}
    assert 1 <= len(progress) <= 10  # 200 reports in well under a second
    assert progress[-1].progress == 1.0  # the last report always gets through

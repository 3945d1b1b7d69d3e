"""The workflow service and the mesh's skill router with auth ON, over real gRPC.

Each attack of issue 6 on workflows is refused with its exact code and changes
nothing (workflow states, balances, escrows, what agents were asked to do), and
the owner's own call still works.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from meshwright.agent import Agent, TaskContext
from meshwright.agent.v1 import agent_pb2
from meshwright.workflow.v1 import workflow_pb2
from tests.conftest import eventually
from tests.workflow.conftest import Refused, Secure

W = workflow_pb2
A = agent_pb2
Code = grpc.StatusCode
ALICE, BOB = "client:alice", "client:bob"


def create(data: dict[str, Any], **kw: Any) -> W.CreateWorkflowRequest:
    return W.CreateWorkflowRequest(
        definition=json_format.ParseDict(data, W.WorkflowDefinition()), **kw
    )


class Gate:
    """A skill that runs until the test opens the gate, counting what it was asked to do."""

    def __init__(self, name: str, skill: str, *, price: int) -> None:
        self.calls = 0
        self.open = asyncio.Event()
        self.agent = Agent(name, capacity=8)

        @self.agent.skill(skill, price=price)
        async def run(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
            self.calls += 1
            await self.open.wait()
            return {"by": name}


async def running_workflow(secure: Secure, owner: str, gate: Gate) -> str:
    reply = await secure.workflows(owner).call(
        "CreateWorkflow", create({"tasks": [{"id": "a", "skill": "x.slow"}]})
    )
    wf_id: str = reply.workflow.workflow_id
    assert reply.workflow.owner == owner
    await eventually(lambda: gate.calls == 1)
    return wf_id


async def state_of(secure: Secure, wf_id: str) -> int:
    reply = await secure.workflows("admin:root").call(
        "GetWorkflow", W.GetWorkflowRequest(workflow_id=wf_id)
    )
    state: int = reply.workflow.state
    return state


async def test_others_cannot_cancel_read_or_watch_a_workflow(secure: Secure) -> None:
    gate = Gate("slow", "x.slow", price=0)
    await secure.start_agent(gate.agent, "agent-slow")
    wf_id = await running_workflow(secure, ALICE, gate)
    try:
        for who in (BOB, "agent:agent-slow"):
            with pytest.raises(Refused) as err:
                await secure.workflows(who).call(
                    "CancelWorkflow", W.CancelWorkflowRequest(workflow_id=wf_id, reason="mine")
                )
            assert (err.value.code, err.value.reason) == (Code.PERMISSION_DENIED, "NOT_OWNER")
            with pytest.raises(Refused) as err:
                await secure.workflows(who).call(
                    "GetWorkflow", W.GetWorkflowRequest(workflow_id=wf_id)
                )
            assert err.value.code == Code.PERMISSION_DENIED
            with pytest.raises(Refused) as err:
                await secure.workflows(who).stream(
                    "WatchWorkflow", W.WatchWorkflowRequest(workflow_id=wf_id)
                )
            assert err.value.code == Code.PERMISSION_DENIED
        assert await state_of(secure, wf_id) == W.WORKFLOW_STATE_RUNNING
        assert gate.calls == 1
        # The owner reads it; an unknown id is refused like a foreign one (no probing).
        mine = await secure.workflows(ALICE).call(
            "GetWorkflow", W.GetWorkflowRequest(workflow_id=wf_id)
        )
        assert mine.workflow.state == W.WORKFLOW_STATE_RUNNING
        with pytest.raises(Refused) as err:
            await secure.workflows(BOB).call(
                "GetWorkflow", W.GetWorkflowRequest(workflow_id="wf-nobody")
            )
        assert err.value.code == Code.PERMISSION_DENIED
        # ...and cancels it.
        done = await secure.workflows(ALICE).call(
            "CancelWorkflow", W.CancelWorkflowRequest(workflow_id=wf_id)
        )
        assert done.workflow.state == W.WORKFLOW_STATE_CANCELLED
    finally:
        gate.open.set()


async def test_list_shows_only_the_callers_own_workflows_page_by_page(secure: Secure) -> None:
    gate = Gate("free", "x.slow", price=0)
    gate.open.set()
    await secure.start_agent(gate.agent, "agent-free")
    owners = [ALICE, BOB, ALICE, "agent:agent-free", ALICE, BOB, ALICE]
    made: dict[str, list[str]] = {}
    for owner in owners:
        reply = await secure.workflows(owner).call(
            "CreateWorkflow", create({"tasks": [{"id": "a", "skill": "x.slow"}]})
        )
        made.setdefault(owner, []).append(reply.workflow.workflow_id)

    async def pages(who: str, size: int) -> list[list[str]]:
        out, token = [], ""
        while True:
            reply = await secure.workflows(who).call(
                "ListWorkflows", W.ListWorkflowsRequest(page_size=size, page_token=token)
            )
            out.append([w.workflow_id for w in reply.workflows])
            token = reply.next_page_token
            if not token:
                return out

    newest_first = {who: list(reversed(ids)) for who, ids in made.items()}
    a = newest_first[ALICE]
    # Full pages while more of the caller's exist: the filter runs in the store.
    assert await pages(ALICE, 3) == [a[:3], a[3:]]
    assert await pages(BOB, 1) == [[newest_first[BOB][0]], [newest_first[BOB][1]]]
    assert await pages("agent:agent-free", 10) == [newest_first["agent:agent-free"]]
    assert await pages("client:carol", 10) == [[]]
    everyone = await pages("admin:root", 100)
    assert sorted(everyone[0]) == sorted(i for ids in made.values() for i in ids)


async def test_paying_from_someone_elses_account_is_refused_and_opens_no_escrow(
    secure: Secure,
) -> None:
    gate = Gate("paid", "x.slow", price=3)
    gate.open.set()
    await secure.start_agent(gate.agent, "agent-paid")
    await secure.account("bob-acct", BOB, 100)
    await secure.account("alice-acct", ALICE, 100)
    definition = {
        "budget": 10,
        "payerAccountId": "bob-acct",
        "tasks": [{"id": "a", "skill": "x.slow"}],
    }
    with pytest.raises(Refused) as err:
        await secure.workflows(ALICE).call("CreateWorkflow", create(definition))
    assert (err.value.code, err.value.reason) == (Code.PERMISSION_DENIED, "NOT_OWNER")
    assert err.value.metadata["field"] == "definition.payer_account_id"

    # A template stored by alice naming bob's account, directly or through a parameter:
    # the payer is not in the request, the engine checks the expanded one itself.
    await secure.workflows(ALICE).call(
        "CreateTemplate",
        W.CreateTemplateRequest(
            template=json_format.ParseDict(
                {
                    "name": "bobpays",
                    "definition": definition,
                },
                W.Template(),
            )
        ),
    )
    await secure.workflows(ALICE).call(
        "CreateTemplate",
        W.CreateTemplateRequest(
            template=json_format.ParseDict(
                {
                    "name": "payer-param",
                    "parameters": [{"name": "payer", "required": True}],
                    "definition": {**definition, "payerAccountId": "${payer}"},
                },
                W.Template(),
            )
        ),
    )
    attempts = [
        W.CreateWorkflowRequest(template=W.TemplateInvocation(template_name="bobpays")),
        W.CreateWorkflowRequest(
            template=W.TemplateInvocation(
                template_name="payer-param", parameters={"payer": "bob-acct"}
            )
        ),
        W.CreateWorkflowRequest(
            template=W.TemplateInvocation(
                template_name="payer-param", parameters={"payer": "no-such-acct"}
            )
        ),
        W.CreateWorkflowRequest(
            template=W.TemplateInvocation(template_name="bobpays", payer_account_id="bob-acct")
        ),
    ]
    for request in attempts:
        with pytest.raises(Refused) as err:
            await secure.workflows(ALICE).call("CreateWorkflow", request)
        assert (err.value.code, err.value.reason) == (Code.PERMISSION_DENIED, "NOT_OWNER")
    assert await secure.balance("bob-acct") == (100, 0)
    assert await secure.all_workflow_ids() == []
    assert gate.calls == 0

    # Alice's own account through the same template works, and pays the agent.
    reply = await secure.workflows(ALICE).call(
        "CreateWorkflow",
        W.CreateWorkflowRequest(
            template=W.TemplateInvocation(
                template_name="payer-param", parameters={"payer": "alice-acct"}
            )
        ),
    )
    wf_id = reply.workflow.workflow_id
    await eventually(lambda: _succeeded(secure, wf_id))
    assert await secure.balance("alice-acct") == (97, 0)
    assert await secure.balance("bob-acct") == (100, 0)


async def _succeeded(secure: Secure, wf_id: str) -> bool:
    return await state_of(secure, wf_id) == W.WORKFLOW_STATE_SUCCEEDED


async def test_the_router_runs_paid_skills_only_for_the_mesh_and_admins(secure: Secure) -> None:
    paid = Gate("paid", "x.paid", price=5)
    paid.open.set()
    free = Gate("free", "x.free", price=0)
    free.open.set()
    await secure.start_agent(paid.agent, "agent-paid")
    await secure.start_agent(free.agent, "agent-free")
    for who in (ALICE, "agent:agent-free"):
        for method in ("ExecuteTask", "StreamTask"):
            with pytest.raises(Refused) as err:
                request: Any = (
                    A.ExecuteTaskRequest if method == "ExecuteTask" else A.StreamTaskRequest
                )(task_id=f"t-{who}-{method}", skill="x.paid")
                if method == "ExecuteTask":
                    await secure.mesh_agent(who).call(method, request)
                else:
                    await secure.mesh_agent(who).stream(method, request)
            assert (err.value.code, err.value.reason) == (
                Code.FAILED_PRECONDITION,
                "PAID_SKILL_NEEDS_WORKFLOW",
            )
    assert paid.calls == 0  # the agent was never asked

    reply = await secure.mesh_agent(ALICE).call(
        "ExecuteTask", A.ExecuteTaskRequest(task_id="t-free", skill="x.free")
    )
    assert reply.task.status.state == A.TASK_STATE_COMPLETED and free.calls == 1
    reply = await secure.mesh_agent("admin:root").call(
        "ExecuteTask", A.ExecuteTaskRequest(task_id="t-admin", skill="x.paid")
    )
    assert reply.task.status.state == A.TASK_STATE_COMPLETED and paid.calls == 1


async def test_the_router_prefers_free_agents_for_clients(secure: Secure) -> None:
    paid = Gate("paid", "x.echo", price=5)
    free = Gate("free", "x.echo", price=0)
    paid.open.set()
    free.open.set()
    await secure.start_agent(paid.agent, "agent-paid")
    await secure.start_agent(free.agent, "agent-free")
    for i in range(4):
        reply = await secure.mesh_agent(ALICE).call(
            "ExecuteTask", A.ExecuteTaskRequest(task_id=f"t{i}", skill="x.echo")
        )
        assert reply.task.output["by"] == "free"
    assert (paid.calls, free.calls) == (0, 4)


async def test_only_who_routed_a_task_cancels_it(secure: Secure) -> None:
    gate = Gate("free", "x.slow", price=0)
    await secure.start_agent(gate.agent, "agent-free")
    call = asyncio.create_task(
        secure.mesh_agent(ALICE).call(
            "ExecuteTask", A.ExecuteTaskRequest(task_id="alices", skill="x.slow")
        )
    )
    try:
        await eventually(lambda: gate.calls == 1)
        with pytest.raises(Refused) as err:
            await secure.mesh_agent(BOB).call("CancelTask", A.CancelTaskRequest(task_id="alices"))
        assert (err.value.code, err.value.reason) == (Code.PERMISSION_DENIED, "NOT_OWNER")
        with pytest.raises(Refused) as err:
            await secure.mesh_agent(BOB).call("CancelTask", A.CancelTaskRequest(task_id="nope"))
        assert err.value.code == Code.NOT_FOUND
        assert not call.done()
        reply = await secure.mesh_agent(ALICE).call(
            "CancelTask", A.CancelTaskRequest(task_id="alices")
        )
        assert reply.task.task_id == "alices"
        result = await asyncio.wait_for(call, 10)
        assert result.task.status.state == A.TASK_STATE_CANCELED
    finally:
        gate.open.set()
        if not call.done():
            call.cancel()


async def test_routed_task_ids_are_the_callers_own_on_the_agent(secure: Secure) -> None:
    """Agents replay a finished task id's result: through the router, each caller's ids live
    under its principal, so Bob sending Alice's exact request runs it anew, and is never
    answered with Alice's result."""
    seen: list[str] = []
    agent = Agent("ids", capacity=4)

    @agent.skill("x.ids", price=0)
    async def ids(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        seen.append(ctx.task_id)
        return {"for": ctx.task_id}

    await secure.start_agent(agent, "agent-ids")
    request = A.ExecuteTaskRequest(task_id="same", skill="x.ids")
    alice = await secure.mesh_agent(ALICE).call("ExecuteTask", request)
    bob = await secure.mesh_agent(BOB).call("ExecuteTask", request)
    again = await secure.mesh_agent(ALICE).call("ExecuteTask", request)
    assert seen == [f"routed/{ALICE}/same", f"routed/{BOB}/same"]  # Alice's again: replayed
    assert alice.task.task_id == bob.task.task_id == again.task.task_id == "same"
    assert alice.task.output["for"] == again.task.output["for"] == f"routed/{ALICE}/same"
    assert bob.task.output["for"] == f"routed/{BOB}/same"
    streamed = await secure.mesh_agent(BOB).stream(
        "StreamTask", A.StreamTaskRequest(task_id="s1", skill="x.ids")
    )
    assert streamed[-1].final and streamed[-1].task.task_id == "s1"
    assert seen[-1] == f"routed/{BOB}/s1"

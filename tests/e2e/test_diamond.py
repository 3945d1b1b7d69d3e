"""End to end over gRPC: a diamond DAG on two real agent processes, paid from escrow."""

from __future__ import annotations

import pytest
from google.protobuf import json_format

from meshwright.economy.v1 import economy_pb2
from meshwright.mesh.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from meshwright.workflow.v1 import workflow_pb2
from tests.e2e.conftest import Mesh

pytestmark = pytest.mark.asyncio(loop_scope="module")
W = workflow_pb2

DIAMOND = {
    "name": "diamond",
    "budget": 50,
    "payerAccountId": "payer-diamond",
    "tasks": [
        {"id": "A", "skill": "system.snapshot"},
        {"id": "B", "skill": "metrics.load", "dependsOn": ["A"]},
        {"id": "C", "skill": "metrics.memory", "dependsOn": ["A"], "input": {"busy_at": 1}},
        {"id": "D", "skill": "report.compose", "dependsOn": ["B", "C"]},
    ],
}


def definition(data: dict) -> W.WorkflowDefinition:  # type: ignore[type-arg]
    return json_format.ParseDict(data, W.WorkflowDefinition())


async def test_diamond_runs_in_order_pays_agents_and_refunds(mesh: Mesh) -> None:
    await mesh.fund("payer-diamond", 100)
    sysinfo, analyst = mesh.agent_ids["sysinfo"], mesh.agent_ids["analyst"]
    before = {a: await mesh.balance(a) for a in (sysinfo, analyst)}

    reply = await mesh.workflows.call(
        "CreateWorkflow", W.CreateWorkflowRequest(definition=definition(DIAMOND))
    )
    wf_id = reply.workflow.workflow_id
    assert reply.workflow.state == W.WORKFLOW_STATE_RUNNING
    events = await mesh.events(wf_id)

    # Complete and ordered: sequences 1..n without gaps, created first, success last.
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[0].type == W.WORKFLOW_EVENT_TYPE_WORKFLOW_CREATED
    assert events[-1].type == W.WORKFLOW_EVENT_TYPE_WORKFLOW_SUCCEEDED
    pos = {(e.type, e.task_id): e.sequence for e in events}
    started = W.WORKFLOW_EVENT_TYPE_TASK_STARTED
    done = W.WORKFLOW_EVENT_TYPE_TASK_SUCCEEDED
    for task in "ABCD":
        assert pos[(started, task)] < pos[(done, task)]
    for parent, child in [("A", "B"), ("A", "C"), ("B", "D"), ("C", "D")]:
        assert pos[(done, parent)] < pos[(started, child)]
    assert sum(1 for e in events if e.type == done) == 4

    # Outputs flowed along the edges: B and C judged A's snapshot, D merged B and C.
    wf = await mesh.workflow(wf_id)
    out = {t.task_id: json_format.MessageToDict(t.output) for t in wf.tasks}
    snap = out["A"]
    assert out["B"]["hosts"][0]["load_1m"] == snap["load"]["1m"]
    assert out["B"]["hosts"][0]["cpu_count"] == snap["cpu_count"]
    mem = snap["memory"]
    expected_used = round(
        100 * (mem["total_bytes"] - mem["available_bytes"]) / mem["total_bytes"], 2
    )
    assert out["C"]["used_percent"] == pytest.approx(expected_used)
    assert out["C"]["thresholds"]["busy_at"] == 1  # the task's own input reached the agent
    assert out["B"]["verdict"] in out["D"]["markdown"]
    assert f"{expected_used}" in out["D"]["markdown"] or "memory" in out["D"]["markdown"]

    # Each agent was paid its price; the escrow returned the rest.
    assert {t.task_id: t.agent_id for t in wf.tasks} == {
        "A": sysinfo,
        "B": analyst,
        "C": analyst,
        "D": analyst,
    }
    assert [t.cost for t in wf.tasks] == [3, 2, 2, 5]
    assert wf.spent == 12
    assert await mesh.balance(sysinfo) - before[sysinfo] == 3
    assert await mesh.balance(analyst) - before[analyst] == 9
    assert await mesh.balance("payer-diamond") == 100 - 12
    assert events[-1].amount == 50 - 12
    page = await mesh.economy.call(
        "ListTransactions", economy_pb2.ListTransactionsRequest(account_id="payer-diamond")
    )
    kinds = [t.kind for t in page.transactions]
    assert kinds.count(economy_pb2.TRANSACTION_KIND_ESCROW_OPEN) == 1
    assert kinds.count(economy_pb2.TRANSACTION_KIND_ESCROW_RELEASE) == 1

    # Resuming a watch after a sequence sends exactly the rest.
    rest = await mesh.events(wf_id, after=5)
    assert [e.sequence for e in rest] == [e.sequence for e in events[5:]]
    assert await mesh.events(wf_id, after=len(events)) == []


async def test_invalid_definitions_name_every_field_and_create_nothing(mesh: Mesh) -> None:
    await mesh.fund("payer-invalid", 100)
    before = await mesh.workflows.call("ListWorkflows", W.ListWorkflowsRequest(page_size=1000))
    bad = definition(
        {
            "budget": 10,
            "payerAccountId": "payer-invalid",
            "tasks": [
                {"id": "a", "skill": "system.snapshot"},
                {"id": "a", "skill": "system.snapshot"},
                {"id": "b", "skill": "system.snapshot", "dependsOn": ["nope"]},
            ],
        }
    )
    with pytest.raises(InvalidArgument) as err:
        await mesh.workflows.call("CreateWorkflow", W.CreateWorkflowRequest(definition=bad))
    assert [v.field for v in err.value.violations] == [
        "definition.tasks[1].id",
        "definition.tasks[2].depends_on[0]",
    ]
    cycle = definition(
        {
            "tasks": [
                {"id": "x", "skill": "text.upper", "dependsOn": ["z"]},
                {"id": "y", "skill": "text.upper", "dependsOn": ["x"]},
                {"id": "z", "skill": "text.upper", "dependsOn": ["y"]},
            ]
        }
    )
    with pytest.raises(InvalidArgument) as err:
        await mesh.workflows.call("CreateWorkflow", W.CreateWorkflowRequest(definition=cycle))
    (violation,) = err.value.violations
    assert violation.field == "definition.tasks[0].depends_on"
    assert "x -> z -> y -> x" in violation.description
    unknown = definition({"tasks": [{"id": "x", "skill": "no.such.skill"}]})
    with pytest.raises(InvalidArgument) as err:
        await mesh.workflows.call("CreateWorkflow", W.CreateWorkflowRequest(definition=unknown))
    assert [v.field for v in err.value.violations] == ["definition.tasks[0].skill"]

    broke = definition({**DIAMOND, "payerAccountId": "payer-invalid", "budget": 1000})
    with pytest.raises(FailedPrecondition) as funds:
        await mesh.workflows.call("CreateWorkflow", W.CreateWorkflowRequest(definition=broke))
    assert funds.value.reason == "INSUFFICIENT_FUNDS"
    missing = definition({**DIAMOND, "payerAccountId": "nobody"})
    with pytest.raises(NotFound):
        await mesh.workflows.call("CreateWorkflow", W.CreateWorkflowRequest(definition=missing))

    after = await mesh.workflows.call("ListWorkflows", W.ListWorkflowsRequest(page_size=1000))
    assert len(after.workflows) == len(before.workflows)
    assert await mesh.balance("payer-invalid") == 100


async def test_failed_attempts_are_retried_then_succeed(mesh: Mesh) -> None:
    d = definition(
        {
            "tasks": [
                {
                    "id": "flaky",
                    "skill": "demo.fail",
                    "input": {"key": "e2e-retry", "fail_times": 2},
                    "retry": {"maxAttempts": 3, "initialBackoff": "0.01s"},
                }
            ]
        }
    )
    reply = await mesh.workflows.call("CreateWorkflow", W.CreateWorkflowRequest(definition=d))
    events = await mesh.events(reply.workflow.workflow_id)
    types = [W.WorkflowEventType.Name(e.type) for e in events]
    assert types.count("WORKFLOW_EVENT_TYPE_TASK_RETRYING") == 2
    assert types[-1] == "WORKFLOW_EVENT_TYPE_WORKFLOW_SUCCEEDED"
    wf = await mesh.workflow(reply.workflow.workflow_id)
    assert wf.tasks[0].attempts == 3
    assert wf.tasks[0].output["attempts"] == 3


async def test_a_task_out_of_retries_fails_the_workflow_and_refunds(mesh: Mesh) -> None:
    await mesh.fund("payer-fail", 40)
    d = definition(
        {
            "budget": 40,
            "payerAccountId": "payer-fail",
            "tasks": [
                {"id": "snap", "skill": "system.snapshot"},
                {
                    "id": "bad",
                    "skill": "demo.fail",
                    "dependsOn": ["snap"],
                    "input": {"key": "e2e-fail", "fail_times": 10},
                    "retry": {"maxAttempts": 2, "initialBackoff": "0.01s"},
                },
                {"id": "after", "skill": "text.upper", "dependsOn": ["bad"]},
            ],
        }
    )
    reply = await mesh.workflows.call("CreateWorkflow", W.CreateWorkflowRequest(definition=d))
    events = await mesh.events(reply.workflow.workflow_id)
    assert events[-1].type == W.WORKFLOW_EVENT_TYPE_WORKFLOW_FAILED
    assert events[-1].amount == 40 - 3
    wf = await mesh.workflow(reply.workflow.workflow_id)
    states = {t.task_id: W.TaskRunState.Name(t.state) for t in wf.tasks}
    assert states == {
        "snap": "TASK_RUN_STATE_SUCCEEDED",
        "bad": "TASK_RUN_STATE_FAILED",
        "after": "TASK_RUN_STATE_SKIPPED",
    }
    assert "planned failure 2 of 10" in wf.tasks[1].error
    assert await mesh.balance("payer-fail") == 40 - 3


async def test_cancel_stops_running_tasks_and_refunds(mesh: Mesh) -> None:
    await mesh.fund("payer-cancel", 20)
    d = definition(
        {
            "budget": 20,
            "payerAccountId": "payer-cancel",
            "tasks": [
                {"id": "long", "skill": "demo.sleep", "input": {"seconds": 20}},
                {"id": "next", "skill": "text.upper", "dependsOn": ["long"]},
            ],
        }
    )
    reply = await mesh.workflows.call("CreateWorkflow", W.CreateWorkflowRequest(definition=d))
    wf_id = reply.workflow.workflow_id

    async def running() -> bool:
        wf = await mesh.workflow(wf_id)
        return wf.tasks[0].state == W.TASK_RUN_STATE_RUNNING

    from tests.conftest import eventually

    await eventually(running)
    cancelled = await mesh.workflows.call(
        "CancelWorkflow", W.CancelWorkflowRequest(workflow_id=wf_id, reason="test says stop")
    )
    wf = cancelled.workflow
    assert wf.state == W.WORKFLOW_STATE_CANCELLED
    assert [W.TaskRunState.Name(t.state) for t in wf.tasks] == [
        "TASK_RUN_STATE_CANCELLED",
        "TASK_RUN_STATE_SKIPPED",
    ]
    events = await mesh.events(wf_id)
    assert events[-1].type == W.WORKFLOW_EVENT_TYPE_WORKFLOW_CANCELLED
    assert events[-1].message == "test says stop"
    assert await mesh.balance("payer-cancel") == 20
    # The agent got the cancel too: its load drops back to zero well before 20 s.
    from meshwright.registry.v1 import registry_pb2

    analyst = mesh.agent_ids["analyst"]

    async def idle() -> bool:
        reply = await mesh.registry.call("GetAgent", registry_pb2.GetAgentRequest(agent_id=analyst))
        return reply.agent.load == 0

    await eventually(idle, timeout=8)
    again = await mesh.workflows.call("CancelWorkflow", W.CancelWorkflowRequest(workflow_id=wf_id))
    assert again.workflow.state == W.WORKFLOW_STATE_CANCELLED


async def test_request_id_replays_the_first_workflow(mesh: Mesh) -> None:
    d = definition({"tasks": [{"id": "u", "skill": "demo.sleep", "input": {"seconds": 0}}]})
    req = W.CreateWorkflowRequest(definition=d, request_id="e2e-idem-1")
    first = await mesh.workflows.call("CreateWorkflow", req)
    second = await mesh.workflows.call("CreateWorkflow", req)
    assert first.workflow.workflow_id == second.workflow.workflow_id
    await mesh.events(first.workflow.workflow_id)
    third = await mesh.workflows.call("CreateWorkflow", req)
    assert third.workflow.workflow_id == first.workflow.workflow_id
    assert third.workflow.state == W.WORKFLOW_STATE_SUCCEEDED


async def test_templates_expand_parameters(mesh: Mesh) -> None:
    await mesh.fund("payer-template", 10)
    template = json_format.ParseDict(
        {
            "name": "shout",
            "parameters": [{"name": "words", "required": True}],
            "definition": {
                "budget": 5,
                "payerAccountId": "payer-template",
                "tasks": [{"id": "up", "skill": "text.upper", "input": {"text": "say ${words}"}}],
            },
        },
        W.Template(),
    )
    first = await mesh.workflows.call("CreateTemplate", W.CreateTemplateRequest(template=template))
    again = await mesh.workflows.call("CreateTemplate", W.CreateTemplateRequest(template=template))
    assert again.template == first.template  # a retry returns what the first call stored
    other = W.Template()
    other.CopyFrom(template)
    other.description = "something else"
    with pytest.raises(AlreadyExists):
        await mesh.workflows.call("CreateTemplate", W.CreateTemplateRequest(template=other))
    listed = await mesh.workflows.call("ListTemplates", W.ListTemplatesRequest())
    assert "shout" in [t.name for t in listed.templates]
    reply = await mesh.workflows.call(
        "CreateWorkflow",
        W.CreateWorkflowRequest(
            template=W.TemplateInvocation(template_name="shout", parameters={"words": "hello"})
        ),
    )
    await mesh.events(reply.workflow.workflow_id)
    wf = await mesh.workflow(reply.workflow.workflow_id)
    assert wf.template_name == "shout"
    assert wf.state == W.WORKFLOW_STATE_SUCCEEDED, (wf.error, wf.tasks[0].error)
    assert wf.tasks[0].output["text"] == "SAY HELLO"
    with pytest.raises(InvalidArgument) as err:
        await mesh.workflows.call(
            "CreateWorkflow",
            W.CreateWorkflowRequest(template=W.TemplateInvocation(template_name="shout")),
        )
    assert [v.field for v in err.value.violations] == ["template.parameters[words]"]
    with pytest.raises(NotFound):
        await mesh.workflows.call(
            "CreateWorkflow",
            W.CreateWorkflowRequest(template=W.TemplateInvocation(template_name="nope")),
        )

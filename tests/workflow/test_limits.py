"""Hard limits on workflow input and output, auth ON, over real gRPC and the REST gateway.

Each limit is shown refusing with its exact code and creating nothing, and the
reads everyone depends on (ListWorkflows, GetWorkflow, over gRPC and REST)
keep working afterwards.
"""

from __future__ import annotations

import math
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf import json_format, struct_pb2

from meshwright.agent import Agent, TaskContext
from meshwright.workflow._dag import MAX_NAME_CHARS
from meshwright.workflow.engine import MAX_PAGE_BYTES
from meshwright.workflow.run import MAX_WORKFLOW_BYTES
from meshwright.workflow.scheduler import MAX_OUTPUT_BYTES
from meshwright.workflow.v1 import workflow_pb2
from tests.conftest import eventually
from tests.workflow.conftest import Refused, Secure

W = workflow_pb2
Code = grpc.StatusCode
ALICE = "client:alice"
MiB = 1024 * 1024


def create(data: dict[str, Any], **kw: Any) -> W.CreateWorkflowRequest:
    return W.CreateWorkflowRequest(
        definition=json_format.ParseDict(data, W.WorkflowDefinition()), **kw
    )


def blob(size: int) -> str:
    return "x" * size


async def echo_agent(secure: Secure) -> None:
    agent = Agent("echo")

    @agent.skill("x.echo", price=0)
    async def echo(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return {"ok": True}

    await secure.start_agent(agent, "agent-echo")


async def reads_work(secure: Secure) -> list[str]:
    """Every read still answers, for the owner and for admins, over gRPC and REST."""
    ids = await secure.all_workflow_ids()
    for wf_id in ids:
        await secure.workflows("admin:root").call(
            "GetWorkflow", W.GetWorkflowRequest(workflow_id=wf_id)
        )
    await secure.workflows(ALICE).call("ListWorkflows", W.ListWorkflowsRequest())
    async with httpx.AsyncClient(base_url=secure.node.http_url or "", timeout=30) as http:
        for who in (ALICE, "admin:root"):
            reply = await http.get(
                "/v1/workflows", headers={"authorization": f"Bearer {secure.token(who)}"}
            )
            assert reply.status_code == 200, reply.text
    return ids


async def rest_create(secure: Secure, body: bytes, who: str = ALICE) -> httpx.Response:
    async with httpx.AsyncClient(base_url=secure.node.http_url or "", timeout=30) as http:
        return await http.post(
            "/v1/workflows",
            content=body,
            headers={
                "authorization": f"Bearer {secure.token(who)}",
                "content-type": "application/json",
            },
        )


async def refused(secure: Secure, request: W.CreateWorkflowRequest) -> Refused:
    with pytest.raises(Refused) as err:
        await secure.workflows(ALICE).call("CreateWorkflow", request)
    return err.value


async def test_non_finite_numbers_in_task_input_are_refused_everywhere(secure: Secure) -> None:
    await echo_agent(secure)
    for literal in ("1e400", "-1e400", "NaN", "Infinity", "-Infinity"):
        body = '{"definition": {"tasks": [{"id": "a", "skill": "x.echo", "input": {"n": %s}}]}}'
        reply = await rest_create(secure, (body % literal).encode())
        assert reply.status_code == 400, (literal, reply.status_code, reply.text)
    for number in (math.nan, math.inf, -math.inf):
        task = W.TaskSpec(id="a", skill="x.echo")
        task.input["n"] = number
        nested = struct_pb2.Struct()
        nested["deep"] = [1, {"n": number}]
        task.input["list"] = nested
        err = await refused(
            secure, W.CreateWorkflowRequest(definition=W.WorkflowDefinition(tasks=[task]))
        )
        assert err.code == Code.INVALID_ARGUMENT
        assert sorted(err.fields) == [
            "definition.tasks[0].input.list.deep[1].n",
            "definition.tasks[0].input.n",
        ]
    assert await reads_work(secure) == []  # nothing half-created
    # The same request with a finite number is fine (so only the number was refused).
    reply = await rest_create(
        secure,
        b'{"definition": {"tasks": [{"id": "a", "skill": "x.echo", "input": {"n": 1e300}}]}}',
    )
    assert reply.status_code == 200, reply.text
    assert len(await reads_work(secure)) == 1


async def test_error_details_always_fit_as_invalid_argument(secure: Secure) -> None:
    # ~200 violations whose texts would be large and non-ASCII if quoted in full.
    many = [W.TaskSpec(id=f"t{i}", skill="s", depends_on=["é" * 2000]) for i in range(200)]
    err = await refused(
        secure, W.CreateWorkflowRequest(definition=W.WorkflowDefinition(tasks=many))
    )
    assert (err.code, err.reason) == (Code.INVALID_ARGUMENT, "INVALID_ARGUMENT")
    assert len(err.fields) == 20 and err.metadata["violation_count"] == "200"
    bad_ids = [W.TaskSpec(id="é" * 2000, skill="") for _ in range(200)]
    err = await refused(
        secure, W.CreateWorkflowRequest(definition=W.WorkflowDefinition(tasks=bad_ids))
    )
    assert err.code == Code.INVALID_ARGUMENT and err.metadata["violation_count"] == "400"

    # A cycle through 300 tasks with the longest ids allowed: the path is abbreviated.
    ids = [f"{i:03d}-" + "c" * 123 for i in range(300)]
    ring = [W.TaskSpec(id=t, skill="s", depends_on=[ids[(i + 1) % 300]]) for i, t in enumerate(ids)]
    with pytest.raises(Refused) as caught:
        await secure.workflows(ALICE).call(
            "CreateWorkflow", W.CreateWorkflowRequest(definition=W.WorkflowDefinition(tasks=ring))
        )
    assert caught.value.code == Code.INVALID_ARGUMENT
    assert caught.value.fields == ["definition.tasks[0].depends_on"]
    assert await secure.all_workflow_ids() == []


async def test_workflow_names_are_bounded(secure: Secure) -> None:
    await echo_agent(secure)
    tasks = [{"id": "a", "skill": "x.echo"}]
    err = await refused(secure, create({"name": "n" * (MAX_NAME_CHARS + 1), "tasks": tasks}))
    assert (err.code, err.fields) == (Code.INVALID_ARGUMENT, ["definition.name"])
    err = await refused(secure, create({"name": "n" * MiB, "tasks": tasks}))
    assert (err.code, err.fields) == (Code.INVALID_ARGUMENT, ["definition.name"])
    reply = await rest_create(
        secure,
        b'{"definition": {"name": "%s", "tasks": [{"id": "a", "skill": "x.echo"}]}}' % (b"n" * MiB),
    )
    assert reply.status_code == 400
    assert await reads_work(secure) == []
    reply = await secure.workflows(ALICE).call(
        "CreateWorkflow", create({"name": "n" * MAX_NAME_CHARS, "tasks": tasks})
    )
    assert reply.workflow.name == "n" * MAX_NAME_CHARS


async def test_huge_task_inputs_are_refused(secure: Secure) -> None:
    await echo_agent(secure)
    nine = {"tasks": [{"id": "a", "skill": "x.echo", "input": {"big": blob(9 * MiB)}}]}
    with pytest.raises(Refused) as err:
        await secure.workflows(ALICE).call("CreateWorkflow", create(nine), timeout=30)
    # Above the 8 MiB message bound: gRPC itself refuses it before any handler runs.
    assert err.value.code == Code.RESOURCE_EXHAUSTED
    reply = await rest_create(secure, json_format.MessageToJson(create(nine)).encode())
    assert reply.status_code == 413
    # Under the message bound, over one Struct's 1 MiB: the pipeline refuses it.
    one_and_half = {"tasks": [{"id": "a", "skill": "x.echo", "input": {"big": blob(3 * MiB // 2)}}]}
    err2 = await refused(secure, create(one_and_half))
    assert (err2.code, err2.fields) == (Code.INVALID_ARGUMENT, ["definition.tasks[0].input"])
    # Each input under 1 MiB, the definition over 1 MiB: the workflow domain refuses it.
    two = {
        "tasks": [
            {"id": t, "skill": "x.echo", "input": {"big": blob(600 * 1024)}} for t in ("a", "b")
        ]
    }
    err2 = await refused(secure, create(two))
    assert (err2.code, err2.fields) == (Code.INVALID_ARGUMENT, ["definition"])
    assert await reads_work(secure) == []


async def test_list_pages_are_capped_by_bytes_and_hold_at_least_one(secure: Secure) -> None:
    agent = Agent("bulky")

    @agent.skill("x.bulky", price=0)
    async def bulky(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return {"out": blob(int(input["size"]))}

    await secure.start_agent(agent, "agent-bulky")
    made = []
    for _ in range(3):  # ~0.9 MiB each, in their definition
        spec = {"id": "a", "skill": "x.bulky", "input": {"size": 1, "pad": blob(900 * 1024)}}
        reply = await secure.workflows(ALICE).call("CreateWorkflow", create({"tasks": [spec]}))
        made.append(reply.workflow.workflow_id)
    # One workflow larger than a whole page by itself (three ~0.9 MiB outputs).
    big = {"tasks": [{"id": t, "skill": "x.bulky", "input": {"size": 900 * 1024}} for t in "abc"]}
    reply = await secure.workflows(ALICE).call("CreateWorkflow", create(big))
    made.append(reply.workflow.workflow_id)

    async def all_done() -> bool:
        for wf_id in made:
            got = await secure.workflows(ALICE).call(
                "GetWorkflow", W.GetWorkflowRequest(workflow_id=wf_id)
            )
            if got.workflow.state != W.WORKFLOW_STATE_SUCCEEDED:
                return False
        return True

    await eventually(all_done, timeout=20)
    pages, token = [], ""
    while True:
        page = await secure.workflows(ALICE).call(
            "ListWorkflows", W.ListWorkflowsRequest(page_size=50, page_token=token)
        )
        # Bounded by bytes; only a page of one workflow may be larger.
        assert len(page.workflows) == 1 or page.ByteSize() <= MAX_PAGE_BYTES
        pages.append([w.workflow_id for w in page.workflows])
        token = page.next_page_token
        if not token:
            break
    assert pages == [[made[3]], [made[2], made[1]], [made[0]]]


async def test_outputs_that_cannot_be_stored_fail_their_task_unpaid(secure: Secure) -> None:
    agent = Agent("liar")
    calls: list[str] = []

    @agent.skill("x.out", price=2)
    async def out(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        calls.append(str(input["kind"]))
        if input["kind"] == "huge":
            return {"out": blob(MAX_OUTPUT_BYTES + 1)}
        if input["kind"] == "nan":
            return {"n": math.nan}
        return {"out": blob(int(input["size"]))}

    await secure.start_agent(agent, "agent-liar")
    await secure.account("alice-acct", ALICE, 100)
    for kind, why in (("huge", "more than the"), ("nan", "finite number")):
        spec = {"id": "a", "skill": "x.out", "input": {"kind": kind}}
        reply = await secure.workflows(ALICE).call(
            "CreateWorkflow",
            create({"budget": 10, "payerAccountId": "alice-acct", "tasks": [spec]}),
        )
        wf_id = reply.workflow.workflow_id
        wf = await _finished(secure, wf_id)
        assert wf.state == W.WORKFLOW_STATE_FAILED
        assert wf.tasks[0].attempts == 1 and "output refused" in wf.tasks[0].error, wf.tasks[0]
        assert why in wf.tasks[0].error and not wf.tasks[0].HasField("output")
    assert calls == ["huge", "nan"]  # no retries: the same output would be refused again
    assert await secure.balance("alice-acct") == (100, 0)  # nothing paid, escrow released

    # Eight outputs just under 1 MiB each: more than a stored workflow may hold.
    size = MAX_OUTPUT_BYTES - 1024
    specs = [
        {"id": f"t{i}", "skill": "x.out", "input": {"kind": "ok", "size": size}} for i in range(8)
    ]
    reply = await secure.workflows(ALICE).call(
        "CreateWorkflow", create({"budget": 16, "payerAccountId": "alice-acct", "tasks": specs})
    )
    wf = await _finished(secure, reply.workflow.workflow_id)
    stored = [t for t in wf.tasks if t.HasField("output")]
    assert wf.state == W.WORKFLOW_STATE_FAILED
    assert 0 < len(stored) < 8 and wf.ByteSize() <= MAX_WORKFLOW_BYTES
    assert any("may still store" in t.error for t in wf.tasks)
    assert await secure.balance("alice-acct") == (100 - 2 * len(stored), 0)
    await reads_work(secure)


async def _finished(secure: Secure, wf_id: str) -> W.Workflow:
    async def done() -> W.Workflow | None:
        got = await secure.workflows(ALICE).call(
            "GetWorkflow", W.GetWorkflowRequest(workflow_id=wf_id)
        )
        wf: W.Workflow = got.workflow
        return wf if wf.state != W.WORKFLOW_STATE_RUNNING else None

    return await eventually(done, timeout=20)


async def test_an_unknown_state_filter_is_invalid_argument(secure: Secure) -> None:
    with pytest.raises(Refused) as err:
        await secure.workflows(ALICE).call(
            "ListWorkflows",
            W.ListWorkflowsRequest(state=99),  # type: ignore[arg-type]
        )
    assert (err.value.code, err.value.fields) == (Code.INVALID_ARGUMENT, ["state"])
    async with httpx.AsyncClient(base_url=secure.node.http_url or "", timeout=30) as http:
        reply = await http.get(
            "/v1/workflows?state=99", headers={"authorization": f"Bearer {secure.token(ALICE)}"}
        )
    assert reply.status_code == 400, reply.text
    # A known state is a filter, not an error.
    await secure.workflows(ALICE).call(
        "ListWorkflows", W.ListWorkflowsRequest(state=W.WORKFLOW_STATE_SUCCEEDED)
    )

"""CreateWorkflow's request_id: a replay returns the first workflow, other content is refused.

Request ids are scoped to the caller (auth ON, real gRPC), so one caller can
neither replay nor block another's.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from google.protobuf import json_format

from meshwright.agent import Agent, TaskContext
from meshwright.workflow.v1 import workflow_pb2
from tests.workflow.conftest import Refused, Secure

W = workflow_pb2
ALICE, BOB = "client:alice", "client:bob"


def create(data: dict[str, Any], **kw: Any) -> W.CreateWorkflowRequest:
    return W.CreateWorkflowRequest(
        definition=json_format.ParseDict(data, W.WorkflowDefinition()), **kw
    )


ONE = {"tasks": [{"id": "a", "skill": "x.echo"}]}


@pytest.fixture
async def echo(secure: Secure) -> Secure:
    agent = Agent("echo")

    @agent.skill("x.echo", price=0)
    async def run(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return {}

    await secure.start_agent(agent, "agent-echo")
    await secure.account("alice-acct", ALICE, 100)
    return secure


async def test_a_replay_returns_the_first_workflow(echo: Secure) -> None:
    paid = {**ONE, "budget": 5, "payerAccountId": "alice-acct"}
    first = await echo.workflows(ALICE).call("CreateWorkflow", create(paid, request_id="r1"))
    again = await echo.workflows(ALICE).call("CreateWorkflow", create(paid, request_id="r1"))
    assert again.workflow.workflow_id == first.workflow.workflow_id
    assert await echo.all_workflow_ids() == [first.workflow.workflow_id]


async def test_the_same_request_id_with_other_content_is_invalid_argument(echo: Secure) -> None:
    paid = {**ONE, "budget": 5, "payerAccountId": "alice-acct"}
    first = await echo.workflows(ALICE).call("CreateWorkflow", create(paid, request_id="r1"))
    await echo.workflows(ALICE).call(
        "CreateTemplate",
        W.CreateTemplateRequest(template=W.Template(name="t", definition=create(ONE).definition)),
    )
    others = [
        create({**paid, "budget": 6}, request_id="r1"),
        create({**paid, "name": "other"}, request_id="r1"),
        create(paid, request_id="r1", workflow_id="wf-chosen"),
        W.CreateWorkflowRequest(template=W.TemplateInvocation(template_name="t"), request_id="r1"),
    ]
    for request in others:
        with pytest.raises(Refused) as err:
            await echo.workflows(ALICE).call("CreateWorkflow", request)
        assert (err.value.code, err.value.fields) == (
            grpc.StatusCode.INVALID_ARGUMENT,
            ["request_id"],
        )
    assert await echo.all_workflow_ids() == [first.workflow.workflow_id]
    balance, escrowed = await echo.balance("alice-acct")
    assert balance + escrowed == 100 and escrowed in (0, 5)  # one escrow at most, the first


async def test_concurrent_creates_with_one_request_id_make_one_workflow(echo: Secure) -> None:
    same = [create(ONE, request_id="r2") for _ in range(4)]
    other = create({**ONE, "name": "x"}, request_id="r2")
    results = await asyncio.gather(
        *(echo.workflows(ALICE).call("CreateWorkflow", r) for r in [*same, other]),
        return_exceptions=True,
    )
    ids = {r.workflow.workflow_id for r in results if not isinstance(r, BaseException)}
    refused = [r for r in results if isinstance(r, Refused)]
    assert len(ids) == 1
    # Whichever arrived first wins; every request differing from it is refused.
    assert all(r.code == grpc.StatusCode.INVALID_ARGUMENT for r in refused)
    assert len(refused) in (1, 4)
    assert await echo.all_workflow_ids() == list(ids)


async def test_request_ids_are_scoped_to_the_caller(echo: Secure) -> None:
    mine = await echo.workflows(ALICE).call("CreateWorkflow", create(ONE, request_id="r3"))
    theirs = await echo.workflows(BOB).call(
        "CreateWorkflow", create({**ONE, "name": "bob's"}, request_id="r3")
    )
    assert theirs.workflow.workflow_id != mine.workflow.workflow_id
    assert theirs.workflow.owner == BOB and theirs.workflow.name == "bob's"
    same = await echo.workflows(BOB).call("CreateWorkflow", create(ONE, request_id="r3x"))
    assert same.workflow.owner == BOB

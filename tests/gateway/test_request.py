"""Request messages built from path variables, query strings and JSON bodies."""

from __future__ import annotations

import json
from typing import Any

import pytest

from meshwright.agent.v1 import agent_pb2
from meshwright.gateway import HttpBinding, bindings_of
from meshwright.gateway._request import build_request
from meshwright.mesh import InvalidArgument
from meshwright.registry.v1 import registry_pb2
from meshwright.workflow.v1 import workflow_pb2

WORKFLOW = workflow_pb2.DESCRIPTOR.services_by_name["WorkflowService"]
REGISTRY = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"]
AGENT = agent_pb2.DESCRIPTOR.services_by_name["AgentService"]


def binding(service: Any, rpc: str) -> HttpBinding:
    return next(b for b in bindings_of(service) if b.rpc == rpc)


def violations(err: pytest.ExceptionInfo[InvalidArgument]) -> dict[str, str]:
    return {v.field: v.description for v in err.value.violations}


def test_every_contract_binds() -> None:
    for service in (AGENT, REGISTRY, WORKFLOW):
        names = {b.rpc for b in bindings_of(service)}
        assert names == {m.name for m in service.methods if not m.client_streaming}


def test_query_parameters_are_typed_by_their_field() -> None:
    b = binding(REGISTRY, "ListAgents")
    msg = build_request(
        b,
        variables={},
        query=[("skill", "text.echo"), ("state", "AGENT_STATE_DRAINING"), ("pageSize", "7")],
    )
    assert msg == registry_pb2.ListAgentsRequest(
        skill="text.echo", state=registry_pb2.AGENT_STATE_DRAINING, page_size=7
    )
    by_number = build_request(b, variables={}, query=[("state", "3")])
    assert by_number.state == registry_pb2.AGENT_STATE_INACTIVE


def test_query_repeated_nested_and_bools() -> None:
    method = WORKFLOW.methods_by_name["CreateWorkflow"]
    b = HttpBinding.for_method(method, "GET", "/v1/x")
    msg = build_request(
        b,
        variables={},
        query=[("definition.name", "nightly"), ("definition.budget", "12")],
    )
    assert msg.definition.name == "nightly" and msg.definition.budget == 12

    hb = build_request(binding(REGISTRY, "Heartbeat"), variables={"agent_id": "a1"}, body=b"{}")
    assert hb.agent_id == "a1"
    draining = HttpBinding.for_method(REGISTRY.methods_by_name["Heartbeat"], "GET", "/hb")
    assert build_request(draining, variables={}, query=[("draining", "true")]).draining
    assert not build_request(draining, variables={}, query=[("draining", "0")]).draining

    register = HttpBinding.for_method(REGISTRY.methods_by_name["RegisterAgent"], "GET", "/r")
    msg = build_request(
        register,
        variables={},
        query=[("tags", "a"), ("tags", "b"), ("leaseTtl", "2.5s"), ("card.name", "n")],
    )
    assert list(msg.tags) == ["a", "b"]
    assert msg.lease_ttl.seconds == 2 and msg.lease_ttl.nanos == 500_000_000
    assert msg.card.name == "n"


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        ([("state", "AGENT_STATE_NOPE")], "state", "one of AGENT_STATE_UNSPECIFIED"),
        ([("state", "99")], "state", "not a AgentState"),
        ([("page_size", "ten")], "page_size", "not an integer"),
        ([("page_size", "99999999999")], "page_size", "out of range"),
        ([("page_size", "1"), ("page_size", "2")], "page_size", "one value"),
        ([("colour", "red")], "colour", "unknown query parameter"),
        ([("skill.id", "x")], "skill.id", "not a singular message"),
    ],
)
def test_query_problems_are_field_violations(
    query: list[tuple[str, str]], field: str, words: str
) -> None:
    with pytest.raises(InvalidArgument) as err:
        build_request(binding(REGISTRY, "ListAgents"), variables={}, query=query)
    assert words in violations(err)[field]


def test_every_problem_is_reported() -> None:
    with pytest.raises(InvalidArgument) as err:
        build_request(
            binding(REGISTRY, "ListAgents"),
            variables={},
            query=[("state", "nope"), ("page_size", "x")],
        )
    assert set(violations(err)) == {"state", "page_size"}


def test_nested_path_variables_and_typed_path_values() -> None:
    method = WORKFLOW.methods_by_name["CreateWorkflow"]
    b = HttpBinding.for_method(
        method, "POST", "/v1/{definition.name}/budget/{definition.budget}", body="*"
    )
    msg = build_request(
        b,
        variables={"definition.name": "nightly", "definition.budget": "40"},
        body=json.dumps({"definition": {"name": "body-loses", "payerAccountId": "acct"}}).encode(),
    )
    assert msg.definition.name == "nightly"
    assert msg.definition.budget == 40
    assert msg.definition.payer_account_id == "acct"
    with pytest.raises(InvalidArgument) as err:
        build_request(b, variables={"definition.name": "n", "definition.budget": "lots"})
    assert "not an integer" in violations(err)["definition.budget"]


def test_enum_path_variable() -> None:
    b = HttpBinding.for_method(
        WORKFLOW.methods_by_name["ListWorkflows"], "GET", "/v1/workflows/state/{state}"
    )
    msg = build_request(b, variables={"state": "WORKFLOW_STATE_RUNNING"})
    assert msg.state == workflow_pb2.WORKFLOW_STATE_RUNNING


@pytest.mark.parametrize(
    ("path", "words"),
    [
        ("/v1/{nope}", "no field 'nope'"),
        ("/v1/{definition}", "singular scalar"),
        ("/v1/{definition.budget=**}", "must be a string"),
        ("/v1/{definition.tasks.id}", "not a singular message"),
    ],
)
def test_unservable_rules_fail_at_startup(path: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        HttpBinding.for_method(WORKFLOW.methods_by_name["CreateWorkflow"], "GET", path)


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        (b"{not json", "body", "invalid JSON"),
        (b"[1, 2]", "body", "JSON object"),
        (b'{"definition": {"nmae": "x"}}', "definition.nmae", "unknown field"),
        (
            b'{"definition": {"tasks": [{"id": "a"}, {"skil": "x"}]}}',
            "definition.tasks[1].skil",
            "unknown field",
        ),
        (b'{"definition": 5}', "definition", "expected a JSON object"),
        (b'{"definition": {"tasks": {}}}', "definition.tasks", "expected a JSON array"),
        (b'{"definition": {"tasks": [null]}}', "definition.tasks[0]", "JSON object"),
        (b'{"definition": {"budget": "lots"}}', "body", "budget"),
        (b'{"definition": {"labels": {"k": 1}}}', "body", "labels"),
    ],
)
def test_body_problems(body: bytes, field: str, words: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        build_request(binding(WORKFLOW, "CreateWorkflow"), variables={}, body=body)
    assert words in violations(err)[field]


def test_body_star_accepts_proto_and_json_names_and_ignores_query() -> None:
    body = b'{"workflow_id": "w1", "requestId": "r1", "definition": {"payer_account_id": "p"}}'
    msg = build_request(
        binding(WORKFLOW, "CreateWorkflow"),
        variables={},
        body=body,
        query=[("workflow_id", "from-query")],
    )
    assert (msg.workflow_id, msg.request_id, msg.definition.payer_account_id) == ("w1", "r1", "p")
    empty = build_request(binding(WORKFLOW, "CreateWorkflow"), variables={}, body=b"")
    assert empty == workflow_pb2.CreateWorkflowRequest()


def test_body_field_and_query_together() -> None:
    b = HttpBinding.for_method(
        WORKFLOW.methods_by_name["CreateWorkflow"], "POST", "/v1/wf", body="definition"
    )
    msg = build_request(
        b, variables={}, body=b'{"name": "n", "budget": 5}', query=[("requestId", "r9")]
    )
    assert (msg.definition.name, msg.definition.budget, msg.request_id) == ("n", 5, "r9")
    with pytest.raises(InvalidArgument) as err:
        build_request(b, variables={}, body=b'{"bogus": 1}')
    assert violations(err) == {"definition.bogus": "unknown field"}
    with pytest.raises(InvalidArgument) as err:
        build_request(b, variables={}, body=b"{}", query=[("definition.name", "x")])
    assert "set by the request body" in violations(err)["definition.name"]


def test_last_event_id_sets_after_sequence() -> None:
    b = binding(WORKFLOW, "WatchWorkflow")
    msg = build_request(b, variables={"workflow_id": "w"}, last_event_id="41")
    assert (msg.workflow_id, msg.after_sequence) == ("w", 41)
    with pytest.raises(InvalidArgument) as err:
        build_request(b, variables={"workflow_id": "w"}, last_event_id="forty")
    assert "Last-Event-ID" in violations(err)
    # Requests without after_sequence ignore the header.
    ok = build_request(binding(REGISTRY, "WatchAgents"), variables={}, last_event_id="3")
    assert ok == registry_pb2.WatchAgentsRequest()


def test_response_body_selects_one_field() -> None:
    get = WORKFLOW.methods_by_name["GetWorkflow"]
    whole = HttpBinding.for_method(get, "GET", "/v1/w/{workflow_id}")
    part = HttpBinding.for_method(get, "GET", "/v1/w/{workflow_id}", response_body="workflow")
    reply = workflow_pb2.GetWorkflowResponse(workflow=workflow_pb2.Workflow(workflow_id="w"))
    assert whole.render(reply)["workflow"]["workflowId"] == "w"
    assert part.render(reply)["workflowId"] == "w"
    assert part.render(workflow_pb2.GetWorkflowResponse())["workflowId"] == ""
    listing = HttpBinding.for_method(
        WORKFLOW.methods_by_name["ListWorkflows"], "GET", "/v1/w", response_body="workflows"
    )
    assert listing.render(workflow_pb2.ListWorkflowsResponse()) == []

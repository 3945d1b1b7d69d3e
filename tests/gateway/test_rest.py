"""Unary RPCs over REST: a real gateway under uvicorn in front of a real MeshServer."""

from __future__ import annotations

import pytest

from meshwright.gateway import create_app, start_gateway
from meshwright.mesh import LocalServiceClient
from meshwright.mesh.security import insecure_pipeline
from tests.gateway.support import AGENT, CORS_ORIGIN, RestAgent, Stack, parse_sse, status_of

pytestmark = pytest.mark.asyncio(loop_scope="package")


async def test_get_route(stack: Stack) -> None:
    r = await stack.http.get("/v1/agent/card")
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    card = r.json()["card"]
    assert card["name"] == "rest-agent"
    assert card["skills"][0]["id"] == "text.echo"
    assert card["skills"][0]["price"] == "3"  # int64 is a JSON string
    # Unset fields are written too, so clients see the whole shape.
    assert card["description"] == ""
    assert card["capabilities"] == {"streaming": True, "cancellation": False}


async def test_post_with_body_star(stack: Stack) -> None:
    r = await stack.http.post(
        "/v1/agent/tasks:execute",
        json={"taskId": "t1", "skill": "text.echo", "context_id": "c1", "input": {"x": 1}},
    )
    assert r.status_code == 200, r.text
    task = r.json()["task"]
    assert (task["taskId"], task["skill"], task["contextId"]) == ("t1", "text.echo", "c1")
    assert task["status"]["state"] == "TASK_STATE_COMPLETED"
    assert task["output"] == {"x": 1}


async def test_path_parameter_and_verb(stack: Stack) -> None:
    r = await stack.http.post("/v1/agent/tasks/t%2F9:cancel", json={})
    assert r.status_code == 200, r.text
    assert r.json()["task"]["taskId"] == "t/9"
    assert r.json()["task"]["status"]["state"] == "TASK_STATE_CANCELED"

    # The path wins over the body; the body fills the rest.
    r = await stack.http.post(
        "/v1/workflows/wf-7:cancel", json={"workflowId": "other", "reason": "enough"}
    )
    assert r.status_code == 200, r.text
    wf = r.json()["workflow"]
    assert (wf["workflowId"], wf["state"], wf["error"]) == (
        "wf-7",
        "WORKFLOW_STATE_CANCELLED",
        "enough",
    )


async def test_verb_routes_and_variable_routes_coexist(stack: Stack) -> None:
    r = await stack.http.get("/v1/workflows/wf-1")
    assert r.status_code == 200 and r.json()["workflow"]["name"] == "first"
    r = await stack.http.get("/v1/workflows/wf-1:watch")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    r = await stack.http.get("/v1/workflows/wf-1:cancel")
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"


async def test_query_parameters(stack: Stack) -> None:
    r = await stack.http.get(
        "/v1/workflows",
        params={"state": "WORKFLOW_STATE_RUNNING", "pageSize": "2", "page_token": "abc"},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert [w["workflowId"] for w in body["workflows"]] == ["w0", "w1"]
    assert {w["state"] for w in body["workflows"]} == {"WORKFLOW_STATE_RUNNING"}
    assert body["nextPageToken"] == "abc+"

    r = await stack.http.get("/v1/workflows", params={"state": "2", "page_size": "1"})
    assert r.json()["workflows"][0]["state"] == "WORKFLOW_STATE_RUNNING"

    r = await stack.http.get("/v1/workflows", params={"state": "RUNNING", "page_size": "x"})
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == 3
    fields = {v["field"] for v in status_of(body)["BadRequest"]["fieldViolations"]}
    assert fields == {"state", "page_size"}


async def test_body_field(stack: Stack) -> None:
    template = {"name": "nightly", "definition": {"name": "d", "tasks": [{"id": "a"}]}}
    r = await stack.http.post("/v1/templates", json=template)
    assert r.status_code == 200, r.text
    assert r.json()["template"]["definition"]["tasks"][0]["id"] == "a"

    r = await stack.http.post("/v1/templates", json={"name": "n", "bogus": True})
    assert r.status_code == 400
    violation = status_of(r.json())["BadRequest"]["fieldViolations"][0]
    assert (violation["field"], violation["description"]) == ("template.bogus", "unknown field")


@pytest.mark.parametrize(
    ("skill", "status", "code", "reason"),
    [
        ("missing", 404, 5, "NOT_FOUND"),
        ("busy", 429, 8, "RESOURCE_EXHAUSTED"),
        ("lease", 400, 9, "TEST_GATEWAY_LEASE_MISMATCH"),
    ],
)
async def test_errors_map_to_http_status(
    stack: Stack, skill: str, status: int, code: int, reason: str
) -> None:
    r = await stack.http.post("/v1/agent/tasks:execute", json={"taskId": "t", "skill": skill})
    assert r.status_code == status
    body = r.json()
    assert body["code"] == code
    info = status_of(body)["ErrorInfo"]
    assert info["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"
    assert (info["reason"], info["domain"]) == (reason, "meshwright.dev")
    if skill == "lease":
        assert info["metadata"] == {"agent_id": "a1"}


async def test_invalid_argument_carries_field_violations(stack: Stack) -> None:
    r = await stack.http.post("/v1/agent/tasks:execute", json={"skill": "text.echo"})
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == 3
    details = status_of(body)
    assert details["ErrorInfo"]["reason"] == "INVALID_ARGUMENT"
    violations = details["BadRequest"]["fieldViolations"]
    assert [(v["field"], v["description"]) for v in violations] == [("task_id", "is required")]


@pytest.mark.parametrize(
    ("content", "field", "words"),
    [
        (b"{not json", "body", "invalid JSON"),
        (b'{"taskId": "t", "bogus": 1}', "bogus", "unknown field"),
        (b'{"taskId": ["t"]}', "body", "taskId"),
        (b'"just a string"', "body", "JSON object"),
    ],
)
async def test_bad_bodies_are_400(stack: Stack, content: bytes, field: str, words: str) -> None:
    r = await stack.http.post(
        "/v1/agent/tasks:execute",
        content=content,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == 3 and words in body["message"]
    violation = status_of(body)["BadRequest"]["fieldViolations"][0]
    assert violation["field"] == field


async def test_unknown_route_is_404(stack: Stack) -> None:
    for path in ("/v1/nope", "/v1/agent/card/extra", "/", "/v1/agent/card/"):
        r = await stack.http.get(path)
        assert r.status_code == 404, path
        body = r.json()
        assert body["code"] == 5
        assert status_of(body)["ErrorInfo"]["reason"] == "ROUTE_NOT_FOUND"


async def test_wrong_method_is_405(stack: Stack) -> None:
    r = await stack.http.delete("/v1/agent/card")
    assert r.status_code == 405
    assert r.headers["allow"] == "GET"
    body = r.json()
    assert body["code"] == 12
    assert status_of(body)["ErrorInfo"]["reason"] == "METHOD_NOT_ALLOWED"
    r = await stack.http.get("/v1/agent/tasks:execute")
    assert (r.status_code, r.headers["allow"]) == (405, "POST")


async def test_health_and_route_listing(stack: Stack) -> None:
    r = await stack.http.get("/healthz")
    assert (r.status_code, r.json()) == (200, {"status": "ok"})
    r = await stack.http.get("/v1/routes")
    routes = r.json()["routes"]
    assert {
        "method": "GET",
        "path": "/v1/workflows/{workflow_id}:watch",
        "rpc": "meshwright.workflow.v1.WorkflowService.WatchWorkflow",
        "body": "",
        "streaming": True,
    } in routes
    assert {r["rpc"].rsplit(".", 1)[-1] for r in routes} >= {"GetAgentCard", "CreateTemplate"}
    assert len(routes) == len(AGENT.methods) + 8  # WorkflowService has 8 RPCs
    assert (await stack.http.post("/healthz")).status_code == 405


async def test_cors(stack: Stack) -> None:
    r = await stack.http.options(
        "/v1/agent/tasks:execute",
        headers={
            "origin": CORS_ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type",
        },
    )
    assert r.status_code == 200
    assert r.headers["access-control-allow-origin"] == CORS_ORIGIN
    r = await stack.http.get("/v1/agent/card", headers={"origin": CORS_ORIGIN})
    assert r.headers["access-control-allow-origin"] == CORS_ORIGIN
    r = await stack.http.get("/v1/agent/card", headers={"origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers


async def test_headers_become_metadata(stack: Stack) -> None:
    r = await stack.http.post(
        "/v1/agent/tasks:execute",
        json={"taskId": "t", "skill": "text.echo"},
        headers={
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "grpc-metadata-tenant": "acme",
            "x-not-forwarded": "1",
        },
    )
    assert r.status_code == 200
    assert stack.agent.metadata["tenant"] == "acme"
    assert stack.agent.metadata["traceparent"].startswith("00-0af7")
    assert "x-not-forwarded" not in stack.agent.metadata


async def test_unexpected_errors_are_500_without_details() -> None:
    """In-process (LocalServiceClient): same routes, and a bug is a bare INTERNAL."""
    app = create_app([LocalServiceClient(RestAgent(), AGENT, insecure_pipeline())])
    gateway = await start_gateway(app)
    try:
        import httpx

        async with httpx.AsyncClient(base_url=gateway.url) as http:
            r = await http.get("/v1/agent/card")
            assert r.json()["card"]["name"] == "rest-agent"
            r = await http.post("/v1/agent/tasks:execute", json={"taskId": "t", "skill": "x"})
            assert r.json()["task"]["status"]["state"] == "TASK_STATE_COMPLETED"
            r = await http.post("/v1/agent/tasks:execute", json={"taskId": "t", "skill": "crash"})
            assert r.status_code == 500
            body = r.json()
            assert body["code"] == 13 and body["message"] == "internal error"
            assert "secret" not in r.text and "Traceback" not in r.text
            r = await http.post("/v1/agent/tasks:stream", json={"taskId": "s", "skill": "x"})
            events, _ = parse_sse(r.text)
            assert [e.id for e in events] == ["1", "2", "3", "4"]
            assert events[-1].data["final"] is True
            r = await http.post("/v1/agent/tasks:execute", json={"taskId": "t", "skill": "missing"})
            assert r.status_code == 404
    finally:
        await gateway.stop()


async def test_oversized_body_is_413_not_read_in_full(stack: Stack) -> None:
    big = b'{"taskId": "t", "skill": "s", "metadata": {"k": "' + b"x" * (5 * 1024 * 1024) + b'"}}'
    r = await stack.http.post(
        "/v1/agent/tasks:execute", content=big, headers={"content-type": "application/json"}
    )
    assert r.status_code == 413
    assert r.json()["code"] == 8  # RESOURCE_EXHAUSTED

    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(6):
            yield b"x" * (1024 * 1024)

    r = await stack.http.post(
        "/v1/agent/tasks:execute", content=chunks(), headers={"content-type": "application/json"}
    )
    assert r.status_code == 413


async def test_paths_with_encoded_newlines_get_a_status_body(stack: Stack) -> None:
    r = await stack.http.get("/v1/nowhere%0Aelse")
    assert r.status_code == 404
    assert r.json()["code"] == 5

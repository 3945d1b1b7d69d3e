"""The same flows through the REST gateway, as a browser would use them."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.e2e.conftest import Mesh

pytestmark = pytest.mark.asyncio(loop_scope="module")

WORKFLOW = {
    "definition": {
        "name": "rest-diamond",
        "budget": 30,
        "payerAccountId": "rest-payer",
        "tasks": [
            {"id": "A", "skill": "system.snapshot"},
            {"id": "B", "skill": "metrics.load", "dependsOn": ["A"]},
            {"id": "C", "skill": "metrics.memory", "dependsOn": ["A"]},
            {"id": "D", "skill": "report.compose", "dependsOn": ["B", "C"]},
        ],
    }
}


def sse_events(text: str) -> list[tuple[str | None, str | None, dict]]:  # type: ignore[type-arg]
    """(id, event, data) of each SSE message; comments skipped."""
    out = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if not line or line.startswith(":"):
                continue
            key, _, value = line.partition(":")
            fields[key] = value.removeprefix(" ")
        if "data" in fields:
            out.append((fields.get("id"), fields.get("event"), json.loads(fields["data"])))
    return out


@pytest.fixture
async def http(mesh: Mesh) -> httpx.AsyncClient:
    assert mesh.node.http_url
    async with httpx.AsyncClient(base_url=mesh.node.http_url, timeout=30) as client:
        yield client  # type: ignore[misc]


async def test_create_read_and_stream_a_workflow(http: httpx.AsyncClient) -> None:
    r = await http.post("/v1/accounts", json={"accountId": "rest-payer", "initialBalance": 100})
    assert r.status_code == 200, r.text
    r = await http.post("/v1/workflows", json=WORKFLOW)
    assert r.status_code == 200, r.text
    created = r.json()["workflow"]
    wf_id = created["workflowId"]
    assert created["state"] == "WORKFLOW_STATE_RUNNING"

    r = await http.get(f"/v1/workflows/{wf_id}")
    assert r.status_code == 200
    assert r.json()["workflow"]["definition"]["name"] == "rest-diamond"

    r = await http.get(f"/v1/workflows/{wf_id}:watch")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    events = sse_events(r.text)
    seqs = [int(e[2]["event"]["sequence"]) for e in events]
    assert seqs == list(range(1, len(seqs) + 1))
    assert [e[0] for e in events] == [str(s) for s in seqs]  # SSE ids are the sequences
    assert events[-1][2]["event"]["type"] == "WORKFLOW_EVENT_TYPE_WORKFLOW_SUCCEEDED"
    assert events[-1][2]["event"]["amount"] == "18"

    # Resuming with Last-Event-ID sends only what came after.
    r = await http.get(f"/v1/workflows/{wf_id}:watch", headers={"Last-Event-ID": "7"})
    assert [int(e[2]["event"]["sequence"]) for e in sse_events(r.text)] == seqs[7:]

    r = await http.get(f"/v1/workflows/{wf_id}")
    wf = r.json()["workflow"]
    assert wf["state"] == "WORKFLOW_STATE_SUCCEEDED"
    assert wf["spent"] == "12"
    r = await http.get("/v1/accounts/rest-payer")
    assert r.json()["account"]["balance"] == "88"
    r = await http.get("/v1/workflows", params={"state": "WORKFLOW_STATE_SUCCEEDED"})
    assert wf_id in [w["workflowId"] for w in r.json()["workflows"]]


async def test_bad_json_is_400_with_a_status_body(http: httpx.AsyncClient) -> None:
    r = await http.post(
        "/v1/workflows", content=b'{"definition": {', headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    body = r.json()
    assert body["code"] == 3
    assert body["message"]
    types = {d["@type"] for d in body["details"]}
    assert "type.googleapis.com/google.rpc.ErrorInfo" in types


async def test_invalid_definition_is_400_naming_fields(http: httpx.AsyncClient) -> None:
    bad = {"definition": {"tasks": [{"id": "a", "skill": "text.upper", "dependsOn": ["a"]}]}}
    r = await http.post("/v1/workflows", json=bad)
    assert r.status_code == 400
    details = {d["@type"].rsplit("/", 1)[1]: d for d in r.json()["details"]}
    violations = details["google.rpc.BadRequest"]["fieldViolations"]
    assert violations[0]["field"] == "definition.tasks[0].depends_on"
    assert "a -> a" in violations[0]["description"]


async def test_unknown_workflow_is_404(http: httpx.AsyncClient) -> None:
    r = await http.get("/v1/workflows/wf-does-not-exist")
    assert r.status_code == 404
    body = r.json()
    assert body["code"] == 5
    info = next(d for d in body["details"] if d["@type"].endswith("ErrorInfo"))
    assert info["reason"] == "WORKFLOW_NOT_FOUND"
    r = await http.get("/v1/workflows/wf-does-not-exist:watch")
    assert r.status_code == 404


async def test_insufficient_funds_is_400_and_unknown_route_404(http: httpx.AsyncClient) -> None:
    await http.post("/v1/accounts", json={"accountId": "rest-poor", "initialBalance": 1})
    body = {"definition": {**WORKFLOW["definition"], "payerAccountId": "rest-poor"}}
    r = await http.post("/v1/workflows", json=body)
    assert r.status_code == 400
    info = next(d for d in r.json()["details"] if d["@type"].endswith("ErrorInfo"))
    assert info["reason"] == "INSUFFICIENT_FUNDS"
    r = await http.get("/v1/nothing-here")
    assert r.status_code == 404 and r.json()["code"] == 5


async def test_tasks_route_by_skill_through_the_mesh(http: httpx.AsyncClient) -> None:
    r = await http.post(
        "/v1/agent/tasks:execute",
        json={"taskId": "rest-1", "skill": "text.wordcount", "input": {"text": "a b a"}},
    )
    assert r.status_code == 200, r.text
    task = r.json()["task"]
    assert task["status"]["state"] == "TASK_STATE_COMPLETED"
    assert task["output"]["words"] == 3
    r = await http.get("/v1/agent/card")
    skills = {s["id"] for s in r.json()["card"]["skills"]}
    assert {"system.snapshot", "report.compose", "text.upper"} <= skills
    r = await http.get(
        "/v1/agents", params={"skill": "report.compose", "state": "AGENT_STATE_ACTIVE"}
    )
    assert [a["card"]["name"] for a in r.json()["agents"]] == ["analyst"]

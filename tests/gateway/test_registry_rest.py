"""The registry over REST: the real RegistryService behind the gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import httpx
import pytest_asyncio

from meshwright.gateway import create_app, start_gateway
from meshwright.mesh import MeshServer, RemoteServiceClient
from meshwright.mesh.security import insecure_pipeline
from meshwright.registry import SERVICE, MemoryRegistryBackend, Registry, RegistryServicer
from tests.gateway.support import status_of


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    registry = Registry(MemoryRegistryBackend())
    server = MeshServer(pipeline=insecure_pipeline(), port=0)
    server.add(RegistryServicer(registry), SERVICE)
    await server.start()
    channel = grpc.aio.insecure_channel(server.address)
    gateway = await start_gateway(create_app([RemoteServiceClient(channel, SERVICE)]))
    client = httpx.AsyncClient(base_url=gateway.url, timeout=5.0)
    try:
        yield client
    finally:
        await client.aclose()
        await gateway.stop()
        await registry.stop()
        await channel.close()
        await server.stop(0)


async def register(http: httpx.AsyncClient, agent_id: str, skill: str) -> str:
    r = await http.post(
        "/v1/agents",
        json={
            "agentId": agent_id,
            "card": {"name": agent_id, "skills": [{"id": skill, "name": skill}]},
            "endpoint": "127.0.0.1:1",
            "tags": ["test"],
        },
    )
    assert r.status_code == 200, r.text
    agent = r.json()["agent"]
    assert agent["state"] == "AGENT_STATE_ACTIVE"
    return str(agent["leaseId"])


async def test_list_agents_with_query_parameters(http: httpx.AsyncClient) -> None:
    leases = {a: await register(http, a, "text.echo") for a in ("a1", "a2", "a3")}
    await register(http, "b1", "math.add")
    r = await http.post("/v1/agents/a2:heartbeat", json={"leaseId": leases["a2"], "draining": True})
    assert r.status_code == 200, r.text
    assert r.json()["agent"]["state"] == "AGENT_STATE_DRAINING"

    r = await http.get("/v1/agents", params={"skill": "text.echo"})
    assert [a["agentId"] for a in r.json()["agents"]] == ["a1", "a2", "a3"]

    r = await http.get("/v1/agents", params={"skill": "text.echo", "state": "AGENT_STATE_ACTIVE"})
    assert [a["agentId"] for a in r.json()["agents"]] == ["a1", "a3"]
    r = await http.get("/v1/agents", params={"state": "AGENT_STATE_DRAINING"})
    assert [a["agentId"] for a in r.json()["agents"]] == ["a2"]

    r = await http.get("/v1/agents", params={"skill": "text.echo", "page_size": "2"})
    page = r.json()
    assert [a["agentId"] for a in page["agents"]] == ["a1", "a2"]
    r = await http.get(
        "/v1/agents",
        params={"skill": "text.echo", "pageSize": "2", "pageToken": page["nextPageToken"]},
    )
    assert [a["agentId"] for a in r.json()["agents"]] == ["a3"]
    assert r.json()["nextPageToken"] == ""

    r = await http.get("/v1/agents", params={"state": "AGENT_STATE_SLEEPY"})
    assert r.status_code == 400
    assert status_of(r.json())["BadRequest"]["fieldViolations"][0]["field"] == "state"


async def test_get_and_delete_agent(http: httpx.AsyncClient) -> None:
    await register(http, "a1", "text.echo")
    r = await http.get("/v1/agents/a1")
    assert r.json()["agent"]["card"]["skills"][0]["id"] == "text.echo"
    r = await http.delete("/v1/agents/a1")
    assert r.status_code == 200
    r = await http.get("/v1/agents/a1")  # kept, STOPPED, for the retention period
    assert r.json()["agent"]["state"] == "AGENT_STATE_STOPPED"
    r = await http.delete("/v1/agents/a1")
    assert r.status_code == 404
    assert r.json()["code"] == 5
    assert status_of(r.json())["ErrorInfo"]["reason"] == "AGENT_STOPPED"
    r = await http.post("/v1/agents", json={"card": {"name": "x"}})
    assert r.status_code == 400
    fields = {v["field"] for v in status_of(r.json())["BadRequest"]["fieldViolations"]}
    assert "endpoint" in fields


async def test_delete_without_a_body_needs_no_content_type(http: httpx.AsyncClient) -> None:
    # DELETE is always preflighted by browsers, so a body-less one is no CORS-simple
    # request; a DELETE that does carry a body must declare it JSON like any mutation.
    await register(http, "a1", "text.echo")
    r = await http.request(
        "DELETE", "/v1/agents/a1", content=b"x", headers={"content-type": "text/plain"}
    )
    assert r.status_code == 415
    assert status_of(r.json())["ErrorInfo"]["reason"] == "UNSUPPORTED_MEDIA_TYPE"
    r = await http.request("DELETE", "/v1/agents/a1", content=b"{}")  # a body, no type
    assert r.status_code == 415
    assert (await http.get("/v1/agents/a1")).status_code == 200  # still there
    r = await http.delete("/v1/agents/a1")
    assert "content-type" not in r.request.headers
    assert r.status_code == 200, r.text
    stopped = (await http.get("/v1/agents/a1")).json()["agent"]
    assert stopped["state"] == "AGENT_STATE_STOPPED"


async def test_watch_route_is_not_an_agent_id(http: httpx.AsyncClient) -> None:
    await register(http, "a1", "text.echo")
    async with http.stream("GET", "/v1/agents:watch", params={"skill": "text.echo"}) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
    r = await http.delete("/v1/agents:watch")
    assert (r.status_code, r.headers["allow"]) == (405, "GET")

"""A2A out, the mesh: the skill router at the gateway's ``/a2a/mesh``, in a node as
``meshwright up`` runs it (auth on) and in a gateway alone in front of it, with a real
agent process behind, called with the official a2a-sdk client."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import pytest_asyncio
from a2a.client import A2ACardResolver, Client, ClientConfig, ClientFactory
from a2a.client.errors import A2AClientError
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
)
from a2a.utils.errors import InvalidParamsError, UnsupportedOperationError
from google.protobuf import json_format

from meshwright.agent.a2a.card import prices
from meshwright.mesh.auth import Role as MeshRole
from meshwright.mesh.config import MeshConfig
from meshwright.mesh.pipeline import Pipeline
from meshwright.mesh.security import Security
from meshwright.node import Node, start_node
from meshwright.workflow import EngineConfig
from tests.e2e._proc import Running, cli_env
from tests.support_auth import test_keys

pytestmark = [pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="module")]

MESH_PATH = "/a2a/mesh"


@dataclass
class Mesh:
    node: Node
    gateway_alone: Node
    agent: Running

    @property
    def url(self) -> str:
        assert self.node.http_url is not None
        return self.node.http_url + MESH_PATH


def security() -> Security:
    keys = test_keys()
    return Security(
        Pipeline(verifier=keys.verifier()), keys.token("service", "mesh"), None, keys.issuer()
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Mesh]:
    keys = test_keys()
    config = MeshConfig(grpc_port=0, http_port=0, grace_s=0, lease_ttl_s=5)
    node = await start_node(
        config, security=security(), engine_config=EngineConfig(agent_wait_s=2.0)
    )
    alone: Node | None = None
    agent: Running | None = None
    try:
        agent = await Running.start(
            "agent",
            "run",
            "meshwright.agent.samples:analyst_agent",
            "--registry",
            node.grpc_address,
            "--agent-id",
            "analyst-a2a",
            "--token",
            keys.token(MeshRole.AGENT, "analyst-a2a"),
            "--auth-public-key",
            str(keys.public_key_file),
            env=cli_env(tmp_path_factory.mktemp("mesh-a2a")),
        )
        await agent.wait_for(r"READY agent_id=analyst-a2a", timeout=60)
        alone = await start_node(
            MeshConfig(grpc_port=0, http_port=0, grace_s=0),
            services=(),
            registry_target=node.grpc_address,
            economy_target=node.grpc_address,
            workflow_target=node.grpc_address,
            security=security(),
        )
        yield Mesh(node, alone, agent)
    finally:
        if agent is not None:
            await agent.stop()
        if alone is not None:
            await alone.stop()
        await node.stop()


def bearer(role: MeshRole, subject: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {test_keys().token(role, subject)}"}


@pytest_asyncio.fixture(loop_scope="module")
async def client_http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(headers=bearer(MeshRole.CLIENT, "ann")) as http:
        yield http


async def a2a(url: str, http: httpx.AsyncClient, *, streaming: bool = False) -> Client:
    return await ClientFactory(
        ClientConfig(httpx_client=http, streaming=streaming)
    ).create_from_url(url)


def message(data: dict[str, Any], skill: str) -> Message:
    msg = Message(message_id="m", role=Role.ROLE_USER)
    part = Part()
    part.data.struct_value.SetInParent()  # a data part even for {}
    part.data.struct_value.update(data)
    msg.parts.append(part)
    msg.metadata.update({"skill": skill})
    return msg


async def send(client: Client, msg: Message) -> list[StreamResponse]:
    return [e async for e in client.send_message(SendMessageRequest(message=msg))]


async def run(client: Client, msg: Message) -> Task:
    (event,) = await send(client, msg)
    return event.task


def output(task: Task) -> dict[str, Any]:
    (artifact,) = [a for a in task.artifacts if a.name == "output"]
    return dict(json_format.MessageToDict(artifact.parts[0].data))


async def test_the_mesh_card_lists_live_skills_at_the_gateway(mesh: Mesh) -> None:
    async with httpx.AsyncClient() as anonymous:
        card = await A2ACardResolver(anonymous, mesh.url).get_agent_card()
    ids = {s.id for s in card.skills}
    assert {"text.upper", "demo.sleep"} <= ids
    assert "system.snapshot" not in ids  # no sysinfo agent runs here: live agents' skills only
    assert prices(card)["text.upper"] == 1 and prices(card)["demo.sleep"] == 0
    assert card.supported_interfaces[0].url == mesh.url
    assert card.capabilities.streaming
    assert "bearer" in card.security_schemes


async def test_a_client_runs_a_free_skill_through_the_mesh(
    mesh: Mesh, client_http: httpx.AsyncClient
) -> None:
    task = await run(await a2a(mesh.url, client_http), message({"seconds": 0.05}, "demo.sleep"))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert output(task) == {"slept_s": 0.05}


async def test_a_paid_skill_for_a_client_needs_a_workflow(
    mesh: Mesh, client_http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = await a2a(mesh.url, client_http)
    caplog.set_level(logging.INFO)
    with pytest.raises(UnsupportedOperationError) as caught:
        await run(client, message({"text": "hi"}, "text.upper"))
    assert caught.value.data == {"reason": "PAID_SKILL_NEEDS_WORKFLOW"} | (caught.value.data or {})
    assert "workflow" in caught.value.message
    # A refusal is an answer: one INFO line, no a2a-sdk traceback.
    assert not [r for r in caplog.records if r.exc_info and r.name.startswith("a2a.")]
    assert any("PAID_SKILL_NEEDS_WORKFLOW" in r.getMessage() for r in caplog.records)


async def test_a_service_runs_a_paid_skill_through_the_mesh(mesh: Mesh) -> None:
    async with httpx.AsyncClient(headers=bearer(MeshRole.SERVICE, "ops-bot")) as http:
        task = await run(await a2a(mesh.url, http), message({"text": "hi"}, "text.upper"))
    assert output(task) == {"text": "HI"}


async def test_stream_get_and_cancel_through_the_mesh(
    mesh: Mesh, client_http: httpx.AsyncClient
) -> None:
    client = await a2a(mesh.url, client_http, streaming=True)
    events = await send(client, message({"seconds": 0.2}, "demo.sleep"))
    assert events[0].task.status.state == TaskState.TASK_STATE_WORKING
    assert events[-1].status_update.status.state == TaskState.TASK_STATE_COMPLETED
    got = await client.get_task(GetTaskRequest(id=events[0].task.id))
    assert got.status.state == TaskState.TASK_STATE_COMPLETED

    stream = client.send_message(SendMessageRequest(message=message({"seconds": 20}, "demo.sleep")))
    first = await anext(stream)
    canceled = await client.cancel_task(CancelTaskRequest(id=first.task.id))
    assert canceled.status.state == TaskState.TASK_STATE_CANCELED
    await stream.aclose()


async def test_a_skill_no_agent_offers_is_invalid_params(
    mesh: Mesh, client_http: httpx.AsyncClient
) -> None:
    with pytest.raises(InvalidParamsError, match="no.such"):
        await run(await a2a(mesh.url, client_http), message({}, "no.such"))


async def test_no_token_is_401_at_the_mesh(mesh: Mesh) -> None:
    async with httpx.AsyncClient() as anonymous:
        client = await a2a(mesh.url, anonymous)
        with pytest.raises(A2AClientError, match="401"):
            await run(client, message({"seconds": 0}, "demo.sleep"))


async def test_a_gateway_alone_serves_the_mesh_too(
    mesh: Mesh, client_http: httpx.AsyncClient
) -> None:
    assert mesh.gateway_alone.http_url is not None
    url = mesh.gateway_alone.http_url + MESH_PATH
    client = await a2a(url, client_http)
    assert client is not None
    task = await run(client, message({"seconds": 0.05}, "demo.sleep"))
    assert output(task) == {"slept_s": 0.05}
    with pytest.raises(UnsupportedOperationError):
        await run(client, message({"text": "hi"}, "text.upper"))

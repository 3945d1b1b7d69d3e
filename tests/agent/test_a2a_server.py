"""A2A out: real agent processes (``agent run ... --a2a-port 0``) called with the official
a2a-sdk client: the card, send, stream, get, cancel, each mapping rule, and the errors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
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
    SendMessageConfiguration,
    SendMessageRequest,
    StreamResponse,
    Task,
    TaskState,
)
from a2a.utils.errors import InvalidParamsError, TaskNotFoundError
from google.protobuf import json_format

from meshwright.agent.a2a.card import PRICING_EXTENSION, prices
from meshwright.agent.v1 import agent_pb2
from meshwright.mesh.auth import Role as MeshRole
from meshwright.mesh.client import RemoteServiceClient
from meshwright.registry.v1 import registry_pb2
from tests.agent.conftest import start_mesh
from tests.e2e._proc import Running, cli_env
from tests.support_auth import test_keys

pytestmark = [pytest.mark.timeout(120), pytest.mark.asyncio(loop_scope="module")]

AGENT_SERVICE = agent_pb2.DESCRIPTOR.services_by_name["AgentService"]
REGISTRY_SERVICE = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"]


@dataclass
class AgentProcess:
    running: Running
    agent_id: str
    endpoint: str
    url: str  # the A2A endpoint


@dataclass
class Agents:
    registry: RemoteServiceClient
    analyst: AgentProcess
    probe: AgentProcess


async def start_agent(target: str, registry: str, tmp: Path) -> AgentProcess:
    running = await Running.start(
        "agent",
        "run",
        target,
        "--registry",
        registry,
        "--a2a-port",
        "0",
        "--auth-public-key",
        str(test_keys().public_key_file),
        "--lease-ttl",
        "5",
        env=cli_env(tmp),
    )
    try:
        found = await running.wait_for(
            r"READY agent_id=(\S+) endpoint=(\S+)(?: metrics=\S+)? a2a=(\S+)", timeout=60
        )
    except BaseException:
        await running.stop()
        raise
    return AgentProcess(running, found.group(1), found.group(2), found.group(3))


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def agents(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Agents]:
    server, registry = await start_mesh()
    channel = grpc.aio.insecure_channel(server.address)
    started: list[AgentProcess] = []
    try:
        tmp = tmp_path_factory.mktemp("a2a")
        started.extend(
            await asyncio.gather(
                start_agent("meshwright.agent.samples:analyst_agent", server.address, tmp),
                start_agent("tests.agent._a2a_probe_agent:probe_agent", server.address, tmp),
            )
        )
        yield Agents(RemoteServiceClient(channel, REGISTRY_SERVICE), *started)
    finally:
        for agent in started:
            await agent.running.stop()
        await channel.close()
        await registry.stop()
        await server.stop(0)


def token(role: MeshRole = MeshRole.SERVICE, subject: str = "mesh") -> str:
    return test_keys().token(role, subject)


@pytest_asyncio.fixture(loop_scope="module")
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token()}"}) as client:
        yield client


async def client_for(url: str, http: httpx.AsyncClient, *, streaming: bool = False) -> Client:
    factory = ClientFactory(ClientConfig(httpx_client=http, streaming=streaming))
    return await factory.create_from_url(url)


def message(
    *parts: str | dict[str, Any],
    skill: str | None = None,
    context_id: str = "",
    metadata: dict[str, Any] | None = None,
) -> Message:
    out = Message(message_id="m-1", role=Role.ROLE_USER, context_id=context_id)
    for part in parts:
        if isinstance(part, str):
            out.parts.append(Part(text=part))
        else:
            p = Part()
            p.data.struct_value.update(part)
            out.parts.append(p)
    meta = dict(metadata or {})
    if skill is not None:
        meta["skill"] = skill
    if meta:
        out.metadata.update(meta)
    return out


async def send(client: Client, msg: Message, **config: Any) -> list[StreamResponse]:
    request = SendMessageRequest(message=msg, configuration=SendMessageConfiguration(**config))
    return [event async for event in client.send_message(request)]


async def run(client: Client, msg: Message) -> Task:
    events = await send(client, msg)
    assert len(events) == 1 and events[0].HasField("task"), events
    return events[0].task


def output(task: Task) -> dict[str, Any]:
    (artifact,) = [a for a in task.artifacts if a.name == "output"]
    (part,) = artifact.parts
    return dict(json_format.MessageToDict(part.data))


def status_meta(task_or_status: Any) -> dict[str, Any]:
    return dict(json_format.MessageToDict(task_or_status.message.metadata))


# --- the card ---------------------------------------------------------------------------


async def test_card_lists_skills_prices_streaming_and_the_bearer_scheme(agents: Agents) -> None:
    async with httpx.AsyncClient() as anonymous:  # the card needs no token
        card = await A2ACardResolver(anonymous, agents.analyst.url).get_agent_card()
    skills = {s.id: s for s in card.skills}
    assert {"text.upper", "text.wordcount", "demo.sleep", "demo.fail"} <= set(skills)
    assert skills["text.upper"].examples == ['{"text": "hello"}']
    assert prices(card)["text.upper"] == 1 and prices(card)["demo.sleep"] == 0
    assert any(e.uri == PRICING_EXTENSION for e in card.capabilities.extensions)
    assert card.capabilities.streaming
    assert card.supported_interfaces[0].url == agents.analyst.url
    assert card.security_schemes["bearer"].http_auth_security_scheme.scheme == "Bearer"
    assert [list(r.schemes) for r in card.security_requirements] == [["bearer"]]


async def test_the_registry_knows_the_a2a_url(agents: Agents) -> None:
    reply = await agents.registry.call(
        "GetAgent", registry_pb2.GetAgentRequest(agent_id=agents.analyst.agent_id)
    )
    assert reply.agent.card.metadata["a2a_url"] == agents.analyst.url


# --- send: each mapping rule ----------------------------------------------------------


async def test_send_blocks_until_the_task_is_done(agents: Agents, http: httpx.AsyncClient) -> None:
    client = await client_for(agents.analyst.url, http)
    task = await run(client, message("hello", skill="text.upper"))
    assert task.status.state == TaskState.TASK_STATE_COMPLETED
    assert output(task) == {"text": "HELLO"}


async def test_text_parts_are_joined_by_newlines(agents: Agents, http: httpx.AsyncClient) -> None:
    client = await client_for(agents.analyst.url, http)
    task = await run(client, message("one", "two", skill="text.upper"))
    assert output(task) == {"text": "ONE\nTWO"}


async def test_the_first_data_part_is_the_input(agents: Agents, http: httpx.AsyncClient) -> None:
    client = await client_for(agents.analyst.url, http)
    msg = message("ignored", {"text": "data"}, {"text": "second"}, skill="text.upper")
    assert output(await run(client, msg)) == {"text": "DATA"}


async def test_a_lone_skill_runs_without_being_named_and_sees_ids_and_metadata(
    agents: Agents, http: httpx.AsyncClient
) -> None:
    client = await client_for(agents.probe.url, http)
    msg = message(
        {"n": 1}, context_id="ctx-7", metadata={"who": "ann", "tries": 2, "at": [1.5, {"n": 3}]}
    )
    task = await run(client, msg)
    out = output(task)
    assert out["input"] == {"n": 1}
    # No "skill"; other values as strings, non-strings as JSON (integers stay integers).
    assert out["metadata"] == {"who": "ann", "tries": "2", "at": '[1.5,{"n":3}]'}
    assert out["context_id"] == "ctx-7" == task.context_id
    assert out["task_id"] == task.id  # our task id is the A2A task id
    (note,) = [a for a in task.artifacts if a.name == "note"]
    assert json_format.MessageToDict(note.parts[0].data) == {"seen": True}


async def test_no_skill_and_several_skills_is_invalid_params_naming_them(
    agents: Agents, http: httpx.AsyncClient
) -> None:
    client = await client_for(agents.analyst.url, http)
    with pytest.raises(InvalidParamsError, match=r"metadata\[\"skill\"\].*text\.upper"):
        await run(client, message("hello"))


async def test_an_unknown_skill_is_invalid_params(agents: Agents, http: httpx.AsyncClient) -> None:
    client = await client_for(agents.analyst.url, http)
    with pytest.raises(InvalidParamsError, match=r"'no\.such' is not offered.*demo\.sleep"):
        await run(client, message("x", skill="no.such"))


async def test_a_data_part_that_is_not_an_object_is_invalid_params(
    agents: Agents, http: httpx.AsyncClient
) -> None:
    client = await client_for(agents.analyst.url, http)
    msg = message(skill="text.upper")
    msg.parts.append(Part())
    msg.parts[0].data.list_value.values.add().string_value = "x"
    with pytest.raises(InvalidParamsError, match="JSON object"):
        await run(client, msg)


async def test_bad_input_is_a_rejected_task_with_reason(
    agents: Agents, http: httpx.AsyncClient
) -> None:
    client = await client_for(agents.analyst.url, http)
    task = await run(client, message({"no_text": 1}, skill="text.upper"))
    assert task.status.state == TaskState.TASK_STATE_REJECTED
    assert "input.text" in task.status.message.parts[0].text
    meta = status_meta(task.status)
    assert meta["reason"] == "TASK_REJECTED" and meta["non_retryable"] is True
    assert not [a for a in task.artifacts if a.name == "output"]


async def test_a_failing_skill_is_a_failed_task(agents: Agents, http: httpx.AsyncClient) -> None:
    client = await client_for(agents.analyst.url, http)
    task = await run(client, message({"key": "a2a-fail", "fail_times": 5}, skill="demo.fail"))
    assert task.status.state == TaskState.TASK_STATE_FAILED
    assert status_meta(task.status)["reason"] == "SKILL_ERROR"
    assert "non_retryable" not in status_meta(task.status)


# --- stream, get, cancel ----------------------------------------------------------------


async def test_stream_sends_progress_then_the_output_then_the_end(
    agents: Agents, http: httpx.AsyncClient
) -> None:
    client = await client_for(agents.analyst.url, http, streaming=True)
    events = await send(client, message({"seconds": 0.3}, skill="demo.sleep"))
    kinds = [e.WhichOneof("payload") for e in events]
    assert kinds[0] == "task" and events[0].task.status.state == TaskState.TASK_STATE_WORKING
    progress = [e.status_update for e in events[1:-2]]
    assert progress and all(u.status.state == TaskState.TASK_STATE_WORKING for u in progress)
    assert progress[-1].status.message.parts[0].text == "slept 0.30s of 0.30s"
    assert status_meta(progress[-1].status)["progress"] == 1.0
    assert kinds[-2] == "artifact_update" and events[-2].artifact_update.artifact.name == "output"
    final = events[-1].status_update
    assert final.status.state == TaskState.TASK_STATE_COMPLETED


async def test_stream_maps_our_artifacts(agents: Agents, http: httpx.AsyncClient) -> None:
    client = await client_for(agents.probe.url, http, streaming=True)
    events = await send(client, message({"n": 2}))
    names = [e.artifact_update.artifact.name for e in events if e.HasField("artifact_update")]
    assert names == ["note", "output"]
    halfway = [
        e.status_update
        for e in events
        if e.HasField("status_update") and e.status_update.status.message.parts
    ]
    assert halfway[0].status.message.parts[0].text == "halfway"
    assert status_meta(halfway[0].status)["progress"] == 0.5


async def test_get_returns_the_task_to_its_owner_only(
    agents: Agents, http: httpx.AsyncClient
) -> None:
    client = await client_for(agents.analyst.url, http)
    task = await run(client, message("get me", skill="text.upper"))
    got = await client.get_task(GetTaskRequest(id=task.id))
    assert got.status.state == TaskState.TASK_STATE_COMPLETED and output(got) == {"text": "GET ME"}
    other = {"Authorization": f"Bearer {token(MeshRole.ADMIN, 'ops')}"}
    async with httpx.AsyncClient(headers=other) as admin_http:
        admin = await client_for(agents.analyst.url, admin_http)
        with pytest.raises(TaskNotFoundError):
            await admin.get_task(GetTaskRequest(id=task.id))


async def test_cancel_stops_a_running_task(agents: Agents, http: httpx.AsyncClient) -> None:
    client = await client_for(agents.analyst.url, http, streaming=True)
    request = SendMessageRequest(message=message({"seconds": 20}, skill="demo.sleep"))
    stream = client.send_message(request)
    first = await anext(stream)
    task_id = first.task.id
    canceled = await client.cancel_task(CancelTaskRequest(id=task_id))
    assert canceled.status.state == TaskState.TASK_STATE_CANCELED
    got = await client.get_task(GetTaskRequest(id=task_id))
    assert got.status.state == TaskState.TASK_STATE_CANCELED
    await stream.aclose()


async def test_the_a2a_task_id_is_the_agent_task_id(
    agents: Agents, http: httpx.AsyncClient
) -> None:
    client = await client_for(agents.analyst.url, http, streaming=True)
    stream = client.send_message(
        SendMessageRequest(message=message({"seconds": 20}, skill="demo.sleep"))
    )
    first = await anext(stream)
    channel = grpc.aio.insecure_channel(agents.analyst.endpoint)
    try:
        native = RemoteServiceClient(channel, AGENT_SERVICE, token=token())
        reply = await native.call("CancelTask", agent_pb2.CancelTaskRequest(task_id=first.task.id))
        assert reply.task.status.state == agent_pb2.TASK_STATE_CANCELED
    finally:
        await channel.close()
    rest = [e async for e in stream]
    assert rest[-1].status_update.status.state == TaskState.TASK_STATE_CANCELED


async def test_non_blocking_send_returns_at_once(agents: Agents, http: httpx.AsyncClient) -> None:
    client = await client_for(agents.analyst.url, http)
    (event,) = await send(
        client, message({"seconds": 5}, skill="demo.sleep"), return_immediately=True
    )
    assert event.task.status.state == TaskState.TASK_STATE_WORKING
    canceled = await client.cancel_task(CancelTaskRequest(id=event.task.id))
    assert canceled.status.state == TaskState.TASK_STATE_CANCELED


async def test_cancel_of_a_finished_task_is_not_cancelable(
    agents: Agents, http: httpx.AsyncClient
) -> None:
    from a2a.utils.errors import TaskNotCancelableError

    client = await client_for(agents.analyst.url, http)
    task = await run(client, message("done", skill="text.upper"))
    with pytest.raises(TaskNotCancelableError):
        await client.cancel_task(CancelTaskRequest(id=task.id))


# --- auth ---------------------------------------------------------------------------------


def rpc(method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}


SEND_PARAMS = {
    "message": {
        "messageId": "m",
        "role": "ROLE_USER",
        "parts": [{"text": "hi"}],
        "metadata": {"skill": "text.upper"},
    }
}


@pytest.mark.parametrize("method", ["SendMessage", "SendStreamingMessage", "GetTask"])
async def test_no_token_is_401_with_a_json_rpc_body(agents: Agents, method: str) -> None:
    params = {"id": "whatever"} if method == "GetTask" else SEND_PARAMS
    async with httpx.AsyncClient() as anonymous:
        reply = await anonymous.post(
            agents.analyst.url, json=rpc(method, params), headers={"A2A-Version": "1.0"}
        )
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"].startswith("Bearer")
    body = reply.json()
    assert body["id"] == 7 and "bearer token" in body["error"]["message"]


async def test_a_bad_token_is_the_rpcs_401(agents: Agents) -> None:
    async with httpx.AsyncClient(headers={"Authorization": "Bearer not-a-jwt"}) as bad:
        client = await client_for(agents.analyst.url, bad)
        with pytest.raises(A2AClientError, match="401"):
            await run(client, message("hi", skill="text.upper"))


@pytest.mark.parametrize("streaming", [False, True])
async def test_a_client_token_on_an_agent_process_is_403(agents: Agents, streaming: bool) -> None:
    headers = {"Authorization": f"Bearer {token(MeshRole.CLIENT, 'ann')}"}
    async with httpx.AsyncClient(headers=headers) as client_http:
        client = await client_for(agents.analyst.url, client_http, streaming=streaming)
        with pytest.raises(A2AClientError, match="403"):
            await send(client, message("hi", skill="text.upper"))


async def test_a_json_rpc_error_is_never_a_500(agents: Agents, http: httpx.AsyncClient) -> None:
    reply = await http.post(
        agents.analyst.url,
        content=json.dumps(rpc("SendMessage", {"message": {"parts": "not a list"}})),
        headers={"A2A-Version": "1.0", "content-type": "application/json"},
    )
    assert reply.status_code == 200 and reply.json()["error"]["code"] == -32602


async def test_the_probe_agent_has_one_skill() -> None:
    # The single-skill rule above relies on it.
    from tests.agent._a2a_probe_agent import probe_agent

    assert list(probe_agent.skills) == ["probe.echo"]

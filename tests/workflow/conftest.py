"""Shared by the engine tests: a node, in-process agents (real gRPC), small DAG helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor, message
from google.rpc import status_pb2

from meshwright.agent import Agent, TaskContext
from meshwright.economy import Economy, EconomyServicer, MemoryLedgerStore
from meshwright.economy.v1 import economy_pb2
from meshwright.mesh import MeshServer
from meshwright.mesh._descriptors import methods_of
from meshwright.mesh.config import MeshConfig
from meshwright.mesh.errors import from_status_proto
from meshwright.mesh.pipeline import Pipeline
from meshwright.mesh.security import Security, insecure_pipeline
from meshwright.node import (
    AGENT_SERVICE,
    ECONOMY_SERVICE,
    WORKFLOW_SERVICE,
    Node,
    start_node,
)
from meshwright.workflow import EngineConfig
from meshwright.workflow.v1 import workflow_pb2
from tests.conftest import run_workflow
from tests.support_auth import TestKeys, test_keys

W = workflow_pb2


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    n = await start_node(
        MeshConfig(insecure_no_auth=True, grpc_port=0, http_port=0, grace_s=0),
        gateway=False,
        engine_config=EngineConfig(initial_backoff_s=0.01, agent_wait_s=0.5, handoff_grace_s=0.5),
    )
    try:
        yield n
    finally:
        await n.stop()


class Running:
    """Agents started in this process for one test."""

    def __init__(self) -> None:
        self.runtimes: list[Any] = []

    async def start(self, agent: Agent, node: Node, economy: str | None = None) -> str:
        rt = await agent.start(
            registry=node.grpc_address, economy=economy, lease_ttl_s=5, insecure_no_auth=True
        )
        await rt.wait_registered(10)
        self.runtimes.append(rt)
        return str(rt.agent_id)

    async def stop(self) -> None:
        for rt in self.runtimes:
            await rt.stop()


@pytest.fixture
async def agents() -> AsyncIterator[Running]:
    running = Running()
    try:
        yield running
    finally:
        await running.stop()


def echo_agent(name: str, *, price: int, capacity: int = 16, delay: float = 0.0) -> Agent:
    agent = Agent(name, capacity=capacity)
    agent.metadata_seen = {"now": 0, "max": 0}  # type: ignore[attr-defined]

    @agent.skill("x.echo", price=price)
    async def echo(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        seen = agent.metadata_seen  # type: ignore[attr-defined]
        seen["now"] += 1
        seen["max"] = max(seen["max"], seen["now"])
        try:
            await asyncio.sleep(delay)
        finally:
            seen["now"] -= 1
        return {"by": name, "upstream": sorted(ctx.upstream)}

    return agent


async def run(node: Node, data: dict[str, Any]) -> W.Workflow:
    """Run a workflow on ``node`` to its end."""
    wf: W.Workflow = await run_workflow(node.clients["workflow"], data)
    return wf


async def fund(node: Node, account: str, amount: int) -> None:
    await node.clients["economy"].call(
        "CreateAccount",
        economy_pb2.CreateAccountRequest(account_id=account, initial_balance=amount),
    )


def fan(n: int, **extra: Any) -> dict[str, Any]:
    return {"tasks": [{"id": f"t{i}", "skill": "x.echo"} for i in range(n)], **extra}


@dataclass
class Split:
    """Registry + workflow in one node, the economy behind a real network hop."""

    node: Node
    economy_address: str


@pytest.fixture
async def split(agents: Running) -> AsyncIterator[Split]:
    economy_server = MeshServer(pipeline=insecure_pipeline(), port=0, grace_s=0)
    economy_server.add(
        EconomyServicer(Economy(MemoryLedgerStore())),
        economy_pb2.DESCRIPTOR.services_by_name["EconomyService"],
    )
    await economy_server.start()
    node = await start_node(
        MeshConfig(insecure_no_auth=True, grpc_port=0, grace_s=0),
        services=("registry", "workflow"),
        economy_target=economy_server.address,
        gateway=False,
    )
    try:
        yield Split(node, economy_server.address)
    finally:
        await agents.stop()  # before the node they register with
        agents.runtimes.clear()
        await node.stop()
        await economy_server.stop(0)


# -- auth ON: a node that verifies tokens, raw gRPC callers, agents with agent tokens ---------


class Refused(Exception):
    """A call that failed: the status code as the wire carried it, and its details."""

    def __init__(self, code: grpc.StatusCode, reason: str, fields: list[str], meta: Any) -> None:
        super().__init__(f"{code.name} {reason} {fields}")
        self.code = code
        self.reason = reason
        self.fields = fields
        self.metadata: dict[str, str] = dict(meta)


def _refused(err: grpc.aio.AioRpcError) -> Refused:
    reason, fields, meta = "", [], {}
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)  # type: ignore[arg-type]
            parsed = from_status_proto(status)
            reason, meta = parsed.reason, parsed.metadata
            fields = [v.field for v in parsed.violations]
    return Refused(err.code(), reason, fields, meta)


class Wire:
    """Raw grpc.aio calls of one service with one bearer token: no meshwright client between."""

    def __init__(
        self, channel: grpc.aio.Channel, service: descriptor.ServiceDescriptor, token: str
    ) -> None:
        self._channel = channel
        self._service = service
        self._metadata = (("authorization", f"Bearer {token}"),)

    def _method(self, name: str) -> tuple[str, Any, Any]:
        info = methods_of(self._service)[name]
        return info.path, info.request_type, info.response_type

    async def call(self, name: str, request: message.Message, timeout: float = 10.0) -> Any:
        path, _, response = self._method(name)
        fn = self._channel.unary_unary(
            path,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response.FromString,
        )
        try:
            return await fn(request, metadata=self._metadata, timeout=timeout)
        except grpc.aio.AioRpcError as err:
            raise _refused(err) from None

    async def stream(self, name: str, request: message.Message, timeout: float = 10.0) -> list[Any]:
        path, _, response = self._method(name)
        fn = self._channel.unary_stream(
            path,
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response.FromString,
        )
        try:
            return [item async for item in fn(request, metadata=self._metadata, timeout=timeout)]
        except grpc.aio.AioRpcError as err:
            raise _refused(err) from None


@dataclass
class Secure:
    """An auth-on node (gateway included) and a way to call it as anyone."""

    node: Node
    keys: TestKeys
    channel: grpc.aio.Channel
    runtimes: list[Any]

    def token(self, who: str) -> str:
        role, _, subject = who.partition(":")
        return self.keys.token(role, subject)

    def workflows(self, who: str) -> Wire:
        return Wire(self.channel, WORKFLOW_SERVICE, self.token(who))

    def economy(self, who: str) -> Wire:
        return Wire(self.channel, ECONOMY_SERVICE, self.token(who))

    def mesh_agent(self, who: str) -> Wire:
        """The mesh's own AgentService (the skill router)."""
        return Wire(self.channel, AGENT_SERVICE, self.token(who))

    async def account(self, account_id: str, owner: str, balance: int) -> None:
        await self.economy("admin:root").call(
            "CreateAccount",
            economy_pb2.CreateAccountRequest(
                account_id=account_id, owner=owner, initial_balance=balance
            ),
        )

    async def balance(self, account_id: str) -> tuple[int, int]:
        """(balance, escrowed) of an account, read as admin."""
        reply = await self.economy("admin:root").call(
            "GetAccount", economy_pb2.GetAccountRequest(account_id=account_id)
        )
        return reply.account.balance, reply.account.escrowed

    async def start_agent(self, agent: Agent, agent_id: str) -> str:
        rt = await agent.start(
            registry=self.node.grpc_address,
            token=self.keys.token("agent", agent_id),
            auth_public_key=str(self.keys.public_key_file),
            lease_ttl_s=5,
        )
        self.runtimes.append(rt)
        await rt.wait_registered(10)
        return str(rt.agent_id)

    async def all_workflow_ids(self) -> list[str]:
        reply = await self.workflows("admin:root").call(
            "ListWorkflows", W.ListWorkflowsRequest(page_size=1000)
        )
        return [w.workflow_id for w in reply.workflows]


@pytest.fixture
async def secure() -> AsyncIterator[Secure]:
    keys = test_keys()
    security = Security(
        Pipeline(verifier=keys.verifier()), keys.token("service", "mesh"), None, keys.issuer()
    )
    node = await start_node(
        MeshConfig(grpc_port=0, http_port=0, grace_s=0, rate_limit_rps=0),
        security=security,
        engine_config=EngineConfig(initial_backoff_s=0.01, agent_wait_s=0.5),
    )
    # Larger than the mesh's own bound, so tests can show the server refusing on its own.
    channel = grpc.aio.insecure_channel(
        node.grpc_address,
        options=[
            ("grpc.max_send_message_length", 64 * 1024 * 1024),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ],
    )
    world = Secure(node, keys, channel, [])
    try:
        yield world
    finally:
        for rt in world.runtimes:
            await rt.stop()
        await channel.close()
        await node.stop()

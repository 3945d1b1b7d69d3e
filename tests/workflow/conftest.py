"""Shared by the engine tests: a node, in-process agents (real gRPC), small DAG helpers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest

from meshwright.agent import Agent, TaskContext
from meshwright.economy import Economy, EconomyServicer
from meshwright.economy.v1 import economy_pb2
from meshwright.mesh import MeshServer
from meshwright.mesh.config import MeshConfig
from meshwright.mesh.security import insecure_pipeline
from meshwright.node import Node, start_node
from meshwright.workflow import EngineConfig
from meshwright.workflow.v1 import workflow_pb2
from tests.conftest import run_workflow

W = workflow_pb2


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    n = await start_node(
        MeshConfig(insecure_no_auth=True, grpc_port=0, http_port=0, grace_s=0),
        gateway=False,
        engine_config=EngineConfig(initial_backoff_s=0.01, agent_wait_s=0.5),
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
        EconomyServicer(Economy()), economy_pb2.DESCRIPTOR.services_by_name["EconomyService"]
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

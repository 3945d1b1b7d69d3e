"""The whole mesh as `meshwright up` runs it: one node (registry, economy,
workflow, gateway) and real sample-agent processes under the supervisor."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest_asyncio

from meshwright.agent.supervisor import AgentSupervisor
from meshwright.economy.v1 import economy_pb2
from meshwright.mesh.client import ChannelPool, RemoteServiceClient
from meshwright.mesh.config import MeshConfig
from meshwright.node import Node, start_node
from meshwright.registry.v1 import registry_pb2
from meshwright.workflow import EngineConfig
from meshwright.workflow.v1 import workflow_pb2
from tests.conftest import eventually
from tests.support_auth import NO_AUTH_ENV


@dataclass
class Mesh:
    node: Node
    supervisor: AgentSupervisor
    registry: RemoteServiceClient
    economy: RemoteServiceClient
    workflows: RemoteServiceClient
    agent_ids: dict[str, str]  # agent name -> agent id

    async def balance(self, account_id: str) -> int:
        reply = await self.economy.call(
            "GetAccount", economy_pb2.GetAccountRequest(account_id=account_id)
        )
        return int(reply.account.balance)

    async def fund(self, account_id: str, amount: int) -> None:
        await self.economy.call(
            "CreateAccount",
            economy_pb2.CreateAccountRequest(account_id=account_id, initial_balance=amount),
        )

    async def events(self, workflow_id: str, after: int = 0) -> list[workflow_pb2.WorkflowEvent]:
        request = workflow_pb2.WatchWorkflowRequest(workflow_id=workflow_id, after_sequence=after)
        return [r.event async for r in self.workflows.stream("WatchWorkflow", request)]

    async def workflow(self, workflow_id: str) -> workflow_pb2.Workflow:
        reply = await self.workflows.call(
            "GetWorkflow", workflow_pb2.GetWorkflowRequest(workflow_id=workflow_id)
        )
        return reply.workflow


async def wait_active(registry: RemoteServiceClient, count: int) -> list[registry_pb2.Agent]:
    async def enough() -> list[registry_pb2.Agent] | None:
        page = await registry.call(
            "ListAgents",
            registry_pb2.ListAgentsRequest(state=registry_pb2.AGENT_STATE_ACTIVE),
        )
        return list(page.agents) if len(page.agents) >= count else None

    return await eventually(enough, timeout=30)


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def mesh() -> AsyncIterator[Mesh]:
    config = MeshConfig(
        insecure_no_auth=True,
        grpc_port=0,
        http_port=0,
        lease_ttl_s=3.0,
        sweep_interval_s=0.2,
        grace_s=1,
    )
    node = await start_node(
        config, engine_config=EngineConfig(initial_backoff_s=0.05, agent_wait_s=10.0)
    )
    pool = ChannelPool()
    try:
        async with AgentSupervisor(
            registry=node.grpc_address, lease_ttl_s=3.0, env=NO_AUTH_ENV
        ) as sup:
            await sup.start("meshwright.agent.samples:sysinfo_agent", name="sysinfo")
            await sup.start("meshwright.agent.samples:analyst_agent", name="analyst")
            registry = pool.client(node.grpc_address, _svc(registry_pb2, "RegistryService"))
            agents = await wait_active(registry, 2)
            yield Mesh(
                node=node,
                supervisor=sup,
                registry=registry,
                economy=pool.client(node.grpc_address, _svc(economy_pb2, "EconomyService")),
                workflows=pool.client(node.grpc_address, _svc(workflow_pb2, "WorkflowService")),
                agent_ids={a.card.name: a.agent_id for a in agents},
            )
    finally:
        await pool.close()
        await node.stop()


def _svc(module: object, name: str) -> object:
    return module.DESCRIPTOR.services_by_name[name]  # type: ignore[attr-defined]

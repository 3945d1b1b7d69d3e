"""A real registry (and economy) server on one port, like ``meshwright up`` serves them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest

from meshwright.economy import Economy, EconomyServicer, MemoryLedgerStore
from meshwright.economy.v1 import economy_pb2
from meshwright.mesh import MeshServer, NotFound, RemoteServiceClient
from meshwright.mesh.security import insecure_pipeline
from meshwright.registry import MemoryRegistryBackend, Registry, RegistryServicer
from meshwright.registry.v1 import registry_pb2

REGISTRY_SERVICE = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"]
ECONOMY_SERVICE = economy_pb2.DESCRIPTOR.services_by_name["EconomyService"]


@dataclass
class Mesh:
    address: str
    registry: Registry
    registry_client: RemoteServiceClient
    economy_client: RemoteServiceClient

    async def agent(self, agent_id: str) -> registry_pb2.Agent:
        reply = await self.registry_client.call(
            "GetAgent", registry_pb2.GetAgentRequest(agent_id=agent_id)
        )
        return reply.agent

    async def state(self, agent_id: str) -> int | None:
        """The agent's registry state; None when it is not registered."""
        try:
            return (await self.agent(agent_id)).state
        except NotFound:
            return None


async def start_mesh(port: int = 0, *, economy: bool = True) -> tuple[MeshServer, Registry]:
    registry = Registry(MemoryRegistryBackend(), sweep_interval_s=0.1)
    server = MeshServer(pipeline=insecure_pipeline(), port=port, grace_s=0)
    server.add(RegistryServicer(registry), REGISTRY_SERVICE)
    if economy:
        server.add(EconomyServicer(Economy(MemoryLedgerStore())), ECONOMY_SERVICE)
    await registry.start()
    await server.start()
    return server, registry


@pytest.fixture
async def mesh() -> AsyncIterator[Mesh]:
    server, registry = await start_mesh()
    channel = grpc.aio.insecure_channel(server.address)
    try:
        yield Mesh(
            server.address,
            registry,
            RemoteServiceClient(channel, REGISTRY_SERVICE),
            RemoteServiceClient(channel, ECONOMY_SERVICE),
        )
    finally:
        await channel.close()
        await registry.stop()
        await server.stop(0)

"""The composition root: which services run in this process, and how they meet.

``meshwright up`` runs every service in one process on one gRPC port; the
engine then reaches the registry and the economy through in-process clients
(same messages, same errors, no loopback hop). ``meshwright serve`` runs any
subset and reaches the rest over gRPC. The domains never import each other;
only this module knows all of them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from meshwright.agent.v1 import agent_pb2
from meshwright.economy import Economy, EconomyServicer
from meshwright.economy.v1 import economy_pb2
from meshwright.gateway import GatewayHandle, create_app, start_gateway
from meshwright.mesh.client import ChannelPool, LocalServiceClient, ServiceClient
from meshwright.mesh.config import MeshConfig, backend_scheme
from meshwright.mesh.server import MeshServer
from meshwright.registry import Registry, RegistryServicer
from meshwright.registry.v1 import registry_pb2
from meshwright.workflow import Engine, EngineConfig, SkillRouter, WorkflowServicer
from meshwright.workflow.v1 import workflow_pb2

log = logging.getLogger(__name__)

AGENT_SERVICE = agent_pb2.DESCRIPTOR.services_by_name["AgentService"]
REGISTRY_SERVICE = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"]
ECONOMY_SERVICE = economy_pb2.DESCRIPTOR.services_by_name["EconomyService"]
WORKFLOW_SERVICE = workflow_pb2.DESCRIPTOR.services_by_name["WorkflowService"]
ALL_SERVICES = ("registry", "economy", "workflow")


@dataclass
class Node:
    """The running services of this process."""

    config: MeshConfig
    server: MeshServer
    channels: ChannelPool
    registry: Registry | None = None
    economy: Economy | None = None
    engine: Engine | None = None
    gateway: GatewayHandle | None = None
    clients: dict[str, ServiceClient] = field(default_factory=dict)

    @property
    def grpc_address(self) -> str:
        """``host:port`` of the gRPC server."""
        return self.server.address

    @property
    def http_url(self) -> str | None:
        """Base URL of the gateway, if it runs here."""
        if self.gateway is None:
            return None
        return f"http://{self.config.host}:{self.gateway.port}"

    async def stop(self) -> None:
        """Stop in dependency order: gateway, engine, registry, gRPC server.

        The registry stops before the server so its open watches end at once
        (UNAVAILABLE) instead of holding graceful shutdown for the whole grace.
        """
        if self.gateway is not None:
            await self.gateway.stop()
        if self.engine is not None:
            await self.engine.stop()
        if self.registry is not None:
            await self.registry.stop()
        await self.server.stop()
        await self.channels.close()


async def start_node(
    config: MeshConfig,
    *,
    services: Sequence[str] = ALL_SERVICES,
    registry_target: str | None = None,
    economy_target: str | None = None,
    gateway: bool = True,
    engine_config: EngineConfig | None = None,
) -> Node:
    """Start ``services`` on one gRPC server (and the gateway in front of them).

    A service not run here is reached at its ``*_target`` address over gRPC.
    """
    unknown = set(services) - set(ALL_SERVICES)
    if unknown:
        raise ValueError(f"unknown services {sorted(unknown)}; choose from {ALL_SERVICES}")
    backend_scheme(config.registry_url, setting="registry_url", supported=("memory",))
    backend_scheme(config.store_url, setting="store_url", supported=("memory",))
    server = MeshServer(host=config.host, port=config.grpc_port, grace_s=config.grace_s)
    node = Node(config=config, server=server, channels=ChannelPool())

    if "registry" in services:
        node.registry = Registry(
            default_lease_ttl_s=config.lease_ttl_s, sweep_interval_s=config.sweep_interval_s
        )
        servicer: object = RegistryServicer(node.registry)
        server.add(servicer, REGISTRY_SERVICE)
        node.clients["registry"] = LocalServiceClient(servicer, REGISTRY_SERVICE)
    elif registry_target:
        node.clients["registry"] = node.channels.client(registry_target, REGISTRY_SERVICE)

    if "economy" in services:
        node.economy = Economy()
        servicer = EconomyServicer(node.economy)
        server.add(servicer, ECONOMY_SERVICE)
        node.clients["economy"] = LocalServiceClient(servicer, ECONOMY_SERVICE)
    elif economy_target:
        node.clients["economy"] = node.channels.client(economy_target, ECONOMY_SERVICE)

    if "workflow" in services:
        missing = [d for d in ("registry", "economy") if d not in node.clients]
        if missing:
            raise ValueError(
                f"the workflow service needs {' and '.join(missing)}: run them here or pass "
                + " and ".join(f"--{d}-target" for d in missing)
            )
        node.engine = Engine(
            registry=node.clients["registry"],
            economy=node.clients["economy"],
            channels=node.channels,
            config=engine_config,
        )
        servicer = WorkflowServicer(node.engine)
        server.add(servicer, WORKFLOW_SERVICE)
        node.clients["workflow"] = LocalServiceClient(servicer, WORKFLOW_SERVICE)
        # The mesh also answers AgentService itself, routing by skill.
        router = SkillRouter(node.engine)
        server.add(router, AGENT_SERVICE)
        node.clients["agent"] = LocalServiceClient(router, AGENT_SERVICE)

    try:
        if node.registry is not None:
            await node.registry.start()
        await server.start()
        if node.engine is not None:
            await node.engine.start()
        if gateway:
            fronted = [
                node.clients[n]
                for n in ("registry", "economy", "workflow", "agent")
                if n in node.clients and (n in services or n == "agent")
            ]
            app = create_app(fronted)
            node.gateway = await start_gateway(app, host=config.host, port=config.http_port)
    except BaseException:
        await node.stop()
        raise
    return node

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
from pathlib import Path

from google.protobuf.descriptor import ServiceDescriptor

from meshwright.agent.v1 import agent_pb2
from meshwright.economy import Economy, EconomyServicer, LedgerStore, MemoryLedgerStore, Params
from meshwright.economy.v1 import economy_pb2
from meshwright.gateway import GatewayHandle, create_app, start_gateway
from meshwright.mesh import policy
from meshwright.mesh.client import (
    ChannelPool,
    LocalServiceClient,
    RemoteServiceClient,
    ServiceClient,
)
from meshwright.mesh.config import MeshConfig, backend_scheme
from meshwright.mesh.errors import NotFound
from meshwright.mesh.security import Security
from meshwright.mesh.server import MeshServer
from meshwright.registry import MemoryRegistryBackend, Registry, RegistryServicer
from meshwright.registry.v1 import registry_pb2
from meshwright.workflow import (
    Engine,
    EngineConfig,
    MemoryWorkflowStore,
    SkillRouter,
    WorkflowServicer,
    WorkflowStore,
)
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
    security: Security
    server: MeshServer
    channels: ChannelPool
    registry: Registry | None = None
    economy: Economy | None = None
    engine: Engine | None = None
    workflow_store: WorkflowStore | None = None
    """The workflow store this node opened (and closes)."""
    ledger_store: LedgerStore | None = None
    """The ledger store this node opened (and closes)."""
    gateway: GatewayHandle | None = None
    clients: dict[str, ServiceClient] = field(default_factory=dict)
    """Clients of each service calling as this process (its service token)."""
    fronted: list[ServiceClient] = field(default_factory=list)
    """Clients the gateway uses: no identity of their own, they forward the caller's."""

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
        if self.workflow_store is not None:
            await self.workflow_store.close()
        if self.economy is not None:
            await self.economy.stop()
        if self.ledger_store is not None:
            await self.ledger_store.close()
        if self.registry is not None:
            await self.registry.stop()
        await self.server.stop()
        await self.channels.close()


def open_workflow_store(url: str, scheme: str, *, retention_s: float) -> WorkflowStore:
    """The workflow store a ``store_url`` names (redis is imported only for redis://)."""
    if scheme == "memory":
        return MemoryWorkflowStore(retention_s=retention_s)
    from meshwright.workflow.redis_store import RedisWorkflowStore

    return RedisWorkflowStore.from_url(url, retention_s=retention_s)


def load_economy_params(path: str) -> Params | None:
    """The economy's initial parameters from a JSON file (None: the defaults)."""
    if not path:
        return None
    try:
        return Params.from_config(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"economy parameters {path}: {err}") from None


def open_ledger_store(url: str, scheme: str) -> LedgerStore:
    """The economy's ledger store a ``store_url`` names (redis is imported only for redis://)."""
    if scheme == "memory":
        return MemoryLedgerStore()
    from meshwright.economy.redis_store import RedisLedgerStore

    return RedisLedgerStore.from_url(url)


async def start_node(
    config: MeshConfig,
    *,
    services: Sequence[str] = ALL_SERVICES,
    registry_target: str | None = None,
    economy_target: str | None = None,
    gateway: bool = True,
    engine_config: EngineConfig | None = None,
    security: Security | None = None,
    workflow_store: WorkflowStore | None = None,
    ledger_store: LedgerStore | None = None,
) -> Node:
    """Start ``services`` on one gRPC server (and the gateway in front of them).

    A service not run here is reached at its ``*_target`` address over gRPC.
    ``security`` (the pipeline, this process's token, TLS) is made from
    ``config`` when None. ``workflow_store`` replaces the one ``config.store_url`` names
    (replicas in one process sharing a store, in tests); the node does not close it, nor
    ``ledger_store``, which replaces the economy's the same way.
    """
    unknown = set(services) - set(ALL_SERVICES)
    if unknown:
        raise ValueError(f"unknown services {sorted(unknown)}; choose from {ALL_SERVICES}")
    backend_scheme(config.registry_url, setting="registry_url", supported=("memory",))
    store_scheme = backend_scheme(
        config.store_url, setting="store_url", supported=("memory", "redis", "rediss")
    )
    security = security or Security.from_config(config)
    pipeline = security.pipeline
    server = MeshServer(
        pipeline=pipeline,
        host=config.host,
        port=config.grpc_port,
        grace_s=config.grace_s,
        tls=security.tls,
    )
    channels = ChannelPool(tls=security.tls, token=security.token)
    node = Node(config=config, security=security, server=server, channels=channels)

    def local(
        name: str, servicer: object, service: ServiceDescriptor, *, mesh: bool = False
    ) -> None:
        """Serve ``servicer`` here; the node calls it in-process as itself, the gateway
        with each caller's own token (both through the pipeline)."""
        server.add(servicer, service, mesh=mesh)
        client = LocalServiceClient(servicer, service, pipeline, token=security.token, mesh=mesh)
        node.clients[name] = client
        node.fronted.append(client.with_token(None))

    if "registry" in services:
        node.registry = Registry(
            MemoryRegistryBackend(),
            default_lease_ttl_s=config.lease_ttl_s,
            sweep_interval_s=config.sweep_interval_s,
        )
        local("registry", RegistryServicer(node.registry), REGISTRY_SERVICE)
    elif registry_target:
        node.clients["registry"] = node.channels.client(registry_target, REGISTRY_SERVICE)
        node.fronted.append(
            RemoteServiceClient(node.channels.get(registry_target), REGISTRY_SERVICE)
        )

    if "economy" in services:
        # Backends chosen here, at the composition root.
        ledger = ledger_store
        if ledger is None:
            ledger = node.ledger_store = open_ledger_store(config.store_url, store_scheme)
        node.economy = Economy(
            ledger,
            params=load_economy_params(config.economy_params),
            idempotency_ttl_s=config.idempotency_ttl_s,
            maintenance_interval_s=config.economy_maintenance_s,
        )
        local("economy", EconomyServicer(node.economy), ECONOMY_SERVICE)
        pipeline.authorizer.register(policy.ACCOUNT, node.economy.owner_of)
        pipeline.authorizer.register(policy.ESCROW, node.economy.escrow_owner)
    elif economy_target:
        economy_client = node.channels.client(economy_target, ECONOMY_SERVICE)
        node.clients["economy"] = economy_client
        # The gateway fronts remote services too, over the same (TLS) channel,
        # forwarding each caller's own token.
        node.fronted.append(RemoteServiceClient(node.channels.get(economy_target), ECONOMY_SERVICE))

        async def remote_account_owner(account_id: str) -> str | None:
            try:
                reply = await economy_client.call(
                    "GetAccount", economy_pb2.GetAccountRequest(account_id=account_id)
                )
            except NotFound:
                return None
            return str(reply.account.owner)

        async def remote_escrow_owner(escrow_id: str) -> str | None:
            try:
                reply = await economy_client.call(
                    "GetEscrow", economy_pb2.GetEscrowRequest(escrow_id=escrow_id)
                )
            except NotFound:
                return None
            return str(reply.escrow.owner)

        pipeline.authorizer.register(policy.ACCOUNT, remote_account_owner)
        pipeline.authorizer.register(policy.ESCROW, remote_escrow_owner)

    if "workflow" in services:
        missing = [d for d in ("registry", "economy") if d not in node.clients]
        if missing:
            raise ValueError(
                f"the workflow service needs {' and '.join(missing)}: run them here or pass "
                + " and ".join(f"--{d}-target" for d in missing)
            )
        store = workflow_store
        if store is None:
            store = node.workflow_store = open_workflow_store(
                config.store_url, store_scheme, retention_s=config.workflow_retention_s
            )
        node.engine = Engine(
            registry=node.clients["registry"],
            economy=node.clients["economy"],
            store=store,
            channels=node.channels,
            config=engine_config or EngineConfig(lease_ttl_s=config.workflow_lease_ttl_s),
        )
        local("workflow", WorkflowServicer(node.engine), WORKFLOW_SERVICE)
        pipeline.authorizer.register(policy.WORKFLOW, node.engine.owner_of)
        # The mesh also answers AgentService itself, routing by skill.
        router = SkillRouter(node.engine.dispatcher, agent_wait_s=node.engine.config.agent_wait_s)
        local("agent", router, AGENT_SERVICE, mesh=True)

    try:
        if node.registry is not None:
            await node.registry.start()
        await server.start()
        if node.economy is not None:
            node.economy.start()
        if node.engine is not None:
            await node.engine.start()
        if gateway:
            origins = [o.strip() for o in config.cors_origins.split(",") if o.strip()]
            app = create_app(node.fronted, cors_origins=origins)
            node.gateway = await start_gateway(app, host=config.host, port=config.http_port)
    except BaseException:
        await node.stop()
        raise
    return node

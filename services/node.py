"""The composition root: which services run in this process, and how they meet.

``meshwright up`` runs every service in one process on one gRPC port; the
engine then reaches the registry and the economy through in-process clients
(same messages, same errors, no loopback hop). ``meshwright serve`` runs any
subset and reaches the rest over gRPC. The domains never import each other;
only this module knows all of them.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from meshwright.mesh.logs import AccessLog
from meshwright.mesh.metrics import (
    MeshMetrics,
    MetricsServer,
    metrics_enabled,
    metrics_route,
    serve_metrics,
)
from meshwright.mesh.security import Security
from meshwright.mesh.server import MeshServer
from meshwright.mesh.targets import service_client, split_targets
from meshwright.registry import (
    HealthCheckPolicy,
    MemoryRegistryBackend,
    Registry,
    RegistryBackend,
    RegistryServicer,
)
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

if TYPE_CHECKING:
    from meshwright.agent.manager import AgentManager

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
    consul: Any = None
    """The py-consul client of a consul:// registry (the mesh's services announce there)."""
    announcer: Any = None
    """The ``ServiceAnnouncer`` that registered this process's services in Consul."""
    followers: list[Any] = field(default_factory=list)
    """``ConsulEndpoints`` following the services this process calls but does not run."""
    balanced: list[Any] = field(default_factory=list)
    """``BalancedClient``s over those endpoints (closed at stop)."""
    fronted_channels: ChannelPool | None = None
    """Channels of the gateway's discovered clients (no token: they forward the caller's)."""
    metrics: MeshMetrics = field(default_factory=MeshMetrics)
    """This process's Prometheus metrics (scraped at the gateway's /metrics and the
    metrics port)."""
    metrics_server: MetricsServer | None = None
    """The ``--metrics-port`` endpoint, when asked for."""
    manager: AgentManager | None = None
    """The agent manager this node serves (its processes stop first)."""

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
        if self.manager is not None:
            # Agents leave first: they deregister while the registry still runs.
            await self.manager.close()
        if self.announcer is not None:
            # Out of discovery first, so nobody picks a replica that is going away.
            await self.announcer.withdraw_all()
        if self.gateway is not None:
            await self.gateway.stop()
        if self.metrics_server is not None:
            await self.metrics_server.close()
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
        for follower in self.followers:
            await follower.stop()
        for client in self.balanced:
            await client.close()
        await self.channels.close()
        if self.fronted_channels is not None:
            await self.fronted_channels.close()
        if self.consul is not None:
            await self.consul.close()


def open_registry_backend(config: MeshConfig, scheme: str) -> RegistryBackend:
    """The registry backend ``config.registry_url`` names (py-consul is imported only for
    consul://)."""
    if scheme == "memory":
        return MemoryRegistryBackend()
    from meshwright.registry.consul import ConsulRegistryBackend

    return ConsulRegistryBackend.from_url(
        config.registry_url,
        health_check_interval_s=config.health_check_interval_s or 5.0,
        health_check_timeout_s=config.health_check_timeout_s,
        deregister_after_s=config.deregister_after_s,
    )


def health_check_policy(config: MeshConfig) -> HealthCheckPolicy | None:
    """How the embedded registry probes agents (None: leases only)."""
    if config.health_check_interval_s <= 0:
        return None
    return HealthCheckPolicy(
        interval_s=config.health_check_interval_s,
        timeout_s=config.health_check_timeout_s,
        unhealthy_threshold=config.unhealthy_threshold,
    )


def advertised(config: MeshConfig, address: str) -> str:
    """``host:port`` other processes reach ``address`` (a bound server) at."""
    _, _, port = address.rpartition(":")
    host = config.advertise_host
    if not host:
        host = config.host if config.host not in ("", "0.0.0.0", "::") else socket.gethostname()
    return f"{host}:{port}"


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
    workflow_target: str | None = None,
    gateway: bool = True,
    engine_config: EngineConfig | None = None,
    security: Security | None = None,
    workflow_store: WorkflowStore | None = None,
    ledger_store: LedgerStore | None = None,
    metrics_port: int | None = None,
    manager: AgentManager | None = None,
) -> Node:
    """Start ``services`` on one gRPC server (and the gateway in front of them).

    A service not run here is reached at its ``*_target`` address over gRPC (or found in
    Consul on a consul:// registry); with no services and ``gateway``, the process is the
    REST gateway alone, in front of the others.
    ``security`` (the pipeline, this process's token, TLS) is made from
    ``config`` when None. ``workflow_store`` replaces the one ``config.store_url`` names
    (replicas in one process sharing a store, in tests); the node does not close it, nor
    ``ledger_store``, which replaces the economy's the same way. ``metrics_port``
    serves /metrics on a port of its own (0 picks one; None: only the gateway's).
    ``manager`` is served here as AgentManagerService (the node stops it first); the
    caller points its supervisor at the registry once the node runs.
    """
    unknown = set(services) - set(ALL_SERVICES)
    if unknown:
        raise ValueError(f"unknown services {sorted(unknown)}; choose from {ALL_SERVICES}")
    registry_scheme = backend_scheme(
        config.registry_url, setting="registry_url", supported=("memory", "consul", "consuls")
    )
    store_scheme = backend_scheme(
        config.store_url, setting="store_url", supported=("memory", "redis", "rediss")
    )
    security = security or Security.from_config(config)
    pipeline = security.pipeline
    if not any(isinstance(o, AccessLog) for o in pipeline.observers):
        pipeline.observers.append(AccessLog())  # a line per call at INFO
    # One metrics registry per pipeline: nodes sharing a pipeline (replicas in one
    # process, in tests) share its metrics.
    shared = [o for o in pipeline.observers if isinstance(o, MeshMetrics)]
    node_metrics = shared[0] if shared else MeshMetrics()
    counting = metrics_enabled()
    if not shared and counting:
        pipeline.observers.append(node_metrics)
    server = MeshServer(
        pipeline=pipeline,
        host=config.host,
        port=config.grpc_port,
        grace_s=config.grace_s,
        tls=security.tls,
    )
    channels = ChannelPool(tls=security.tls, token=security.token)
    node = Node(
        config=config, security=security, server=server, channels=channels, metrics=node_metrics
    )
    on_consul = registry_scheme in ("consul", "consuls")
    if on_consul:
        from meshwright.mesh.discovery import ServiceAnnouncer, open_consul

        node.consul = open_consul(config.registry_url)
        node.announcer = ServiceAnnouncer(
            node.consul,
            check_interval_s=config.health_check_interval_s or 5.0,
            check_timeout_s=config.health_check_timeout_s,
            deregister_after_s=config.deregister_after_s,
            tls=security.tls is not None,
        )
        node.fronted_channels = ChannelPool(tls=security.tls)

    def fronted_client(targets: str, service: ServiceDescriptor) -> ServiceClient:
        """The gateway's client of a remote service: same channels' TLS, no token of its
        own (it forwards each caller's)."""
        if len(split_targets(targets)) == 1:
            return RemoteServiceClient(node.channels.get(targets.strip()), service)
        if node.fronted_channels is None:
            node.fronted_channels = ChannelPool(tls=security.tls)
        return service_client(node.fronted_channels, targets, service)

    followed: dict[str, Any] = {}

    def discovered(
        name: str, service: ServiceDescriptor, *, fronted_only: bool = False
    ) -> ServiceClient:
        """A client of ``name``'s passing replicas in Consul (and the gateway's twin; only
        that with ``fronted_only``)."""
        from meshwright.mesh.balancer import BalancedClient
        from meshwright.mesh.discovery import SERVICE_NAMES, ConsulEndpoints

        endpoints = followed.get(name)
        if endpoints is None:
            endpoints = followed[name] = ConsulEndpoints(node.consul, SERVICE_NAMES[name])
            node.followers.append(endpoints)
        assert node.fronted_channels is not None
        fronted = BalancedClient(service, endpoints, node.fronted_channels)
        node.balanced.append(fronted)
        node.fronted.append(fronted)
        if fronted_only:
            return fronted
        client = BalancedClient(service, endpoints, node.channels)
        node.balanced.append(client)
        return client

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
            open_registry_backend(config, registry_scheme),
            default_lease_ttl_s=config.lease_ttl_s,
            sweep_interval_s=config.sweep_interval_s,
            deregister_after_s=config.deregister_after_s,
            stopped_retention_s=config.stopped_retention_s,
            health_check=health_check_policy(config),
            probe_channels=ChannelPool(tls=security.tls),
        )
        local("registry", RegistryServicer(node.registry), REGISTRY_SERVICE)
        if counting:
            node.registry.metrics = node.metrics
            node.metrics.agents_by_state(node.registry.agents_by_state)
    elif registry_target:
        node.clients["registry"] = service_client(node.channels, registry_target, REGISTRY_SERVICE)
        node.fronted.append(fronted_client(registry_target, REGISTRY_SERVICE))
    elif on_consul:
        node.clients["registry"] = discovered("registry", REGISTRY_SERVICE)

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
        node.economy.metrics = node.metrics if counting else None
        local("economy", EconomyServicer(node.economy), ECONOMY_SERVICE)
        pipeline.authorizer.register(policy.ACCOUNT, node.economy.owner_of)
        pipeline.authorizer.register(policy.ESCROW, node.economy.escrow_owner)
    elif economy_target or on_consul:
        economy_client: ServiceClient
        if economy_target:
            economy_client = service_client(node.channels, economy_target, ECONOMY_SERVICE)
            node.fronted.append(fronted_client(economy_target, ECONOMY_SERVICE))
        else:
            economy_client = discovered("economy", ECONOMY_SERVICE)
        node.clients["economy"] = economy_client

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

    if manager is not None:
        from meshwright.agent.manager_servicer import SERVICE as MANAGER_SERVICE
        from meshwright.agent.manager_servicer import AgentManagerServicer

        node.manager = manager
        local("manager", AgentManagerServicer(manager), MANAGER_SERVICE)

    if "workflow" in services:
        missing = [d for d in ("registry", "economy") if d not in node.clients]
        if missing:
            raise ValueError(
                f"the workflow service needs {' and '.join(missing)}: run them here, pass "
                + " and ".join(f"--{d}-target" for d in missing)
                + ", or use a consul:// registry to discover them"
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
            metrics=node.metrics if counting else None,
        )
        local("workflow", WorkflowServicer(node.engine), WORKFLOW_SERVICE)
        pipeline.authorizer.register(policy.WORKFLOW, node.engine.owner_of)
        # The mesh also answers AgentService itself, routing by skill.
        router = SkillRouter(node.engine.dispatcher, agent_wait_s=node.engine.config.agent_wait_s)
        local("agent", router, AGENT_SERVICE, mesh=True)
    elif gateway and (workflow_target or on_consul):
        # A gateway in front of workflow replicas elsewhere: their WorkflowService and the
        # mesh's AgentService (the skill router) are served there.
        for service in (WORKFLOW_SERVICE, AGENT_SERVICE):
            if workflow_target:
                node.fronted.append(fronted_client(workflow_target, service))
            else:
                discovered("workflow", service, fronted_only=True)

    try:
        for follower in node.followers:
            await follower.start()
        for follower in node.followers:
            if not await follower.wait_ready(5.0):
                log.warning("Consul has not answered for %s yet; still trying", follower.service)
        if node.registry is not None:
            await node.registry.start()
        await server.start()
        if node.economy is not None:
            node.economy.start()
        if node.engine is not None:
            await node.engine.start()
        if gateway:
            # Imported here: a2a-sdk (and pydantic) cost ~0.5 s of start-up that a
            # process without the gateway should not pay.
            from meshwright.agent.a2a.mesh import mesh_a2a_routes
            from meshwright.gateway.a2a_catalog import a2a_catalog_routes

            origins = [o.strip() for o in config.cors_origins.split(",") if o.strip()]
            # The A2A catalog (/a2a/agents, /.well-known/api-catalog) reads the registry
            # as this node; MESHWRIGHT_A2A_CATALOG_* settings.
            catalog = a2a_catalog_routes(
                node.clients.get("registry"), node.fronted, calls_need_token=pipeline.auth_enabled
            )
            # The mesh's skill router over A2A (/a2a/mesh), when this gateway fronts it.
            mesh_a2a = mesh_a2a_routes(
                node.clients.get("registry"), node.fronted, auth=pipeline.auth_enabled
            )
            app = create_app(
                node.fronted,
                cors_origins=origins,
                extra_routes=[metrics_route(node.metrics), *catalog, *mesh_a2a],
            )
            node.gateway = await start_gateway(app, host=config.host, port=config.http_port)
        if metrics_port is not None:
            node.metrics_server = await serve_metrics(
                node.metrics.registry, config.host, metrics_port
            )
        if node.announcer is not None:
            address = advertised(config, node.grpc_address)
            for name in ("registry", "economy", "workflow"):
                if name in services:
                    await node.announcer.announce(name, address)
            if node.gateway is not None:
                http = advertised(config, f"{config.host}:{node.gateway.port}")
                await node.announcer.announce("gateway", http, http_url=f"http://{http}")
            if config.consul_reannounce_s > 0:
                node.announcer.start_upkeep(config.consul_reannounce_s)
    except BaseException:
        await node.stop()
        raise
    return node

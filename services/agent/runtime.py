"""A running agent: its server, its registration, and an orderly stop."""

from __future__ import annotations

import asyncio
import inspect
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshwright.agent.registration import (
    ECONOMY_SERVICE,
    REGISTRY_SERVICE,
    Registration,
    lease_duration,
)
from meshwright.agent.results import DEFAULT_RESULT_MEMORY, DEFAULT_RESULT_TTL_S
from meshwright.agent.servicer import SERVICE, AgentServicer
from meshwright.mesh.auth import verifier_from_files
from meshwright.mesh.client import ChannelPool
from meshwright.mesh.limits import RateLimit, RateLimiter
from meshwright.mesh.metrics import MeshMetrics, MetricsServer, metrics_enabled, serve_metrics
from meshwright.mesh.pipeline import Pipeline
from meshwright.mesh.server import MeshServer
from meshwright.mesh.targets import service_client
from meshwright.mesh.tls import TlsConfig
from meshwright.registry.v1 import registry_pb2

if TYPE_CHECKING:
    from meshwright.agent.a2a.endpoint import AgentA2AEndpoint
    from meshwright.agent.agent import Agent

log = logging.getLogger(__name__)

_ANY_HOST = {"", "0.0.0.0", "::", "[::]"}


@dataclass(frozen=True, slots=True, kw_only=True)
class ServeOptions:
    """How an agent serves and registers."""

    registry: str | None = None
    """Registry address ``host:port``; None serves without registering."""
    host: str = "127.0.0.1"
    """Interface the agent's server binds."""
    port: int = 0
    """Port of the agent's server; 0 picks a free one."""
    economy: str | None = None
    """Economy address for the payout account; the registry's address when None."""
    lease_ttl_s: float = 10.0
    """Lease length asked of the registry; heartbeats go every third of it."""
    advertise_host: str | None = None
    """Host put in the registered endpoint; ``host`` (or the hostname for 0.0.0.0) when None."""
    grace_s: float = 5.0
    """How long in-flight tasks may finish when stopping."""
    agent_id: str | None = None
    """Registry id; the token's subject (role agent), else ``<name>-<random>``, when None.
    With an agent token it must be the token's subject (ValueError otherwise)."""
    token: str | None = None
    """This agent's bearer token (role ``agent``, subject = its agent id): what it calls the
    registry and the economy with (never the callers' tokens). The economy records the
    payout account it creates as owned by this token's principal."""
    auth_public_key: str = ""
    """PEM public key that verifies callers' tokens (only the mesh and admins may call)."""
    auth_hs256_secret: str = ""
    """Shared HS256 secret instead of a public key (single-machine setups only)."""
    insecure_no_auth: bool = False
    """Serve without checking tokens: anyone who reaches the port gets work done (logged)."""
    tls: TlsConfig | None = None
    """Mutual TLS for the agent's server and its calls to the mesh."""
    rate_limit_rps: float = 0.0
    """Calls per second per caller (0: off; the mesh is exempt as a service anyway)."""
    result_memory: int = DEFAULT_RESULT_MEMORY
    """Finished tasks remembered by task id, so a re-dispatch is answered without running
    the skill again (the oldest are forgotten first; 0 remembers none)."""
    result_ttl_s: float = DEFAULT_RESULT_TTL_S
    """How long a finished task is remembered, from when it finished (0 remembers none)."""
    metrics_port: int | None = None
    """Serve Prometheus metrics at http://<host>:<port>/metrics (0 picks a port; None: off)."""
    a2a_port: int | None = None
    """Also serve the A2A protocol at http://<host>:<port>/ (0 picks a port; None: off); its
    URL goes in the registered card's metadata (``a2a_url``) and the READY line."""


def token_subject(token: str | None) -> str | None:
    """The ``sub`` of our own token (read, not verified: the registry verifies it)."""
    sub = _claims(token).get("sub")
    return sub if isinstance(sub, str) and sub else None


def token_agent_id(token: str | None) -> str | None:
    """The agent id our own token binds us to: its subject when its role is ``agent``.

    None for no token or another role (an admin token registers whatever id it
    is given; its subject is a person, not an agent id).
    """
    if _claims(token).get("role") != "agent":
        return None
    return token_subject(token)


def _claims(token: str | None) -> dict[str, object]:
    if not token:
        return {}
    import jwt

    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return {}
    return claims if isinstance(claims, dict) else {}


def agent_id_of(options: ServeOptions, agent: Agent) -> str:
    """The id an agent registers under: the one asked for, else its token's, else a fresh one.

    ValueError when both are given and differ: the registry accepts an agent
    only under its token's subject, so such an agent could never register.
    """
    bound = token_agent_id(options.token)
    if options.agent_id and bound and options.agent_id != bound:
        raise ValueError(
            f"agent_id {options.agent_id!r} is not the subject of this agent's token "
            f"({bound!r}); an agent registers only as its token's subject"
        )
    return options.agent_id or bound or agent.new_agent_id()


def agent_pipeline(options: ServeOptions) -> Pipeline:
    """The pipeline an agent serves through: only the mesh (service) and admins get in."""
    limiter = (
        RateLimiter(
            RateLimit(rate_per_s=options.rate_limit_rps, burst=max(1, int(options.rate_limit_rps)))
        )
        if options.rate_limit_rps > 0
        else None
    )
    if options.insecure_no_auth:
        log.warning(
            "AUTHENTICATION IS OFF for this agent: anyone who reaches its port gets work done"
        )
        return Pipeline(verifier=None, limiter=limiter)
    verifier = verifier_from_files(
        public_key=options.auth_public_key, hs256_secret=options.auth_hs256_secret
    )
    return Pipeline(verifier=verifier, limiter=limiter)


class AgentRuntime:
    """An agent serving ``AgentService`` and, with a registry, keeping itself registered.

    Made by ``Agent.start``; ``stop`` drains, lets in-flight tasks finish within
    the grace period, and deregisters.
    """

    def __init__(self, agent: Agent, options: ServeOptions) -> None:
        self.agent = agent
        self.options = options
        self.agent_id = agent_id_of(options, agent)
        """The id this agent registers under (its token's subject for an agent token)."""
        self.servicer = AgentServicer(
            agent, result_memory=options.result_memory, result_ttl_s=options.result_ttl_s
        )
        self.metrics = MeshMetrics()
        """Calls served, tasks in flight, task latency and errors by skill."""
        pipeline = agent_pipeline(options)
        if metrics_enabled():
            self.servicer.runner.metrics = self.metrics
            pipeline.observers.append(self.metrics)
        self.metrics_server: MetricsServer | None = None
        self.pipeline = pipeline
        """What every call to this agent passes (gRPC and A2A alike)."""
        self.a2a: AgentA2AEndpoint | None = None
        """The A2A endpoint, when ``a2a_port`` is set."""
        self.server = MeshServer(
            pipeline=pipeline,
            host=options.host,
            port=options.port,
            grace_s=options.grace_s,
            tls=options.tls,
        )
        self.server.add(self.servicer, SERVICE)
        self.registration: Registration | None = None
        # Every outgoing call (registry, economy) carries this agent's own token, so the
        # registry binds the registration to it and the economy records it as the payout
        # account's owner.
        self._channels = ChannelPool(tls=options.tls, token=options.token)
        self._stop_requested = asyncio.Event()
        self._stopping: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        """``host:port`` the server is bound to."""
        return self.server.address

    @property
    def advertised_host(self) -> str:
        """The host put in what this agent announces (its endpoint, its A2A URL)."""
        host = self.options.advertise_host
        if not host:
            host = socket.gethostname() if self.options.host in _ANY_HOST else self.options.host
        return host

    @property
    def endpoint(self) -> str:
        """``host:port`` announced to the registry."""
        return f"{self.advertised_host}:{self.server.port}"

    @property
    def load(self) -> int:
        """Tasks in flight now."""
        return self.servicer.load

    @property
    def registered(self) -> bool:
        """Whether the agent holds a lease right now."""
        return bool(self.registration and self.registration.lease_id)

    async def start(self) -> None:
        """Serve, then register (one attempt inline; retries continue in the background)."""
        await self.server.start()
        if self.options.metrics_port is not None:
            self.metrics_server = await serve_metrics(
                self.metrics.registry, self.options.host, self.options.metrics_port
            )
        card = self.agent.card()
        if self.options.a2a_port is not None:
            # Imported only when asked for: a2a-sdk is heavy for an agent that does not use it.
            from meshwright.agent.a2a.endpoint import A2A_URL_KEY, serve_agent_a2a

            self.a2a = await serve_agent_a2a(
                self.servicer,
                card,
                self.pipeline,
                host=self.options.host,
                port=self.options.a2a_port,
                advertise_host=self.advertised_host,
                agent_id=self.agent_id,
                grace_s=self.options.grace_s,
            )
            card.metadata[A2A_URL_KEY] = self.a2a.url
        registry = self.options.registry
        if registry:
            economy = self.options.economy or registry
            request = registry_pb2.RegisterAgentRequest(
                agent_id=self.agent_id,
                card=card,
                endpoint=self.endpoint,
                tags=self.agent.tags,
                capacity=self.agent.capacity,
                lease_ttl=lease_duration(self.options.lease_ttl_s),
                payout_account_id=self.agent_id,
            )
            # Several addresses ("a:1,b:2") are registry replicas: heartbeats go to a
            # live one, so the agent stays registered when one of them dies.
            self.registration = Registration(
                service_client(self._channels, registry, REGISTRY_SERVICE),
                request,
                load=lambda: self.servicer.load,
                economy=service_client(self._channels, economy, ECONOMY_SERVICE),
            )
            await self.registration.start()
        for hook in self.agent.start_hooks:
            await _call_hook(hook, self)

    async def report_error(self, error: str) -> None:
        """Tell the registry this agent cannot do work (ERROR, ``error`` as the reason)
        until ``report_error("")``; for failures the agent sees itself (a model server
        down, a dependency missing)."""
        if self.registration is not None:
            await self.registration.report_error(error)

    async def report_health_detail(self, detail: str) -> None:
        """Tell the registry this agent works at reduced quality but still takes work
        (its ``health_detail``, e.g. ``DEGRADED: model server unreachable``) until
        ``report_health_detail("")``; its state is unchanged, unlike ``report_error``."""
        if self.registration is not None:
            await self.registration.report_health_detail(detail)

    async def wait_registered(self, timeout: float | None = None) -> None:
        """Block until the first registration succeeded (TimeoutError after ``timeout``)."""
        if self.registration is None:
            raise RuntimeError("this agent was started without a registry")
        async with asyncio.timeout(timeout):
            await self.registration.registered.wait()

    def request_stop(self) -> None:
        """Ask ``wait_stop_requested`` to return (safe from a signal handler)."""
        self._stop_requested.set()

    async def wait_stop_requested(self) -> None:
        """Block until ``request_stop`` or ``stop`` is called."""
        await self._stop_requested.wait()

    async def stop(self) -> None:
        """Drain, let in-flight tasks finish within the grace period, deregister; idempotent."""
        self._stop_requested.set()
        if self._stopping is None:
            self._stopping = asyncio.create_task(self._stop())
        await asyncio.shield(self._stopping)

    async def _stop(self) -> None:
        log.info("stopping %s (%d tasks in flight)", self.agent_id, self.load)
        try:
            if self.registration is not None:
                await self.registration.drain()
            if self.a2a is not None:
                await self.a2a.stop()
            await self.server.stop()
            for hook in self.agent.stop_hooks:
                try:
                    await _call_hook(hook, self)
                except Exception:  # one broken hook must not keep the agent registered
                    log.exception("stop hook %r of %s failed", hook, self.agent_id)
            if self.registration is not None:
                await self.registration.close(deregister=True)
        finally:
            self.servicer.runner.close()
            await self._channels.close()
            if self.metrics_server is not None:
                await self.metrics_server.close()


async def _call_hook(
    hook: Callable[[AgentRuntime], Awaitable[None] | None], rt: AgentRuntime
) -> None:
    result = hook(rt)
    if inspect.isawaitable(result):
        await result

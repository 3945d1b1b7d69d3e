"""``Agent``: a named set of skills, and the ways to serve it."""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeAlias, TypeVar

from meshwright.agent.runtime import AgentRuntime, ServeOptions
from meshwright.agent.skill import Skill, SkillFn
from meshwright.agent.v1 import agent_pb2
from meshwright.mesh.server import install_signal_handlers

F = TypeVar("F", bound=SkillFn)

LifecycleHook: TypeAlias = Callable[[AgentRuntime], Awaitable[None] | None]
"""``fn(runtime)``, sync or async: run by ``Agent.on_start`` / ``Agent.on_stop``."""
H = TypeVar("H", bound=LifecycleHook)

_NOT_ID = re.compile(r"[^A-Za-z0-9._:\-]+")


def new_agent_id(name: str) -> str:
    """A fresh registry id: ``name`` (made id-safe) plus a random suffix."""
    base = _NOT_ID.sub("-", name).strip("-._:")[:100] or "agent"
    return f"{base}-{secrets.token_hex(4)}"


class Agent:
    """An agent definition: identity, capacity and skills.

    ::

        agent = Agent("text-tools", description="...", version="1.0.0", capacity=16)

        @agent.skill("text.wordcount", description="Counts words", price=2)
        async def wordcount(input: dict, ctx: TaskContext) -> dict: ...

        agent.run(registry="127.0.0.1:50051")
    """

    def __init__(
        self,
        name: str,
        *,
        description: str = "",
        version: str = "0.1.0",
        capacity: int = 16,
        tags: Sequence[str] = (),
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        if not name:
            raise ValueError("an agent needs a name")
        if capacity < 0:
            raise ValueError("capacity must not be negative (0 is unlimited)")
        self.name = name
        self.description = description
        self.version = version
        self.capacity = capacity
        """Tasks run at once; 0 is unlimited."""
        self.tags = tuple(tags)
        self.metadata = dict(metadata or {})
        self.skills: dict[str, Skill] = {}
        """Skills by id."""
        self.start_hooks: list[LifecycleHook] = []
        """Run in order by each runtime once it serves and tried to register."""
        self.stop_hooks: list[LifecycleHook] = []
        """Run in order by each runtime once in-flight tasks ended, before it deregisters."""

    def on_start(self, fn: H) -> H:
        """Decorator: call ``fn(runtime)`` when a runtime of this agent has started.

        For what skill code cannot reach from a ``TaskContext``: background work
        bound to the runtime (a dependency probe), its metrics registry
        (``runtime.metrics.registry``), ``runtime.report_health_detail``. An
        exception stops the start (the runtime is stopped again).
        """
        self.start_hooks.append(fn)
        return fn

    def on_stop(self, fn: H) -> H:
        """Decorator: call ``fn(runtime)`` when a runtime of this agent stops, after its
        in-flight tasks ended and before it deregisters (close clients, stop background
        work). An exception is logged; the stop goes on."""
        self.stop_hooks.append(fn)
        return fn

    def skill(
        self,
        id: str,
        *,
        name: str = "",
        description: str = "",
        price: int = 0,
        tags: Sequence[str] = (),
        examples: Sequence[str] = (),
    ) -> Callable[[F], F]:
        """Decorator: offer ``fn(input, ctx)`` as skill ``id`` (async, or sync run in a thread)."""

        def register(fn: F) -> F:
            self.add_skill(
                Skill(
                    id=id,
                    fn=fn,
                    name=name,
                    description=description or (fn.__doc__ or "").strip(),
                    price=price,
                    tags=tuple(tags),
                    examples=tuple(examples),
                )
            )
            return fn

        return register

    def add_skill(self, skill: Skill) -> None:
        """Offer a skill; ValueError if its id is taken."""
        if skill.id in self.skills:
            raise ValueError(f"agent {self.name} already has a skill {skill.id}")
        self.skills[skill.id] = skill

    def card(self) -> agent_pb2.AgentCard:
        """The agent card served by GetAgentCard and sent to the registry."""
        return agent_pb2.AgentCard(
            name=self.name,
            description=self.description,
            version=self.version,
            skills=[s.to_proto() for s in self.skills.values()],
            capabilities=agent_pb2.AgentCapabilities(streaming=True, cancellation=True),
            metadata=self.metadata,
        )

    def new_agent_id(self) -> str:
        """A fresh registry id: the name plus a random suffix."""
        return new_agent_id(self.name)

    async def start(self, registry: str | None = None, **options: Any) -> AgentRuntime:
        """Serve this agent and register it; returns the running handle (``await rt.stop()``).

        ``options`` are the fields of ``ServeOptions`` (host, port, economy,
        lease_ttl_s, token, auth_public_key, insecure_no_auth, tls, ...).
        """
        if not self.skills:
            raise ValueError(f"agent {self.name} has no skills")
        runtime = AgentRuntime(self, ServeOptions(registry=registry, **options))
        try:
            await runtime.start()
        except BaseException:
            await runtime.stop()
            raise
        return runtime

    async def serve(
        self,
        registry: str | None = None,
        *,
        on_registered: Callable[[AgentRuntime], None] | None = None,
        **options: Any,
    ) -> None:
        """Serve until SIGTERM/SIGINT, then stop gracefully (``options`` as for ``start``).

        ``on_registered`` is called once, when the first registration succeeds
        (or right after start when there is no registry).
        """
        runtime = await self.start(registry, **options)
        install_signal_handlers(runtime.request_stop)
        announce: asyncio.Task[None] | None = None
        if on_registered is not None:
            announce = asyncio.create_task(_announce(runtime, on_registered))
        try:
            await runtime.wait_stop_requested()
        finally:
            if announce is not None:
                announce.cancel()
            await runtime.stop()

    def run(self, registry: str | None = None, **options: Any) -> None:
        """``serve`` in a new event loop: the sync entry point of an agent program."""
        asyncio.run(self.serve(registry, **options))

    def __repr__(self) -> str:
        return f"Agent({self.name!r}, skills={sorted(self.skills)})"


async def _announce(runtime: AgentRuntime, fn: Callable[[AgentRuntime], None]) -> None:
    if runtime.registration is not None:
        await runtime.wait_registered()
    fn(runtime)

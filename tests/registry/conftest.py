"""Fixtures: a registry on a fake clock, served by a real MeshServer on port 0."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from meshwright.agent.v1 import agent_pb2
from meshwright.mesh import LocalServiceClient, MeshServer, RemoteServiceClient, ServiceClient
from meshwright.mesh.errors import MeshError
from meshwright.mesh.security import insecure_pipeline
from meshwright.registry import SERVICE, MemoryRegistryBackend, Registry, RegistryServicer
from meshwright.registry.v1 import registry_pb2

T0 = 1_700_000_000.0


class FakeClock:
    """Epoch seconds that move only when a test says so."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def card(name: str = "text-tools", *skills: str, skill_tags: Iterable[str] = ()) -> Any:
    """An agent card offering ``skills`` (``text.wordcount`` when none)."""
    return agent_pb2.AgentCard(
        name=name,
        skills=[
            agent_pb2.AgentSkill(id=s, name=s, tags=list(skill_tags))
            for s in (skills or ("text.wordcount",))
        ],
    )


def register_request(
    agent_id: str = "a1",
    *skills: str,
    endpoint: str = "127.0.0.1:50051",
    ttl_s: float | None = None,
    **fields: Any,
) -> registry_pb2.RegisterAgentRequest:
    """A valid RegisterAgentRequest unless ``fields`` say otherwise."""
    fields.setdefault("card", card("text-tools", *skills))
    req = registry_pb2.RegisterAgentRequest(agent_id=agent_id, endpoint=endpoint, **fields)
    if ttl_s is not None:
        req.lease_ttl.CopyFrom(
            duration_pb2.Duration(seconds=int(ttl_s), nanos=round(ttl_s % 1 * 1e9))
        )
    return req


class Collector:
    """Reads a watch stream in the background so a test can wait for events."""

    def __init__(self, stream: AsyncIterator[registry_pb2.WatchAgentsResponse]) -> None:
        self.events: list[registry_pb2.WatchAgentsResponse] = []
        self.error: MeshError | None = None
        self._task = asyncio.create_task(self._run(stream))

    async def _run(self, stream: AsyncIterator[registry_pb2.WatchAgentsResponse]) -> None:
        try:
            async for event in stream:
                self.events.append(event)
        except MeshError as err:
            self.error = err

    def seen(self) -> list[tuple[str, str]]:
        """(event type without prefix, agent_id) of every event so far."""
        return [
            (
                registry_pb2.AgentEventType.Name(e.type).removeprefix("AGENT_EVENT_TYPE_"),
                e.agent.agent_id,
            )
            for e in self.events
        ]

    async def close(self) -> None:
        self._task.cancel()
        try:
            await self._task
        except asyncio.CancelledError:
            pass


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def registry(clock: FakeClock) -> AsyncIterator[Registry]:
    reg = Registry(
        MemoryRegistryBackend(), clock=clock, default_lease_ttl_s=10.0, deregister_after_s=60.0
    )
    try:
        yield reg
    finally:
        await reg.stop()


@contextlib.asynccontextmanager
async def serving(registry: Registry) -> AsyncIterator[MeshServer]:
    """``registry`` served on a real MeshServer on port 0, stopped on exit."""
    srv = MeshServer(pipeline=insecure_pipeline(), port=0)
    srv.add(RegistryServicer(registry), SERVICE)
    await srv.start()
    try:
        yield srv
    finally:
        await registry.stop()  # ends open watches, so the server stops at once
        await srv.stop(0)


@pytest.fixture
async def server(registry: Registry) -> AsyncIterator[MeshServer]:
    async with serving(registry) as srv:
        yield srv


@pytest.fixture
async def channel(server: MeshServer) -> AsyncIterator[grpc.aio.Channel]:
    ch = grpc.aio.insecure_channel(server.address)
    try:
        yield ch
    finally:
        await ch.close()


@pytest.fixture
def remote(channel: grpc.aio.Channel) -> RemoteServiceClient:
    return RemoteServiceClient(channel, SERVICE)


@pytest.fixture(params=["remote", "local"])
def client(
    request: pytest.FixtureRequest, registry: Registry, channel: grpc.aio.Channel
) -> ServiceClient:
    """The same tests over gRPC and in-process: same messages, same errors."""
    if request.param == "remote":
        return RemoteServiceClient(channel, SERVICE)
    return LocalServiceClient(RegistryServicer(registry), SERVICE, insecure_pipeline())

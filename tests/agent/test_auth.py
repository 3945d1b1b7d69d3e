"""An agent process with auth on: it answers only the mesh and admins, and it calls the
registry and the economy as itself (its own token; its id is the token's subject)."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from meshwright.agent import SERVICE, Agent, AgentRuntime, TaskContext
from meshwright.agent.v1 import agent_pb2
from meshwright.economy import Economy, EconomyServicer, MemoryLedgerStore
from meshwright.economy.v1 import economy_pb2
from meshwright.mesh import MeshServer, NotFound, RemoteServiceClient
from meshwright.mesh.auth import (
    AUDIENCE,
    TokenExpired,
    TokenInvalid,
    TokenIssuer,
    TokenMalformed,
    TokenMissing,
    generate_key_pair,
)
from meshwright.mesh.errors import MeshError, PermissionDenied, Unauthenticated
from meshwright.mesh.pipeline import Pipeline
from meshwright.mesh.policy import ACCOUNT, Authorizer, RoleNotAllowed
from meshwright.registry import MemoryRegistryBackend, Registry, RegistryServicer
from meshwright.registry.v1 import registry_pb2
from tests.agent.conftest import ECONOMY_SERVICE, REGISTRY_SERVICE
from tests.conftest import eventually
from tests.support_auth import test_keys

pytestmark = pytest.mark.timeout(30)

ACTIVE = registry_pb2.AGENT_STATE_ACTIVE


def make_agent() -> Agent:
    agent = Agent("auth-test", capacity=4)

    @agent.skill("text.upper", price=3)
    async def upper(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        return {"text": str(input.get("text", "")).upper()}

    return agent


class AuthMesh:
    """Registry and economy on one port with auth on, and admin clients to look inside."""

    def __init__(self, server: MeshServer, registry: Registry, channel: grpc.aio.Channel) -> None:
        keys = test_keys()
        self.address = server.address
        self.registry = registry
        self._channel = channel
        self.admin_registry = self.client(REGISTRY_SERVICE, keys.token("admin", "root"))
        self.admin_economy = self.client(ECONOMY_SERVICE, keys.token("admin", "root"))

    def client(self, service: Any, token: str) -> RemoteServiceClient:
        return RemoteServiceClient(self._channel, service, token=token)

    async def agent(self, agent_id: str) -> registry_pb2.Agent:
        reply = await self.admin_registry.call(
            "GetAgent", registry_pb2.GetAgentRequest(agent_id=agent_id)
        )
        return reply.agent

    async def account(self, account_id: str) -> economy_pb2.Account:
        reply = await self.admin_economy.call(
            "GetAccount", economy_pb2.GetAccountRequest(account_id=account_id)
        )
        return reply.account


@pytest.fixture
async def mesh() -> AsyncIterator[AuthMesh]:
    keys = test_keys()
    registry = Registry(MemoryRegistryBackend(), sweep_interval_s=0.1)
    economy = Economy(MemoryLedgerStore())
    pipeline = Pipeline(
        verifier=keys.verifier(), authorizer=Authorizer({ACCOUNT: economy.owner_of})
    )
    server = MeshServer(pipeline=pipeline, port=0, grace_s=0)
    server.add(RegistryServicer(registry), REGISTRY_SERVICE)
    server.add(EconomyServicer(economy), ECONOMY_SERVICE)
    await registry.start()
    await server.start()
    channel = grpc.aio.insecure_channel(server.address)
    try:
        yield AuthMesh(server, registry, channel)
    finally:
        await channel.close()
        await registry.stop()
        await server.stop(0)


def _auth(**options: Any) -> dict[str, Any]:
    return {"auth_public_key": str(test_keys().public_key_file), **options}


# -- registering as itself ---------------------------------------------------


async def test_agent_registers_heartbeats_and_deregisters_with_auth_on(mesh: AuthMesh) -> None:
    keys = test_keys()
    runtime = await make_agent().start(
        mesh.address, **_auth(token=keys.token("agent", "worker-1"), lease_ttl_s=1.0)
    )
    try:
        assert runtime.agent_id == "worker-1"  # the token's subject, not a generated id
        assert runtime.registered
        registration = runtime.registration
        assert registration is not None and registration.lease_id
        await eventually(lambda: registration.heartbeats >= 2)
        agent = await mesh.agent("worker-1")
        assert agent.state == ACTIVE and agent.endpoint == runtime.endpoint
        assert agent.payout_account_id == "worker-1"
        assert agent.lease_id == ""  # the admin does not see it; the agent used its own

        async def payout_account_is_its_own() -> bool:
            return (await mesh.account("worker-1")).owner == "agent:worker-1"

        await eventually(payout_account_is_its_own)
    finally:
        await runtime.stop()
    gone = await mesh.agent("worker-1")  # deregistered: kept as STOPPED for a while
    assert gone.state == registry_pb2.AGENT_STATE_STOPPED
    assert registration.heartbeats >= 3  # the draining one went through too


async def test_an_agent_id_that_is_not_the_tokens_subject_is_refused_at_start(
    mesh: AuthMesh,
) -> None:
    with pytest.raises(ValueError, match="subject"):
        await make_agent().start(
            mesh.address, **_auth(token=test_keys().token("agent", "worker-1"), agent_id="other")
        )


async def test_the_tokens_subject_given_as_agent_id_is_fine(mesh: AuthMesh) -> None:
    runtime = await make_agent().start(
        mesh.address, **_auth(token=test_keys().token("agent", "w2"), agent_id="w2")
    )
    try:
        assert runtime.registered and runtime.agent_id == "w2"
    finally:
        await runtime.stop()


async def test_an_admin_token_does_not_name_the_agent(mesh: AuthMesh) -> None:
    runtime = await make_agent().start(
        mesh.address, **_auth(token=test_keys().token("admin", "root"))
    )
    try:
        assert runtime.agent_id.startswith("auth-test-")  # not "root"
        assert runtime.registered
        assert (await mesh.agent(runtime.agent_id)).state == ACTIVE
    finally:
        await runtime.stop()


async def test_without_its_token_an_agent_does_not_get_registered(
    mesh: AuthMesh, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="meshwright.agent.registration")
    runtime = await make_agent().start(mesh.address, **_auth(agent_id="anon"))
    try:
        assert not runtime.registered
        with pytest.raises(NotFound):
            await mesh.agent("anon")
        refused = [r for r in caplog.records if "TOKEN_MISSING" in r.getMessage()]
        assert refused and refused[0].levelno == logging.ERROR
    finally:
        await runtime.stop()


async def test_a_squatted_payout_account_is_reported(
    mesh: AuthMesh, caplog: pytest.LogCaptureFixture
) -> None:
    """Someone opened an account under the agent's id first: its pay would go to them."""
    keys = test_keys()
    eve = mesh.client(ECONOMY_SERVICE, keys.token("client", "eve"))
    await eve.call("CreateAccount", economy_pb2.CreateAccountRequest(account_id="worker-3"))
    caplog.set_level(logging.ERROR, logger="meshwright.agent.registration")
    runtime = await make_agent().start(mesh.address, **_auth(token=keys.token("agent", "worker-3")))
    try:

        def reported() -> bool:
            return any("does not belong to this agent" in r.getMessage() for r in caplog.records)

        await eventually(reported)
        assert (await mesh.account("worker-3")).owner == "client:eve"
    finally:
        await runtime.stop()


async def test_a_restarted_agent_finds_its_own_payout_account_without_complaint(
    mesh: AuthMesh, caplog: pytest.LogCaptureFixture
) -> None:
    keys = test_keys()
    caplog.set_level(logging.INFO, logger="meshwright.agent.registration")

    def created() -> int:
        return sum("created payout account worker-4" in r.getMessage() for r in caplog.records)

    first = await make_agent().start(mesh.address, **_auth(token=keys.token("agent", "worker-4")))
    try:
        await eventually(lambda: created() == 1)
    finally:
        await first.stop()
    # The same request id: the economy replays the first create to the same owner.
    again = await make_agent().start(mesh.address, **_auth(token=keys.token("agent", "worker-4")))
    try:
        await eventually(lambda: created() == 2)
    finally:
        await again.stop()
    assert (await mesh.account("worker-4")).owner == "agent:worker-4"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- who may call an agent ---------------------------------------------------


@pytest.fixture
async def served_agent() -> AsyncIterator[AgentRuntime]:
    """An agent with auth on serving without a registry."""
    runtime = await make_agent().start(None, **_auth())
    try:
        yield runtime
    finally:
        await runtime.stop()


def _expired_token() -> str:
    keys = test_keys()
    key = serialization.load_pem_private_key(keys.private_pem, password=None)
    # Expired an hour ago, well past the verifier's 30 s clock-skew allowance.
    return TokenIssuer(key, clock=lambda: time.time() - 7200).issue("service", "mesh", ttl_s=3600)


def _foreign_token() -> str:
    """A well-formed service token signed by a key the agent does not trust."""
    private, _ = generate_key_pair()
    key = serialization.load_pem_private_key(private, password=None)
    return TokenIssuer(key).issue("service", "mesh")


def _wrong_audience_token() -> str:
    keys = test_keys()
    key = serialization.load_pem_private_key(keys.private_pem, password=None)
    now = int(time.time())
    claims = {"aud": "not-" + AUDIENCE, "sub": "mesh", "role": "service", "exp": now + 600}
    return jwt.encode(claims, key, algorithm="ES256")  # type: ignore[arg-type]


def _header(kind: str) -> list[tuple[str, str]]:
    keys = test_keys()
    tokens = {
        "service": lambda: keys.token("service", "mesh"),
        "admin": lambda: keys.token("admin", "root"),
        "client": lambda: keys.token("client", "alice"),
        "agent": lambda: keys.token("agent", "some-agent"),
        "expired": _expired_token,
        "foreign": _foreign_token,
        "audience": _wrong_audience_token,
        "garbage": lambda: "not-a-jwt",
    }
    if kind == "none":
        return []
    if kind == "basic":
        return [("authorization", "Basic dXNlcjpwYXNz")]
    return [("authorization", f"Bearer {tokens[kind]()}")]


REFUSED: dict[str, type[MeshError]] = {
    "none": TokenMissing,
    "basic": TokenMalformed,
    "garbage": TokenInvalid,
    "expired": TokenExpired,
    "foreign": TokenInvalid,
    "audience": TokenInvalid,
    "client": RoleNotAllowed,
    "agent": RoleNotAllowed,
}


@pytest.mark.parametrize("kind", sorted(REFUSED))
async def test_execute_task_is_refused_without_a_mesh_or_admin_token(
    served_agent: AgentRuntime, kind: str
) -> None:
    channel = grpc.aio.insecure_channel(served_agent.address)
    try:
        client = RemoteServiceClient(channel, SERVICE)
        request = agent_pb2.ExecuteTaskRequest(task_id="free-lunch", skill="text.upper")
        with pytest.raises(REFUSED[kind]) as err:
            await client.call("ExecuteTask", request, metadata=_header(kind))
        expected = RoleNotAllowed if kind in ("client", "agent") else Unauthenticated
        assert isinstance(err.value, PermissionDenied if expected is RoleNotAllowed else expected)
        assert served_agent.servicer.runner.load == 0
    finally:
        await channel.close()


@pytest.mark.parametrize("kind", ["client", "agent", "none"])
async def test_every_agent_rpc_is_closed_to_others(served_agent: AgentRuntime, kind: str) -> None:
    channel = grpc.aio.insecure_channel(served_agent.address)
    try:
        client = RemoteServiceClient(channel, SERVICE)
        md = _header(kind)
        with pytest.raises(REFUSED[kind]):
            await client.call("GetAgentCard", agent_pb2.GetAgentCardRequest(), metadata=md)
        with pytest.raises(REFUSED[kind]):
            await client.call("CancelTask", agent_pb2.CancelTaskRequest(task_id="t"), metadata=md)
        with pytest.raises(REFUSED[kind]):
            request = agent_pb2.StreamTaskRequest(task_id="t", skill="text.upper")
            async for _ in client.stream("StreamTask", request, metadata=md):
                pass
    finally:
        await channel.close()


@pytest.mark.parametrize("kind", ["service", "admin"])
async def test_the_mesh_and_admins_are_served(served_agent: AgentRuntime, kind: str) -> None:
    channel = grpc.aio.insecure_channel(served_agent.address)
    try:
        client = RemoteServiceClient(channel, SERVICE)
        request = agent_pb2.ExecuteTaskRequest(task_id=f"t-{kind}", skill="text.upper")
        request.input.update({"text": "hi"})
        reply = await client.call("ExecuteTask", request, metadata=_header(kind))
        assert reply.task.status.state == agent_pb2.TASK_STATE_COMPLETED
        assert reply.task.output["text"] == "HI"
        card = await client.call(
            "GetAgentCard", agent_pb2.GetAgentCardRequest(), metadata=_header(kind)
        )
        assert card.card.name == "auth-test"
        updates = [
            u
            async for u in client.stream(
                "StreamTask",
                agent_pb2.StreamTaskRequest(task_id=f"s-{kind}", skill="text.upper"),
                metadata=_header(kind),
            )
        ]
        assert updates[-1].final
    finally:
        await channel.close()


async def test_health_and_reflection_stay_open(served_agent: AgentRuntime) -> None:
    channel = grpc.aio.insecure_channel(served_agent.address)
    try:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=SERVICE.full_name))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING

        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        names: list[str] = []
        request = reflection_pb2.ServerReflectionRequest(list_services="")
        async for response in reflection.ServerReflectionInfo(iter([request])):
            names += [s.name for s in response.list_services_response.service]
        assert SERVICE.full_name in names
    finally:
        await channel.close()

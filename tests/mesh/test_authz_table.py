"""Every RPC x every kind of caller x every transport: the exact answer of the access policy.

Read from the contract's ``(meshwright.mesh.v1.access)`` options, so a new RPC
is in the table the moment it is declared. Callers: no token, a malformed
header, an expired token, a token signed by another key, and each role as the
owner of the resource the request names and as someone else. Transports:
gRPC to the mesh, the REST gateway, and in-process (the clients the gateway
itself uses). AgentService is checked twice: on the mesh (``mesh_access``,
the skill router) and on an agent process (``access``: only the mesh and
admins get work done).

A denied call must answer exactly UNAUTHENTICATED or PERMISSION_DENIED; an
allowed call must get past the policy (the domain then answers whatever the
deliberately harmless request deserves, never UNAUTHENTICATED or
PERMISSION_DENIED).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import grpc
import httpx
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives import serialization
from google.protobuf import descriptor, json_format, message

from meshwright.agent import Agent
from meshwright.agent.v1 import agent_pb2
from meshwright.economy.v1 import economy_pb2
from meshwright.gateway.binding import bindings_of
from meshwright.mesh._descriptors import methods_of
from meshwright.mesh.auth import Role, TokenIssuer, generate_key_pair
from meshwright.mesh.client import ChannelPool, ServiceClient
from meshwright.mesh.config import MeshConfig
from meshwright.mesh.errors import MeshError, from_status_proto
from meshwright.mesh.pipeline import Pipeline
from meshwright.mesh.policy import (
    ACCOUNT,
    AGENT,
    ESCROW,
    PRINCIPAL,
    WORKFLOW,
    Policy,
    field_value,
    policy_of,
)
from meshwright.mesh.security import Security
from meshwright.node import Node, start_node
from meshwright.registry.v1 import registry_pb2
from meshwright.workflow.v1 import workflow_pb2
from tests.conftest import eventually
from tests.support_auth import test_keys

AGENT_SERVICE = agent_pb2.DESCRIPTOR.services_by_name["AgentService"]
MESH_SERVICES = [
    AGENT_SERVICE,
    registry_pb2.DESCRIPTOR.services_by_name["RegistryService"],
    economy_pb2.DESCRIPTOR.services_by_name["EconomyService"],
    workflow_pb2.DESCRIPTOR.services_by_name["WorkflowService"],
]
UNAUTH = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED

# The resources every owned field names: alice's; bob owns nothing here.
ALICE_ACCOUNT = "acct-alice"
ALICE_AGENT = "agent-alice"
ALICE_ESCROW = "esc-alice"
OWNED_VALUE = {
    ACCOUNT: ALICE_ACCOUNT,
    AGENT: ALICE_AGENT,
    WORKFLOW: "wf-alice",
    ESCROW: ALICE_ESCROW,
    PRINCIPAL: "client:alice",
}


@dataclass(frozen=True)
class Caller:
    name: str
    header: str | None
    """The authorization header value; None sends none."""
    role: Role | None
    """None for callers that must be refused as unauthenticated."""
    owner: bool = False
    """Owns every resource the requests name (alice) or not (bob)."""


def _callers() -> list[Caller]:
    keys = test_keys()
    past = TokenIssuer(
        serialization.load_pem_private_key(keys.private_pem, password=None),
        clock=lambda: time.time() - 7200,
    )
    stranger_key, _ = generate_key_pair()
    stranger = TokenIssuer(serialization.load_pem_private_key(stranger_key, password=None))
    out = [
        Caller("no-token", None, None),
        Caller("malformed", "Basic YWxpY2U6c2VjcmV0", None),
        Caller("garbage-jwt", "Bearer not.a.jwt", None),
        Caller("expired", "Bearer " + past.issue(Role.ADMIN, "admin", ttl_s=60), None),
        Caller("wrong-key", "Bearer " + stranger.issue(Role.ADMIN, "admin"), None),
        Caller("admin", "Bearer " + keys.token(Role.ADMIN, "root"), Role.ADMIN),
        Caller("service", "Bearer " + keys.token(Role.SERVICE, "mesh"), Role.SERVICE),
    ]
    for role, owner_sub, other_sub in (
        (Role.AGENT, ALICE_AGENT, "agent-bob"),
        (Role.CLIENT, "alice", "bob"),
    ):
        out.append(
            Caller(f"{role.value}-owner", "Bearer " + keys.token(role, owner_sub), role, True)
        )
        out.append(Caller(f"{role.value}-other", "Bearer " + keys.token(role, other_sub), role))
    return out


CALLERS = _callers()


def harmless_request(method: descriptor.MethodDescriptor, policy: Policy) -> message.Message:
    """A request that names alice's resources in every owned field and changes nothing
    when allowed (amounts 0, required parts missing: the domain refuses it)."""
    request = methods_of(method.containing_service)[method.name].request_type()
    for owned in policy.owned:
        target: Any = request
        for name in owned.path[:-1]:
            target = getattr(target, name)
        setattr(target, owned.path[-1], OWNED_VALUE[owned.kind])
    if isinstance(request, workflow_pb2.WatchWorkflowRequest):
        pass  # the workflow is finished: the watch replays and ends
    if isinstance(request, registry_pb2.HeartbeatRequest):
        request.lease_id = "no-such-lease"
    return request


def expected(policy: Policy, caller: Caller) -> grpc.StatusCode | None:
    """The code the policy answers, None when the call must get past it."""
    if caller.role is None:
        return UNAUTH
    if caller.role not in policy.roles:
        return DENIED
    trusted = caller.role in (Role.ADMIN, Role.SERVICE)
    for owned in policy.owned:
        if trusted and not owned.strict:
            continue
        # alice the agent owns the agent id; alice the client the account, workflow,
        # escrow and her principal name.
        owns = caller.owner and (
            (caller.role is Role.AGENT and owned.kind == AGENT)
            or (caller.role is Role.CLIENT and owned.kind in (ACCOUNT, WORKFLOW, ESCROW, PRINCIPAL))
        )
        if not owns:
            return DENIED
    return None


@dataclass
class World:
    node: Node
    agent_address: str
    pool: ChannelPool
    http: httpx.AsyncClient
    workflow_id: str


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def world() -> AsyncIterator[World]:
    keys = test_keys()
    security = Security(
        Pipeline(verifier=keys.verifier()),
        keys.token(Role.SERVICE, "mesh"),
        None,
        keys.issuer(),
    )
    node = await start_node(
        MeshConfig(grpc_port=0, http_port=0, grace_s=0, rate_limit_rps=0), security=security
    )
    agent = Agent("free", description="a free echo")

    @agent.skill("echo.free", price=0)
    async def echo(input: dict[str, Any], ctx: Any) -> dict[str, Any]:
        return dict(input)

    runtime = await agent.start(
        node.grpc_address,
        token=keys.token(Role.AGENT, ALICE_AGENT),
        auth_public_key=str(keys.public_key_file),
        lease_ttl_s=5,
    )
    pool = ChannelPool()
    http = httpx.AsyncClient(base_url=node.http_url or "", timeout=10)
    try:
        await runtime.wait_registered(10)
        admin_md = [("authorization", "Bearer " + keys.token(Role.ADMIN, "root"))]
        economy = next(c for c in node.fronted if c.service.name == "EconomyService")
        await economy.call(
            "CreateAccount",
            economy_pb2.CreateAccountRequest(
                account_id=ALICE_ACCOUNT, owner="client:alice", initial_balance=100
            ),
            metadata=admin_md,
        )
        await economy.call(
            "OpenEscrow",
            economy_pb2.OpenEscrowRequest(
                escrow_id=ALICE_ESCROW, payer_account_id=ALICE_ACCOUNT, amount=10
            ),
            metadata=[("authorization", "Bearer " + keys.token(Role.SERVICE, "mesh"))],
        )
        workflows = next(c for c in node.fronted if c.service.name == "WorkflowService")
        alice_md = [("authorization", "Bearer " + keys.token(Role.CLIENT, "alice"))]
        await workflows.call(
            "CreateWorkflow",
            workflow_pb2.CreateWorkflowRequest(
                workflow_id="wf-alice",
                definition=workflow_pb2.WorkflowDefinition(
                    payer_account_id=ALICE_ACCOUNT,
                    tasks=[workflow_pb2.TaskSpec(id="t", skill="echo.free")],
                ),
            ),
            metadata=alice_md,
        )

        async def finished() -> bool:
            reply = await workflows.call(
                "GetWorkflow",
                workflow_pb2.GetWorkflowRequest(workflow_id="wf-alice"),
                metadata=admin_md,
            )
            return reply.workflow.state == workflow_pb2.WORKFLOW_STATE_SUCCEEDED

        await eventually(finished)
        yield World(node, runtime.address, pool, http, "wf-alice")
    finally:
        await http.aclose()
        await pool.close()
        await runtime.stop()
        await node.stop()


def _cases(services: list[descriptor.ServiceDescriptor], *, rest: bool = False) -> list[Any]:
    """Every method x every caller; ``rest``: only methods the gateway serves (client
    streams are gRPC only)."""
    out = []
    for service in services:
        for method in service.methods:
            if rest and method.client_streaming:
                continue
            for caller in CALLERS:
                out.append(pytest.param(method, caller, id=f"{method.name}-{caller.name}"))
    return out


async def _grpc_code(
    client: ServiceClient,
    method: descriptor.MethodDescriptor,
    request: message.Message,
    caller: Caller,
) -> grpc.StatusCode | None:
    metadata = [] if caller.header is None else [("authorization", caller.header)]
    try:
        if method.client_streaming:  # one exchange: its answer carries a per-message error
            async with asyncio.timeout(5):
                async for reply in client.exchange(method.name, _one(request), metadata=metadata):
                    if reply.HasField("error"):
                        return _code_of(from_status_proto(reply.error))
                    return None
        elif method.server_streaming:
            async with asyncio.timeout(0.5):
                async for _ in client.stream(method.name, request, metadata=metadata):
                    pass
        else:
            await client.call(method.name, request, metadata=metadata, timeout=5)
    except TimeoutError:
        return None  # a live stream the policy let through
    except MeshError as err:
        return _code_of(err)
    return None


async def _one(request: message.Message) -> AsyncIterator[message.Message]:
    yield request


def _code_of(err: MeshError) -> grpc.StatusCode:
    from meshwright.mesh.errors import grpc_code

    return grpc_code(err)


def _check(code: grpc.StatusCode | None, want: grpc.StatusCode | None, where: str) -> None:
    if want is None:
        assert code not in (UNAUTH, DENIED), f"{where}: the policy refused an allowed caller"
    else:
        assert code == want, f"{where}: got {code}, want {want}"


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("method", "caller"), _cases(MESH_SERVICES))
async def test_grpc_and_in_process(world: World, method: Any, caller: Caller) -> None:
    mesh = method.containing_service is AGENT_SERVICE
    policy = policy_of(method, mesh=mesh)
    want = expected(policy, caller)
    remote = world.pool.client(world.node.grpc_address, method.containing_service)
    code = await _grpc_code(remote, method, harmless_request(method, policy), caller)
    _check(code, want, "gRPC")
    local = next(c for c in world.node.fronted if c.service is method.containing_service)
    code = await _grpc_code(local, method, harmless_request(method, policy), caller)
    _check(code, want, "in-process")


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("method", "caller"), _cases([AGENT_SERVICE]))
async def test_agent_process(world: World, method: Any, caller: Caller) -> None:
    policy = policy_of(method)
    want = expected(policy, caller)
    remote = world.pool.client(world.agent_address, AGENT_SERVICE)
    code = await _grpc_code(remote, method, harmless_request(method, policy), caller)
    _check(code, want, "agent gRPC")


_HTTP_CODES = {401: UNAUTH, 403: DENIED}


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize(("method", "caller"), _cases(MESH_SERVICES, rest=True))
async def test_rest(world: World, method: Any, caller: Caller) -> None:
    mesh = method.containing_service is AGENT_SERVICE
    policy = policy_of(method, mesh=mesh)
    want = expected(policy, caller)
    binding = next(b for b in bindings_of(method.containing_service) if b.rpc == method.name)
    request = harmless_request(method, policy)
    path = binding.template.text
    body = json_format.MessageToDict(request)
    for name in _path_variables(path):
        value = field_value(request, tuple(name.split(".")))
        path = path.replace("{" + name + "}", quote(str(value or "x"), safe=""))
        body.pop(name.split(".")[0], None)
    headers = {"content-type": "application/json"}
    if caller.header is not None:
        headers["authorization"] = caller.header
    try:
        if binding.server_streaming:
            async with (
                asyncio.timeout(1.0),
                world.http.stream(binding.http_method, path, headers=headers) as reply,
            ):
                status = reply.status_code
        elif binding.http_method in ("GET", "DELETE"):
            # The rest of the request goes in the query (an owned `owner` filter, say).
            params = {k: v for k, v in body.items() if isinstance(v, str)}
            reply = await world.http.request(
                binding.http_method, path, headers=headers, params=params
            )
            status = reply.status_code
        else:
            content = json_format.MessageToJson(request) if binding.body == "*" else "{}"
            reply = await world.http.request(
                binding.http_method, path, headers=headers, content=content
            )
            status = reply.status_code
    except TimeoutError:
        status = 200
    assert status != 500, f"REST {binding.http_method} {path}: 500"
    _check(_HTTP_CODES.get(status), want, f"REST {binding.http_method} {path} ({status})")


def _path_variables(template: str) -> list[str]:
    out = []
    rest = template
    while "{" in rest:
        start = rest.index("{")
        end = rest.index("}", start)
        out.append(rest[start + 1 : end].split("=")[0])
        rest = rest[end + 1 :]
    return out


def test_the_table_covers_every_rpc_and_every_role() -> None:
    """The table is generated from the contract; an RPC without a policy cannot be served."""
    covered = {(p.values[0].full_name, p.values[1].name) for p in _cases(MESH_SERVICES)}
    for service in MESH_SERVICES:
        for method in service.methods:
            assert {c for m, c in covered if m == method.full_name} == {c.name for c in CALLERS}
    for service in MESH_SERVICES:
        for method in service.methods:
            policy = policy_of(method)
            assert policy.roles, f"{method.full_name} lets nobody in"
    assert {c.role for c in CALLERS} == {None, *Role}

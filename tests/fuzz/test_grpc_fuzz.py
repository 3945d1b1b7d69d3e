"""Random requests for every RPC of a running auth-on mesh, over a real gRPC channel.

Every method of every service the mesh serves (its AgentService router, the
registry, the economy, the workflow service) gets random bytes and random field
values of every type (see ``wire``), as an admin (so requests reach the
domains), a client, an agent, and with no token. Whatever comes in, the answer
is never UNKNOWN or INTERNAL, the server keeps answering its health check, and
a rejected request changes nothing: the fixed accounts, the ledger totals, the
workflows and the registered agents are compared before and after.

Bounded: ``MESHWRIGHT_FUZZ_EXAMPLES`` examples per method (default 30), against
127.0.0.1 only (registered endpoints are loopback addresses too).
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from meshwright.economy.memory_store import MemoryLedgerStore
from meshwright.economy.model import AccountKind
from meshwright.economy.v1 import economy_pb2
from meshwright.mesh.config import MeshConfig
from meshwright.mesh.pipeline import Pipeline
from meshwright.mesh.security import Security
from meshwright.node import (
    AGENT_SERVICE,
    ECONOMY_SERVICE,
    REGISTRY_SERVICE,
    WORKFLOW_SERVICE,
    Node,
    start_node,
)
from meshwright.registry.v1 import registry_pb2
from meshwright.workflow.v1 import workflow_pb2
from tests.fuzz.wire import request_bytes
from tests.support_auth import test_keys

EXAMPLES = int(os.environ.get("MESHWRIGHT_FUZZ_EXAMPLES", "30"))
ACCOUNTS = {"fz-alice": "client:alice", "fz-bob": "client:bob"}
"""Accounts made at start (1000 each, 100 staked); their ids are in the fuzz's string pool."""
FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
LIVE_WORKFLOW = {workflow_pb2.WORKFLOW_STATE_PENDING, workflow_pb2.WORKFLOW_STATE_RUNNING}
STREAM_WAIT_S = 0.15
"""How long an accepted stream is read before the fuzz moves on (watches never end)."""
UNARY_DEADLINE_S = 10.0

METHODS = [
    m
    for s in (AGENT_SERVICE, REGISTRY_SERVICE, ECONOMY_SERVICE, WORKFLOW_SERVICE)
    for m in s.methods
]


@dataclass
class Mesh:
    """An auth-on node served from an event loop in a thread of its own.

    Hypothesis drives plain functions, so the fuzz calls through a blocking
    channel while the node runs in its own loop, as a remote server would.
    """

    node: Node
    loop: asyncio.AbstractEventLoop
    channel: grpc.Channel
    tokens: dict[str, str | None]

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def unary(self, service: str, method: str, request: Any, response: Any) -> Any:
        call = self.channel.unary_unary(
            f"/{service}/{method}",
            request_serializer=lambda m: m.SerializeToString(),
            response_deserializer=response.FromString,
        )
        return call(request, metadata=self.auth("admin"), timeout=UNARY_DEADLINE_S)

    def auth(self, who: str) -> list[tuple[str, str]]:
        token = self.tokens[who]
        return [] if token is None else [("authorization", f"Bearer {token}")]


@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    keys = test_keys()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fuzzed-mesh", daemon=True)
    thread.start()
    # No rate limiter: the fuzz is a flood by design, and 429s would hide the domains.
    security = Security(
        Pipeline(verifier=keys.verifier()), keys.token("service", "mesh"), None, keys.issuer()
    )
    config = MeshConfig(grpc_port=0, grace_s=0, lease_ttl_s=2.0)
    node = asyncio.run_coroutine_threadsafe(
        start_node(config, gateway=False, security=security), loop
    ).result(30)
    channel = grpc.insecure_channel(node.grpc_address)
    mesh = Mesh(
        node,
        loop,
        channel,
        {
            "admin": keys.token("admin", "root"),
            "client": keys.token("client", "alice"),
            "agent": keys.token("agent", "fz-agent"),
            "none": None,
        },
    )
    try:
        for account_id, owner in ACCOUNTS.items():
            mesh.unary(
                ECONOMY_SERVICE.full_name,
                "CreateAccount",
                economy_pb2.CreateAccountRequest(
                    account_id=account_id, owner=owner, initial_balance=1000
                ),
                economy_pb2.CreateAccountResponse,
            )
        yield mesh
    finally:
        channel.close()
        asyncio.run_coroutine_threadsafe(node.stop(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@dataclass(frozen=True)
class Snapshot:
    accounts: tuple[tuple[str, int, int, int], ...]
    ledger: tuple[object, ...]
    """Transactions, accounts, each asset's supply, and the CREDIT held in escrows (last)."""
    workflows: int
    live_workflows: int
    agents: frozenset[str]


def snapshot(mesh: Mesh) -> Snapshot:
    """What a rejected request must not change, read as an admin over gRPC."""
    accounts = []
    for account_id in ACCOUNTS:
        got = mesh.unary(
            ECONOMY_SERVICE.full_name,
            "GetAccount",
            economy_pb2.GetAccountRequest(account_id=account_id),
            economy_pb2.GetAccountResponse,
        ).account
        accounts.append((account_id, got.balance, got.staked, got.escrowed))
    workflows: list[Any] = []
    token = ""
    while True:
        page = mesh.unary(
            WORKFLOW_SERVICE.full_name,
            "ListWorkflows",
            workflow_pb2.ListWorkflowsRequest(page_size=1000, page_token=token),
            workflow_pb2.ListWorkflowsResponse,
        )
        workflows.extend(page.workflows)
        token = page.next_page_token
        if not token:
            break
    agents: set[str] = set()
    token = ""
    while True:
        listed = mesh.unary(
            REGISTRY_SERVICE.full_name,
            "ListAgents",
            registry_pb2.ListAgentsRequest(page_size=1000, page_token=token),
            registry_pb2.ListAgentsResponse,
        )
        agents.update(a.agent_id for a in listed.agents)
        token = listed.next_page_token
        if not token:
            break
    return Snapshot(
        accounts=tuple(accounts),
        ledger=mesh.run(_ledger(mesh.node)),
        workflows=len(workflows),
        live_workflows=sum(w.state in LIVE_WORKFLOW for w in workflows),
        agents=frozenset(agents),
    )


async def _ledger(node: Node) -> tuple[object, ...]:
    # Read in the node's loop: the store's dicts are not for other threads.
    economy = node.economy
    assert economy is not None
    assert isinstance(economy.store, MemoryLedgerStore)
    report = await economy.audit()
    assert report.ok, report  # every call left the ledger balanced, accepted or not
    escrows = await economy.list_accounts(kind=AccountKind.ESCROW, page_size=1000)
    held = sum(a.balance for a in escrows.items)
    return (report.transaction_count, report.account_count, report.supplies, held)


def serving(mesh: Mesh) -> bool:
    stub = health_pb2_grpc.HealthStub(mesh.channel)
    reply = stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def send(mesh: Mesh, method: descriptor.MethodDescriptor, data: bytes, who: str) -> Any:
    """The status code of one raw call (OK for a stream still open after a moment)."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    if not method.server_streaming:
        try:
            mesh.channel.unary_unary(path)(data, metadata=mesh.auth(who), timeout=UNARY_DEADLINE_S)
        except grpc.RpcError as err:
            return err
        return grpc.StatusCode.OK
    call = mesh.channel.unary_stream(path)(data, metadata=mesh.auth(who), timeout=STREAM_WAIT_S)
    try:
        for _ in call:
            pass
    except grpc.RpcError as err:
        if err.code() is grpc.StatusCode.DEADLINE_EXCEEDED:
            return grpc.StatusCode.OK  # accepted: our deadline ended a stream still open
        return err
    return grpc.StatusCode.OK


@pytest.mark.timeout(300)
@pytest.mark.parametrize("method", METHODS, ids=lambda m: f"{m.containing_service.name}.{m.name}")
def test_random_requests_never_break_the_server(
    mesh: Mesh, method: descriptor.MethodDescriptor
) -> None:
    before = [snapshot(mesh)]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        database=None,
    )
    @given(
        data=request_bytes(method.input_type),
        who=st.sampled_from(["admin", "admin", "client", "agent", "none"]),
    )
    def check(data: bytes, who: str) -> None:
        outcome = send(mesh, method, data, who)
        code = outcome if isinstance(outcome, grpc.StatusCode) else outcome.code()
        detail = "" if isinstance(outcome, grpc.StatusCode) else outcome.details()
        assert code not in FORBIDDEN, (method.full_name, who, data[:200], detail)
        if not method.server_streaming:
            assert code is not grpc.StatusCode.DEADLINE_EXCEEDED, (method.full_name, data[:200])
        if who == "none":
            assert code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.INVALID_ARGUMENT), (
                code,
                detail,
            )
        assert serving(mesh)
        after = snapshot(mesh)
        if code is not grpc.StatusCode.OK:
            old = before[0]
            assert after.workflows == old.workflows, (method.full_name, who, detail)
            assert after.agents <= old.agents, (method.full_name, who, detail)
            # Money moves by itself only while some workflow runs (escrow, pay, refund).
            if old.live_workflows == 0 and old.ledger[3] == 0:
                assert (after.accounts, after.ledger) == (old.accounts, old.ledger), (
                    method.full_name,
                    who,
                    data[:200],
                    detail,
                )
        before[0] = after

    check()
    assert serving(mesh)

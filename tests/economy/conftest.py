"""A real MeshServer on port 0 serving EconomyService, with a clock tests can move."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from meshwright.economy import (
    ECONOMY_SERVICE,
    Economy,
    EconomyServicer,
    MemoryLedgerStore,
)
from meshwright.economy.v1 import economy_pb2 as pb
from meshwright.mesh import LocalServiceClient, MeshServer, RemoteServiceClient
from meshwright.mesh.security import insecure_pipeline


class FakeClock:
    """Epoch seconds that only move when a test says so."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class Env:
    """One served economy and the two ways to call it."""

    remote: RemoteServiceClient
    local: LocalServiceClient
    economy: Economy
    store: MemoryLedgerStore
    clock: FakeClock

    async def account(self, account_id: str, balance: int = 0, *, stake: int = 0) -> Any:
        """Create an account (funded, optionally staked) over the wire; return it."""
        reply = await self.remote.call(
            "CreateAccount",
            pb.CreateAccountRequest(account_id=account_id, initial_balance=balance),
        )
        if stake:
            reply = await self.remote.call(
                "Stake", pb.StakeRequest(account_id=account_id, amount=stake)
            )
        return reply.account

    async def get(self, account_id: str) -> Any:
        reply = await self.remote.call("GetAccount", pb.GetAccountRequest(account_id=account_id))
        return reply.account


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    clock = FakeClock()
    store = MemoryLedgerStore()
    economy = Economy(store, clock=clock, default_voting_period_s=600.0)
    servicer = EconomyServicer(economy)
    server = MeshServer(pipeline=insecure_pipeline(), port=0)
    server.add(servicer, ECONOMY_SERVICE)
    await server.start()
    channel = grpc.aio.insecure_channel(server.address)
    try:
        yield Env(
            remote=RemoteServiceClient(channel, ECONOMY_SERVICE),
            local=LocalServiceClient(servicer, ECONOMY_SERVICE, insecure_pipeline()),
            economy=economy,
            store=store,
            clock=clock,
        )
    finally:
        await channel.close()
        await server.stop(0)


@pytest.fixture(params=["remote", "local"])
def client(request: pytest.FixtureRequest, env: Env) -> RemoteServiceClient | LocalServiceClient:
    """The same tests through the wire and in-process: same messages, same errors."""
    return env.remote if request.param == "remote" else env.local


def fields(err: Any) -> list[str]:
    """The field paths an InvalidArgument names."""
    return [v.field for v in err.violations]

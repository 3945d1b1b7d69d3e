"""Fixtures for the economy: the domain over both ledger backends, and a served economy.

- ``ledger`` (params ``memory`` and ``redis``): a fresh ledger store on a fake clock, and
  how to make ``Economy`` objects over it. Domain tests take ``eco`` (an economy with
  the default parameters) or make one with ``ledger.economy(params=...)``.
- ``env``: a real ``MeshServer`` on port 0 serving ``EconomyService`` (memory store, auth
  off: every caller is the anonymous admin), with a remote and an in-process client.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest

from meshwright.economy import (
    ECONOMY_SERVICE,
    Economy,
    EconomyServicer,
    LedgerStore,
    MemoryLedgerStore,
)
from meshwright.economy.v1 import economy_pb2 as pb
from meshwright.mesh import LocalServiceClient, MeshServer, RemoteServiceClient
from meshwright.mesh.auth import Principal, Role
from meshwright.mesh.context import CallContext, serving
from meshwright.mesh.security import insecure_pipeline

BACKENDS = ("memory", "redis")


class FakeClock:
    """Epoch seconds that only move when a test says so."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@contextmanager
def as_caller(role: str, subject: str) -> Iterator[Principal]:
    """Run the block as if serving a call from ``role:subject`` (what the pipeline sets)."""
    who = Principal(Role(role), subject)
    with serving(CallContext(method="/test", principal=who, deadline=None)):
        yield who


@dataclass
class Ledger:
    """One fresh ledger (a backend) and the economies made over it."""

    kind: str
    clock: FakeClock
    store: LedgerStore
    url: str = ""
    prefix: str = ""
    extra: list[LedgerStore] = field(default_factory=list)

    def economy(self, **kwargs: Any) -> Economy:
        """An ``Economy`` over this ledger on the fake clock (``params=`` only matters for the
        first one to touch a fresh ledger)."""
        kwargs.setdefault("clock", self.clock)
        kwargs.setdefault("default_voting_period_s", 600.0)
        return Economy(self.store, **kwargs)

    def another_store(self) -> LedgerStore:
        """A second handle on the same ledger (its own Redis connection pool; memory: the
        same object, a process has one)."""
        if self.kind == "memory":
            return self.store
        from meshwright.economy.redis_store import RedisLedgerStore

        store = RedisLedgerStore.from_url(self.url, prefix=self.prefix)
        self.extra.append(store)
        return store

    async def wait_real(self, seconds: float) -> None:
        """Let ``seconds`` pass for the store's own clock (idempotency TTLs): the fake clock
        for memory, real time for Redis (its keys expire on the server's clock)."""
        if self.kind == "memory":
            self.clock.advance(seconds)
        else:
            await asyncio.sleep(seconds)

    # Reaching under the kernel (tamper tests) --------------------------------

    async def set_field(self, record: str, name: str, value: str) -> None:
        """Overwrite one field of a record behind the kernel's back."""
        if isinstance(self.store, MemoryLedgerStore):
            self.store._records.setdefault(record, {})[name] = value
        else:
            client = self.store._r  # type: ignore[attr-defined]
            await client.hset(f"{{{self.prefix}}}:r:{record}", name, value)

    async def append_entry(self, transaction_id: str, postings: list[tuple[str, str, int]]) -> None:
        """Append a ledger entry with exactly these postings (balanced or not), touching no
        balance: what a buggy or tampered backend could leave behind."""
        from meshwright.economy.kernel import Posting, StoredEntry

        if isinstance(self.store, MemoryLedgerStore):
            seq = len(self.store._ledger) + 1
            self.store._ledger.append(
                StoredEntry(
                    seq=seq,
                    transaction_id=transaction_id,
                    kind="TRANSFER",
                    time=self.clock(),
                    request_id="",
                    caller="",
                    memo="tampered",
                    refs={},
                    postings=tuple(Posting(a, s, n) for a, s, n in postings),
                )
            )
            return
        client = self.store._r  # type: ignore[attr-defined]
        base = f"{{{self.prefix}}}"
        seq = int(await client.incr(f"{base}:seq"))
        body = {
            "transaction_id": transaction_id,
            "kind": "TRANSFER",
            "time": self.clock(),
            "request_id": "",
            "caller": "",
            "memo": "tampered",
            "refs": {},
            "postings": [[a, s, str(n)] for a, s, n in postings],
        }
        await client.xadd(f"{base}:ledger", {"e": json.dumps(body)}, id=f"{seq}-0")


@pytest.fixture(params=BACKENDS)
async def ledger(request: pytest.FixtureRequest) -> AsyncIterator[Ledger]:
    """A fresh, empty ledger on each backend, on a fake clock."""
    clock = FakeClock()
    if request.param == "memory":
        ledger = Ledger("memory", clock, MemoryLedgerStore(clock=clock))
    else:
        from meshwright.economy.redis_store import RedisLedgerStore

        url = request.getfixturevalue("redis_url")
        prefix = f"t-{uuid.uuid4().hex[:12]}"
        ledger = Ledger("redis", clock, RedisLedgerStore.from_url(url, prefix=prefix), url, prefix)
    try:
        yield ledger
    finally:
        for store in [ledger.store, *ledger.extra]:
            await store.close()


@pytest.fixture
def eco(ledger: Ledger) -> Economy:
    """An economy with the default parameters over ``ledger`` (voting periods of 600 s)."""
    return ledger.economy()


# The served economy --------------------------------------------------------------


@dataclass
class Env:
    """One served economy and the two ways to call it."""

    remote: RemoteServiceClient
    local: LocalServiceClient
    economy: Economy
    store: MemoryLedgerStore
    clock: FakeClock

    async def account(
        self, account_id: str, balance: int = 0, *, gov: int = 0, stake: int = 0
    ) -> Any:
        """Create an account over the wire with ``balance`` CREDIT and ``gov`` GOV available,
        and ``stake`` GOV staked (minted with it, then staked); return it."""
        reply = await self.remote.call(
            "CreateAccount",
            pb.CreateAccountRequest(
                account_id=account_id, initial_balance=balance, initial_gov_balance=gov + stake
            ),
        )
        if stake:
            reply = await self.remote.call(
                "Stake", pb.StakeRequest(account_id=account_id, amount=stake)
            )
        return reply.account

    async def get(self, account_id: str) -> Any:
        reply = await self.remote.call("GetAccount", pb.GetAccountRequest(account_id=account_id))
        return reply.account

    async def audit(self) -> Any:
        return await self.remote.call("AuditLedger", pb.AuditLedgerRequest())


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    clock = FakeClock()
    store = MemoryLedgerStore(clock=clock)
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


async def open_account(
    eco: Economy, account_id: str, credit: int = 0, *, gov: int = 0, stake: int = 0, **kw: Any
) -> Any:
    """Create an account with ``credit`` CREDIT and ``gov`` GOV available and ``stake`` GOV
    staked (minted with it, then staked); return its view."""
    account = await eco.create_account(
        account_id, initial_balance=credit, initial_gov_balance=gov + stake, **kw
    )
    if stake:
        account = (await eco.stake(account_id, stake)).account
    return account

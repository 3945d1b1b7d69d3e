"""Money is conserved under a burst of concurrent mixed operations: over the wire, and in
the domain on both ledger backends (where Redis interleaves the plans for real)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from meshwright.economy import Asset, Economy, Params
from meshwright.economy.v1 import economy_pb2 as pb
from meshwright.mesh import MeshError
from tests.economy.conftest import Env, Ledger, open_account

pytestmark = pytest.mark.timeout(90)

ACCOUNTS = [f"acct-{i}" for i in range(8)]
FUNDING = 5_000


def check_refusals(results: list[Any]) -> None:
    failures = [r for r in results if isinstance(r, BaseException)]
    # Refusals are expected (funds, stake, exhausted, closed, locked) but only typed ones.
    assert all(isinstance(f, MeshError) and f.reason != "INTERNAL" for f in failures), failures
    assert len(failures) < len(results)


async def test_burst_of_300_mixed_operations_over_the_wire(env: Env) -> None:
    rng = random.Random(7)
    for a in ACCOUNTS:
        await env.account(a, FUNDING, gov=FUNDING)
    escrows = [f"esc-{i}" for i in range(4)]
    for i, e in enumerate(escrows):
        await env.remote.call(
            "OpenEscrow",
            pb.OpenEscrowRequest(escrow_id=e, payer_account_id=ACCOUNTS[i], amount=1_000),
        )

    def operation(i: int) -> tuple[str, Any]:
        a, b = rng.sample(ACCOUNTS, 2)
        amount = rng.randint(1, 400)
        match i % 7:
            case 0 | 1:
                return "Transfer", pb.TransferRequest(
                    from_account_id=a, to_account_id=b, amount=amount, asset=rng.choice([1, 2])
                )
            case 2:
                return "Stake", pb.StakeRequest(account_id=a, amount=amount)
            case 3:
                return "Unstake", pb.UnstakeRequest(account_id=a, amount=amount)
            case 4:
                return "CaptureEscrow", pb.CaptureEscrowRequest(
                    escrow_id=rng.choice(escrows), payee_account_id=b, amount=amount // 4 + 1
                )
            case 5:
                return "Mint", pb.MintRequest(account_id=a, amount=amount, asset=pb.ASSET_GOV)
            case _:
                if i % 60 == 6:
                    return "ReleaseEscrow", pb.ReleaseEscrowRequest(escrow_id=rng.choice(escrows))
                return "OpenEscrow", pb.OpenEscrowRequest(payer_account_id=a, amount=amount)

    ops = [operation(i) for i in range(300)]
    results = await asyncio.gather(*(env.remote.call(m, r) for m, r in ops), return_exceptions=True)
    check_refusals(list(results))
    minted_gov = sum(r.amount for m, r in ops if m == "Mint")
    accounts = [await env.get(a) for a in ACCOUNTS]
    assert sum(a.balance + a.escrowed for a in accounts) == FUNDING * len(ACCOUNTS)
    gov_minted_ok = sum(
        r.amount for (m, r), res in zip(ops, results, strict=True)
        if m == "Mint" and not isinstance(res, BaseException)
    )  # fmt: skip
    assert gov_minted_ok == minted_gov
    assert sum(a.gov_balance + a.staked for a in accounts) == FUNDING * len(ACCOUNTS) + minted_gov
    assert all(min(a.balance, a.staked, a.escrowed, a.gov_balance) >= 0 for a in accounts)
    audit = await env.audit()
    assert audit.ok, audit


async def test_burst_in_the_domain_conserves_every_asset(ledger: Ledger) -> None:
    """Two economies (replicas) on one ledger, a fee, bonuses and expiries in the mix."""
    params = Params(transfer_fee_bps=150, escrow_ttl_s=5.0, streak_threshold=2, streak_bonus_bps=50)
    one = ledger.economy(params=params)
    two = Economy(ledger.another_store(), clock=ledger.clock)
    rng = random.Random(11)
    for a in ACCOUNTS:
        await open_account(one, a, FUNDING, gov=FUNDING, stake=100)
    await one.mint("system:rewards", 2_000)
    escrows = [f"esc-{i}" for i in range(4)]
    for i, e in enumerate(escrows):
        await one.open_escrow(ACCOUNTS[i], 1_000, escrow_id=e)

    def operation(i: int) -> Callable[[], Awaitable[Any]]:
        eco = one if i % 2 else two
        a, b = rng.sample(ACCOUNTS, 2)
        amount = rng.randint(1, 400)
        asset = rng.choice([Asset.CREDIT, Asset.GOV])
        escrow = rng.choice(escrows)
        match i % 8:
            case 0 | 1:
                return lambda: eco.transfer(a, b, amount, asset=asset)
            case 2:
                return lambda: eco.stake(a, amount)
            case 3:
                return lambda: eco.unstake(a, amount)
            case 4:
                return lambda: eco.capture_escrow(escrow, b, amount // 4 + 1)
            case 5:
                return lambda: eco.distribute_rewards(rng.randint(1, 50))
            case 6:
                return lambda: eco.open_escrow(a, amount)
            case _:
                return lambda: eco.maintain()

    for _ in range(3):
        calls = [operation(i) for i in range(100)]
        results = await asyncio.gather(*(c() for c in calls), return_exceptions=True)
        check_refusals(list(results))
        ledger.clock.advance(3)
    report = await one.audit()
    assert report.ok, report
    credit = next(s for s in report.supplies if s.asset is Asset.CREDIT)
    assert credit.issued == FUNDING * len(ACCOUNTS) + 2_000

"""Money is conserved under a burst of concurrent mixed operations."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from meshwright.economy.v1 import economy_pb2 as pb
from meshwright.mesh import MeshError
from tests.economy.conftest import Env

ACCOUNTS = [f"acct-{i}" for i in range(8)]
FUNDING = 5_000


def replay(transactions: list[Any], account_id: str) -> tuple[int, int, int]:
    """(balance, staked, escrowed) rebuilt from the account's own ledger entries."""
    balance = staked = escrowed = 0
    for tx in transactions:
        debit, credit, n = (
            tx.from_account_id == account_id,
            tx.to_account_id == account_id,
            tx.amount,
        )
        match tx.kind:
            case pb.TRANSACTION_KIND_MINT:
                balance += n
            case pb.TRANSACTION_KIND_TRANSFER:
                balance += n if credit else -n
            case pb.TRANSACTION_KIND_STAKE:
                balance, staked = balance - n, staked + n
            case pb.TRANSACTION_KIND_UNSTAKE:
                balance, staked = balance + n, staked - n
            case pb.TRANSACTION_KIND_ESCROW_OPEN:
                balance, escrowed = balance - n, escrowed + n
            case pb.TRANSACTION_KIND_ESCROW_CAPTURE:
                escrowed -= n if debit else 0
                balance += n if credit else 0
            case pb.TRANSACTION_KIND_ESCROW_RELEASE:
                balance, escrowed = balance + n, escrowed - n
    return balance, staked, escrowed


async def all_transactions(env: Env, account_id: str) -> list[Any]:
    out: list[Any] = []
    token = ""
    while True:
        page = await env.remote.call(
            "ListTransactions",
            pb.ListTransactionsRequest(account_id=account_id, page_size=50, page_token=token),
        )
        out.extend(page.transactions)
        token = page.next_page_token
        if not token:
            return out[::-1]  # oldest first


async def test_burst_of_300_mixed_operations_conserves_money(env: Env) -> None:
    rng = random.Random(7)
    for a in ACCOUNTS:
        await env.account(a, FUNDING)
    escrows = [f"esc-{i}" for i in range(4)]
    for i, e in enumerate(escrows):
        await env.remote.call(
            "OpenEscrow",
            pb.OpenEscrowRequest(escrow_id=e, payer_account_id=ACCOUNTS[i], amount=1_000),
        )

    def operation(i: int) -> tuple[str, Any]:
        a, b = rng.sample(ACCOUNTS, 2)
        amount = rng.randint(1, 400)
        match i % 6:
            case 0 | 1:
                return "Transfer", pb.TransferRequest(
                    from_account_id=a, to_account_id=b, amount=amount
                )
            case 2:
                return "Stake", pb.StakeRequest(account_id=a, amount=amount)
            case 3:
                return "Unstake", pb.UnstakeRequest(account_id=a, amount=amount)
            case 4:
                return "CaptureEscrow", pb.CaptureEscrowRequest(
                    escrow_id=rng.choice(escrows), payee_account_id=b, amount=amount // 4 + 1
                )
            case _:
                if i % 60 == 5:
                    return "ReleaseEscrow", pb.ReleaseEscrowRequest(escrow_id=rng.choice(escrows))
                return "OpenEscrow", pb.OpenEscrowRequest(payer_account_id=a, amount=amount)

    ops = [operation(i) for i in range(300)]
    results = await asyncio.gather(*(env.remote.call(m, r) for m, r in ops), return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    # Refusals are expected (funds, stake, exhausted, closed) but only typed ones.
    assert all(isinstance(f, MeshError) and f.reason != "INTERNAL" for f in failures), failures
    assert len(failures) < len(results)

    accounts = [await env.get(a) for a in ACCOUNTS]
    held = sum(a.balance + a.staked + a.escrowed for a in accounts)
    assert held == FUNDING * len(ACCOUNTS)
    assert all(min(a.balance, a.staked, a.escrowed) >= 0 for a in accounts)
    assert env.store.audit().conserved

    # Double entry: every account's state is exactly what its ledger says.
    for acct in accounts:
        txs = await all_transactions(env, acct.account_id)
        assert replay(txs, acct.account_id) == (acct.balance, acct.staked, acct.escrowed)

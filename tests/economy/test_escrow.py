"""Escrow: open, capture (the per-task hot path), release."""

from __future__ import annotations

import asyncio

import pytest

from meshwright.economy import EscrowClosed, EscrowExhausted, InsufficientFunds
from meshwright.economy.v1 import economy_pb2 as pb
from meshwright.mesh import AlreadyExists, InvalidArgument, NotFound
from tests.economy.conftest import Env, fields


async def open_escrow(env: Env, payer: str, amount: int, escrow_id: str = "") -> pb.Escrow:
    reply = await env.remote.call(
        "OpenEscrow",
        pb.OpenEscrowRequest(
            escrow_id=escrow_id, payer_account_id=payer, amount=amount, reference="workflow/wf-1"
        ),
    )
    return reply.escrow


async def test_open_capture_release(env: Env) -> None:
    await env.account("payer", 1000)
    await env.account("agent")
    escrow = await open_escrow(env, "payer", 600)
    assert escrow.escrow_id.startswith("esc_")
    assert (escrow.amount, escrow.captured, escrow.state) == (600, 0, pb.ESCROW_STATE_OPEN)
    assert escrow.reference == "workflow/wf-1"
    payer = await env.get("payer")
    assert (payer.balance, payer.escrowed) == (400, 600)

    captured = await env.remote.call(
        "CaptureEscrow",
        pb.CaptureEscrowRequest(
            escrow_id=escrow.escrow_id, payee_account_id="agent", amount=250, memo="task t1"
        ),
    )
    assert captured.escrow.captured == 250
    tx = captured.transaction
    assert (tx.kind, tx.from_account_id, tx.to_account_id, tx.amount, tx.escrow_id) == (
        pb.TRANSACTION_KIND_ESCROW_CAPTURE,
        "payer",
        "agent",
        250,
        escrow.escrow_id,
    )
    assert (await env.get("agent")).balance == 250
    assert (await env.get("payer")).escrowed == 350

    env.clock.advance(5)
    released = await env.remote.call(
        "ReleaseEscrow", pb.ReleaseEscrowRequest(escrow_id=escrow.escrow_id)
    )
    closed = released.escrow
    assert (closed.state, closed.captured, closed.released) == (pb.ESCROW_STATE_CLOSED, 250, 350)
    assert closed.close_time.seconds == int(env.clock.now)
    payer = await env.get("payer")
    assert (payer.balance, payer.escrowed) == (750, 0)

    # Releasing again returns it unchanged and moves nothing.
    env.clock.advance(5)
    again = await env.remote.call(
        "ReleaseEscrow", pb.ReleaseEscrowRequest(escrow_id=escrow.escrow_id)
    )
    assert again.escrow == closed
    assert (await env.get("payer")).balance == 750

    kinds = [
        t.kind
        for t in (
            await env.remote.call(
                "ListTransactions", pb.ListTransactionsRequest(account_id="payer")
            )
        ).transactions
    ]
    assert kinds == [
        pb.TRANSACTION_KIND_ESCROW_RELEASE,
        pb.TRANSACTION_KIND_ESCROW_CAPTURE,
        pb.TRANSACTION_KIND_ESCROW_OPEN,
        pb.TRANSACTION_KIND_MINT,
    ]


async def test_open_with_chosen_id_and_its_errors(env: Env) -> None:
    await env.account("payer", 100)
    escrow = await open_escrow(env, "payer", 10, escrow_id="wf-1.budget")
    assert escrow.escrow_id == "wf-1.budget"
    with pytest.raises(AlreadyExists):
        await open_escrow(env, "payer", 10, escrow_id="wf-1.budget")
    with pytest.raises(NotFound):
        await open_escrow(env, "nobody", 10)
    with pytest.raises(InsufficientFunds) as funds:
        await open_escrow(env, "payer", 91)
    assert funds.value.reason == "INSUFFICIENT_FUNDS"
    with pytest.raises(InvalidArgument) as bad:
        await env.remote.call(
            "OpenEscrow",
            pb.OpenEscrowRequest(escrow_id="!", payer_account_id="", amount=0),
        )
    assert fields(bad.value) == ["escrow_id", "payer_account_id", "amount"]
    assert (await env.get("payer")).balance == 90


async def test_capture_errors(env: Env) -> None:
    await env.account("payer", 100)
    await env.account("agent")
    escrow = await open_escrow(env, "payer", 50, escrow_id="e1")

    async def capture(amount: int, payee: str = "agent", escrow_id: str = "e1") -> object:
        return await env.remote.call(
            "CaptureEscrow",
            pb.CaptureEscrowRequest(escrow_id=escrow_id, payee_account_id=payee, amount=amount),
        )

    with pytest.raises(InvalidArgument) as bad:
        await capture(0, payee="", escrow_id="")
    assert fields(bad.value) == ["escrow_id", "payee_account_id", "amount"]
    with pytest.raises(NotFound) as no_escrow:
        await capture(1, escrow_id="nope")
    assert no_escrow.value.metadata == {"escrow_id": "nope"}
    with pytest.raises(NotFound) as no_payee:
        await capture(1, payee="ghost")
    assert no_payee.value.metadata == {"account_id": "ghost"}
    with pytest.raises(EscrowExhausted) as exhausted:
        await capture(51)
    assert exhausted.value.reason == "ESCROW_EXHAUSTED"

    await capture(50)  # exactly what it holds
    with pytest.raises(EscrowExhausted):
        await capture(1)
    await env.remote.call("ReleaseEscrow", pb.ReleaseEscrowRequest(escrow_id=escrow.escrow_id))
    with pytest.raises(EscrowClosed) as closed:
        await capture(1)
    assert closed.value.reason == "ESCROW_CLOSED"
    assert (await env.get("agent")).balance == 50
    assert env.store.audit().conserved


async def test_release_errors(env: Env) -> None:
    with pytest.raises(NotFound):
        await env.remote.call("ReleaseEscrow", pb.ReleaseEscrowRequest(escrow_id="nope"))
    with pytest.raises(InvalidArgument) as bad:
        await env.remote.call("ReleaseEscrow", pb.ReleaseEscrowRequest())
    assert fields(bad.value) == ["escrow_id"]


async def test_concurrent_captures_never_overdraw(env: Env) -> None:
    await env.account("payer", 10_000)
    payees = [f"agent-{i}" for i in range(5)]
    for p in payees:
        await env.account(p)
    await open_escrow(env, "payer", 1_000, escrow_id="budget")

    async def capture(i: int) -> object:
        return await env.remote.call(
            "CaptureEscrow",
            pb.CaptureEscrowRequest(
                escrow_id="budget", payee_account_id=payees[i % 5], amount=30, memo=f"task {i}"
            ),
        )

    results = await asyncio.gather(*(capture(i) for i in range(60)), return_exceptions=True)
    ok = [r for r in results if not isinstance(r, BaseException)]
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(ok) == 33  # 33 * 30 = 990 <= 1000 < 34 * 30
    assert all(isinstance(e, EscrowExhausted) for e in failed), failed
    paid = sum([(await env.get(p)).balance for p in payees])
    assert paid == 990
    assert (await env.get("payer")).escrowed == 10
    assert env.store.audit().conserved

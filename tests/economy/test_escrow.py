"""Escrow: open, capture (the per-task hot path, exactly once per task), release, renew,
reads and listings; the domain on both ledger backends and the wire's shapes."""

from __future__ import annotations

import asyncio

import pytest

from meshwright.economy import (
    Economy,
    EscrowClosed,
    EscrowExhausted,
    EscrowState,
    InsufficientFunds,
    TaskAlreadyPaid,
    TransactionKind,
)
from meshwright.economy.errors import PayeeNotOwned
from meshwright.economy.v1 import economy_pb2 as pb
from meshwright.mesh import AlreadyExists, InvalidArgument, NotFound
from tests.economy.conftest import Env, Ledger, as_caller, fields

pytestmark = pytest.mark.timeout(60)


async def test_open_capture_release(eco: Economy, ledger: Ledger) -> None:
    await eco.create_account("payer", initial_balance=1000)
    await eco.create_account("agent")
    opened = await eco.open_escrow("payer", 600, reference="workflow/wf-1")
    escrow = opened.escrow
    assert escrow.escrow_id.startswith("esc_")
    assert (escrow.amount, escrow.captured, escrow.state, escrow.captures) == (
        600,
        0,
        EscrowState.OPEN,
        0,
    )
    assert escrow.reference == "workflow/wf-1" and escrow.remaining == 600
    assert escrow.expire_time == ledger.clock.now + 3_600  # the default escrow_ttl_s
    assert [(p.account_id, p.amount) for p in opened.transaction.postings] == [
        ("payer", -600),
        (f"escrow:{escrow.escrow_id}", 600),
    ]
    payer = await eco.get_account("payer")
    assert (payer.balance, payer.escrowed) == (400, 600)
    assert (await eco.get_account(f"escrow:{escrow.escrow_id}")).balance == 600

    captured = await eco.capture_escrow(escrow.escrow_id, "agent", 250, memo="task t1")
    assert (captured.escrow.captured, captured.escrow.captures, captured.bonus) == (250, 1, 0)
    tx = captured.transaction
    assert (tx.kind, tx.from_account_id, tx.to_account_id, tx.amount, tx.escrow_id) == (
        TransactionKind.ESCROW_CAPTURE,
        f"escrow:{escrow.escrow_id}",
        "agent",
        250,
        escrow.escrow_id,
    )
    assert (await eco.get_account("agent")).balance == 250
    assert (await eco.get_account("payer")).escrowed == 350

    ledger.clock.advance(5)
    released = await eco.release_escrow(escrow.escrow_id)
    closed = released.escrow
    assert (closed.state, closed.captured, closed.released) == (EscrowState.CLOSED, 250, 350)
    assert closed.close_time == ledger.clock.now
    assert released.transaction is not None
    assert released.transaction.kind is TransactionKind.ESCROW_RELEASE
    payer = await eco.get_account("payer")
    assert (payer.balance, payer.escrowed) == (750, 0)

    # Releasing again returns it unchanged and moves nothing.
    ledger.clock.advance(5)
    again = await eco.release_escrow(escrow.escrow_id)
    assert again.escrow == closed and again.transaction is None
    assert (await eco.get_account("payer")).balance == 750
    kinds = [t.kind for t in (await eco.list_transactions("payer")).transactions]
    assert kinds == [
        TransactionKind.ESCROW_RELEASE,
        TransactionKind.ESCROW_OPEN,
        TransactionKind.MINT,
    ]
    assert await eco.get_escrow(escrow.escrow_id) == closed
    assert (await eco.audit()).ok


async def test_releasing_an_emptied_escrow_closes_it_without_a_transaction(eco: Economy) -> None:
    await eco.create_account("payer", initial_balance=10)
    await eco.create_account("agent")
    await eco.open_escrow("payer", 10, escrow_id="e1")
    await eco.capture_escrow("e1", "agent", 10)
    released = await eco.release_escrow("e1")
    assert released.transaction is None
    assert (released.escrow.state, released.escrow.released) == (EscrowState.CLOSED, 0)
    assert (await eco.get_account("payer")).escrowed == 0


async def test_open_with_chosen_id_and_its_errors(eco: Economy) -> None:
    await eco.create_account("payer", initial_balance=100)
    escrow = (await eco.open_escrow("payer", 10, escrow_id="wf-1.budget")).escrow
    assert escrow.escrow_id == "wf-1.budget"
    with pytest.raises(AlreadyExists) as dup:
        await eco.open_escrow("payer", 10, escrow_id="wf-1.budget")
    assert dup.value.metadata == {"escrow_id": "wf-1.budget"}
    with pytest.raises(NotFound) as nobody:
        await eco.open_escrow("nobody", 10)
    assert nobody.value.metadata == {"account_id": "nobody"}
    with pytest.raises(InsufficientFunds) as funds:
        await eco.open_escrow("payer", 91)
    assert funds.value.metadata == {"account_id": "payer"}
    await eco.open_escrow("payer", 90)  # exactly the balance
    assert (await eco.get_account("payer")).balance == 0


async def test_open_validation_names_each_rule(eco: Economy) -> None:
    await eco.create_account("payer", initial_balance=100)
    cases: list[tuple[str, int, dict[str, object], list[str]]] = [
        ("", 1, {}, ["payer_account_id"]),
        ("system:rewards", 1, {}, ["payer_account_id"]),
        ("payer", 0, {}, ["amount"]),
        ("payer", 1, {"escrow_id": "!"}, ["escrow_id"]),
        ("payer", 1, {"reference": "r" * 1025}, ["reference"]),
        ("payer", 1, {"ttl_s": 0.0}, ["ttl"]),
        ("payer", 1, {"ttl_s": -1.0}, ["ttl"]),
        ("payer", 1, {"ttl_s": float("inf")}, ["ttl"]),
        ("payer", 1, {"ttl_s": 10 * 366 * 86_400.0 + 1}, ["ttl"]),
        ("payer", 1, {"request_id": "r" * 257}, ["request_id"]),
    ]
    for payer, amount, kwargs, expected in cases:
        with pytest.raises(InvalidArgument) as err:
            await eco.open_escrow(payer, amount, **kwargs)  # type: ignore[arg-type]
        assert fields(err.value) == expected, kwargs
    with pytest.raises(InvalidArgument) as every:
        await eco.open_escrow("", 0, escrow_id="!")
    assert fields(every.value) == ["escrow_id", "payer_account_id", "amount"]
    longest = await eco.open_escrow("payer", 1, reference="r" * 1024, ttl_s=10 * 366 * 86_400.0)
    assert longest.escrow.reference == "r" * 1024


async def test_capture_errors(eco: Economy) -> None:
    await eco.create_account("payer", initial_balance=100)
    await eco.create_account("agent")
    await eco.open_escrow("payer", 50, escrow_id="e1")
    with pytest.raises(InvalidArgument) as bad:
        await eco.capture_escrow("", "", 0)
    assert fields(bad.value) == ["escrow_id", "payee_account_id", "amount"]
    for kwargs, expected in [
        ({"memo": "m" * 1025}, ["memo"]),
        ({"task_id": "not an id"}, ["task_id"]),
        ({"payee_owner": "agent"}, ["payee_owner"]),
        ({"request_id": "r" * 257}, ["request_id"]),
    ]:
        with pytest.raises(InvalidArgument) as err:
            await eco.capture_escrow("e1", "agent", 1, **kwargs)  # type: ignore[arg-type]
        assert fields(err.value) == expected
    with pytest.raises(InvalidArgument):
        await eco.capture_escrow("e1", "system:treasury", 1)
    with pytest.raises(NotFound) as no_escrow:
        await eco.capture_escrow("nope", "agent", 1)
    assert no_escrow.value.metadata == {"escrow_id": "nope"}
    with pytest.raises(NotFound) as no_payee:
        await eco.capture_escrow("e1", "ghost", 1)
    assert no_payee.value.metadata == {"account_id": "ghost"}
    with pytest.raises(EscrowExhausted) as exhausted:
        await eco.capture_escrow("e1", "agent", 51)
    assert exhausted.value.reason == "ESCROW_EXHAUSTED"
    assert exhausted.value.metadata == {"escrow_id": "e1"}

    await eco.capture_escrow("e1", "agent", 50)  # exactly what it holds
    with pytest.raises(EscrowExhausted):
        await eco.capture_escrow("e1", "agent", 1)
    await eco.release_escrow("e1")
    with pytest.raises(EscrowClosed) as closed:
        await eco.capture_escrow("e1", "agent", 1)
    assert closed.value.reason == "ESCROW_CLOSED"
    assert (await eco.get_account("agent")).balance == 50
    assert (await eco.audit()).ok


async def test_release_errors(eco: Economy) -> None:
    with pytest.raises(NotFound):
        await eco.release_escrow("nope")
    with pytest.raises(InvalidArgument) as bad:
        await eco.release_escrow("")
    assert fields(bad.value) == ["escrow_id"]
    with pytest.raises(InvalidArgument) as long_id:
        await eco.release_escrow("e1", request_id="r" * 257)
    assert fields(long_id.value) == ["request_id"]


async def test_concurrent_captures_never_overdraw(eco: Economy) -> None:
    await eco.create_account("payer", initial_balance=10_000)
    payees = [f"agent-{i}" for i in range(5)]
    for p in payees:
        await eco.create_account(p)
    await eco.open_escrow("payer", 1_000, escrow_id="budget")
    results = await asyncio.gather(
        *(eco.capture_escrow("budget", payees[i % 5], 30, memo=f"task {i}") for i in range(60)),
        return_exceptions=True,
    )
    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(results) - len(failed) == 33  # 33 * 30 = 990 <= 1000 < 34 * 30
    assert all(isinstance(e, EscrowExhausted) for e in failed), failed
    assert sum([(await eco.get_account(p)).balance for p in payees]) == 990
    assert (await eco.get_account("payer")).escrowed == 10
    assert (await eco.get_escrow("budget")).captures == 33
    assert (await eco.audit()).ok


# Exactly once per task -------------------------------------------------------------


async def test_a_task_is_paid_once_per_escrow(eco: Economy) -> None:
    await eco.create_account("payer", initial_balance=1_000)
    await eco.create_account("agent")
    await eco.create_account("other")
    await eco.open_escrow("payer", 500, escrow_id="e1")
    await eco.open_escrow("payer", 500, escrow_id="e2")
    first = await eco.capture_escrow("e1", "agent", 40, task_id="t1")
    assert first.transaction.task_id == "t1"
    again = await eco.capture_escrow("e1", "agent", 40, task_id="t1")
    assert again == first  # the first capture, replayed
    for payee, amount in (("other", 40), ("agent", 41)):
        with pytest.raises(TaskAlreadyPaid) as paid:
            await eco.capture_escrow("e1", payee, amount, task_id="t1")
        assert paid.value.reason == "TASK_ALREADY_PAID"
    # Once per (escrow, task): the same task id in another escrow is another task.
    await eco.capture_escrow("e2", "agent", 40, task_id="t1")
    # A request id does not change that (and the same memo or not does not matter).
    replay = await eco.capture_escrow("e1", "agent", 40, task_id="t1", memo="x", request_id="r")
    assert replay == first
    assert (await eco.get_account("agent")).balance == 80
    assert (await eco.get_escrow("e1")).captures == 1
    assert (await eco.audit()).ok


async def test_a_task_stays_paid_after_the_idempotency_ttl(ledger: Ledger) -> None:
    """The replay is remembered for the TTL, the payment for good: afterwards a repeat is
    refused (never paid twice), with the same error as a mismatch within the TTL."""
    eco = ledger.economy(idempotency_ttl_s=10.0 if ledger.kind == "memory" else 0.3)
    await eco.create_account("payer", initial_balance=100)
    await eco.create_account("agent")
    await eco.open_escrow("payer", 100, escrow_id="e1")
    await eco.capture_escrow("e1", "agent", 10, task_id="t1")
    with pytest.raises(TaskAlreadyPaid) as within:
        await eco.capture_escrow("e1", "agent", 11, task_id="t1")
    await ledger.wait_real(10.0 if ledger.kind == "memory" else 0.5)
    for amount in (10, 11):
        with pytest.raises(TaskAlreadyPaid) as after:
            await eco.capture_escrow("e1", "agent", amount, task_id="t1")
        assert after.value.metadata == within.value.metadata
    assert (await eco.get_account("agent")).balance == 10


async def test_concurrent_captures_of_one_task_pay_once(eco: Economy) -> None:
    await eco.create_account("payer", initial_balance=1_000)
    await eco.create_account("agent")
    await eco.open_escrow("payer", 1_000, escrow_id="e1")
    replies = await asyncio.gather(
        *(eco.capture_escrow("e1", "agent", 25, task_id="t9") for _ in range(20))
    )
    assert all(r == replies[0] for r in replies)
    assert (await eco.get_account("agent")).balance == 25


async def test_a_capture_may_require_the_payee_owner(eco: Economy) -> None:
    await eco.create_account("payer", initial_balance=100)
    with as_caller("client", "mallory"):
        await eco.create_account("squatted")  # opened under an agent's payout id
    with as_caller("agent", "bot"):
        await eco.create_account("bot-pay")
    await eco.open_escrow("payer", 100, escrow_id="e1")
    with pytest.raises(PayeeNotOwned) as err:
        await eco.capture_escrow("e1", "squatted", 10, payee_owner="agent:bot")
    assert err.value.reason == "PAYEE_NOT_OWNED"
    assert (await eco.get_account("squatted")).balance == 0
    paid = await eco.capture_escrow("e1", "bot-pay", 10, payee_owner="agent:bot")
    assert paid.escrow.captured == 10


async def test_a_payee_owner_accepts_an_account_an_admin_owns(eco: Economy) -> None:
    """With auth off every caller is the anonymous admin and owns every payout account; only
    admins and mesh services can open an account owned by an admin, so this is no way in."""
    await eco.create_account("payer", initial_balance=100)
    with as_caller("admin", "anonymous"):
        await eco.create_account("bot")
    with as_caller("client", "admin"):  # a client named "admin" is no admin
        await eco.create_account("bot2")
    await eco.open_escrow("payer", 100, escrow_id="e1")
    paid = await eco.capture_escrow("e1", "bot", 10, payee_owner="agent:bot")
    assert paid.escrow.captured == 10
    with pytest.raises(PayeeNotOwned):
        await eco.capture_escrow("e1", "bot2", 10, payee_owner="agent:bot2")


async def test_a_payee_owner_capture_to_an_unknown_payee_is_not_found(eco: Economy) -> None:
    """The contract: NOT_FOUND for an unknown payee, whether or not the capture names the
    payee's owner."""
    await eco.create_account("payer", initial_balance=100)
    await eco.open_escrow("payer", 100, escrow_id="e1")
    with pytest.raises(NotFound) as err:
        await eco.capture_escrow("e1", "ghost", 10, payee_owner="agent:bot")
    assert err.value.metadata == {"account_id": "ghost"}


# Reads and listings ----------------------------------------------------------------


async def test_get_escrow_and_its_owner(eco: Economy) -> None:
    with as_caller("client", "alice"):
        await eco.create_account("alice", initial_balance=100)
        opened = await eco.open_escrow("alice", 10, escrow_id="e1", reference="wf")
    assert opened.escrow.owner == "client:alice"
    assert (await eco.get_escrow("e1")) == opened.escrow
    assert await eco.escrow_owner("e1") == "client:alice"
    assert await eco.escrow_owner("nope") is None
    assert await eco.escrow_owner("not an id") is None
    with pytest.raises(NotFound):
        await eco.get_escrow("nope")
    with pytest.raises(InvalidArgument) as bad:
        await eco.get_escrow("")
    assert fields(bad.value) == ["escrow_id"]


async def test_list_escrows_pages_filters_and_scopes(eco: Economy) -> None:
    with as_caller("client", "alice"):
        await eco.create_account("alice", initial_balance=100)
        for i in range(3):
            await eco.open_escrow("alice", 10, escrow_id=f"a{i}")
    with as_caller("client", "bob"):
        await eco.create_account("bob", initial_balance=100)
        await eco.open_escrow("bob", 10, escrow_id="b0")
    await eco.release_escrow("a1")
    every = await eco.list_escrows()
    assert [e.escrow_id for e in every.items] == ["a0", "a1", "a2", "b0"]
    exact = await eco.list_escrows(page_size=4)
    assert len(exact.items) == 4 and exact.next_page_token == ""
    short = await eco.list_escrows(page_size=3)
    assert [e.escrow_id for e in short.items] == ["a0", "a1", "a2"] and short.next_page_token
    rest = await eco.list_escrows(page_size=3, page_token=short.next_page_token)
    assert [e.escrow_id for e in rest.items] == ["b0"] and rest.next_page_token == ""
    closed = await eco.list_escrows(state=EscrowState.CLOSED)
    assert [e.escrow_id for e in closed.items] == ["a1"]
    opened = await eco.list_escrows(state=EscrowState.OPEN, owner="client:alice")
    assert [e.escrow_id for e in opened.items] == ["a0", "a2"]
    with as_caller("client", "bob"):
        assert [e.escrow_id for e in (await eco.list_escrows()).items] == ["b0"]
    with as_caller("service", "workflow"):
        assert len((await eco.list_escrows()).items) == 4
    with pytest.raises(InvalidArgument) as bad:
        await eco.list_escrows(owner="bob", state=9, page_size=-1, page_token="!")
    assert fields(bad.value) == ["owner", "state", "page_size", "page_token"]


# Over the wire ----------------------------------------------------------------------


async def test_escrow_over_the_wire(env: Env) -> None:
    await env.account("payer", 1000)
    await env.account("agent")
    opened = await env.remote.call(
        "OpenEscrow",
        pb.OpenEscrowRequest(payer_account_id="payer", amount=600, reference="workflow/wf-1"),
    )
    escrow = opened.escrow
    assert escrow.state == pb.ESCROW_STATE_OPEN and escrow.owner == "admin:anonymous"
    assert escrow.expire_time.seconds == int(env.clock.now) + 3_600
    captured = await env.remote.call(
        "CaptureEscrow",
        pb.CaptureEscrowRequest(
            escrow_id=escrow.escrow_id, payee_account_id="agent", amount=250, task_id="t1"
        ),
    )
    assert (captured.escrow.captured, captured.escrow.captures, captured.bonus) == (250, 1, 0)
    assert captured.transaction.task_id == "t1"
    with pytest.raises(TaskAlreadyPaid):
        await env.remote.call(
            "CaptureEscrow",
            pb.CaptureEscrowRequest(
                escrow_id=escrow.escrow_id, payee_account_id="agent", amount=1, task_id="t1"
            ),
        )
    got = await env.remote.call("GetEscrow", pb.GetEscrowRequest(escrow_id=escrow.escrow_id))
    assert got.escrow == captured.escrow
    listed = await env.remote.call("ListEscrows", pb.ListEscrowsRequest())
    assert [e.escrow_id for e in listed.escrows] == [escrow.escrow_id]
    released = await env.remote.call(
        "ReleaseEscrow", pb.ReleaseEscrowRequest(escrow_id=escrow.escrow_id)
    )
    assert (released.escrow.state, released.escrow.released) == (pb.ESCROW_STATE_CLOSED, 350)
    assert (await env.audit()).ok


async def test_a_second_payment_of_a_task_says_who_got_the_first(eco: Economy) -> None:
    await eco.create_account("payer", initial_balance=100)
    await eco.create_account("agent")
    await eco.create_account("other")
    await eco.open_escrow("payer", 100, escrow_id="e1")
    await eco.capture_escrow("e1", "agent", 10, task_id="t1")
    with pytest.raises(TaskAlreadyPaid) as refused:
        await eco.capture_escrow("e1", "other", 12, task_id="t1")
    assert refused.value.metadata == {
        "capture_id": "e1:t1",
        "payee_account_id": "agent",
        "amount": "10",
    }
    assert (await eco.get_account("other")).balance == 0

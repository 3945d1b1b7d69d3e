"""Escrow expiry: an escrow not renewed or captured within its ttl is released to its
payer by maintenance at exactly its expire time; renewals and captures push it."""

from __future__ import annotations

import pytest

from meshwright.economy import (
    Economy,
    EscrowClosed,
    EscrowExpired,
    EscrowState,
    Maintenance,
    Params,
    TransactionKind,
)
from meshwright.economy.v1 import economy_pb2 as pb
from meshwright.mesh import InvalidArgument, NotFound
from tests.conftest import eventually
from tests.economy.conftest import Env, Ledger, fields

pytestmark = pytest.mark.timeout(60)

TTL = 100.0


@pytest.fixture
async def opened(ledger: Ledger) -> Economy:
    eco = ledger.economy(params=Params(escrow_ttl_s=TTL))
    await eco.create_account("payer", initial_balance=1_000)
    await eco.create_account("agent")
    await eco.open_escrow("payer", 600, escrow_id="e1")
    return eco


async def test_maintain_releases_at_exactly_the_expire_time(
    opened: Economy, ledger: Ledger
) -> None:
    eco = opened
    start = ledger.clock.now
    assert (await eco.get_escrow("e1")).expire_time == start + TTL
    await eco.capture_escrow("e1", "agent", 100)  # pushes it to start + TTL
    ledger.clock.advance(TTL - 0.001)
    assert await eco.maintain() == Maintenance()
    assert (await eco.get_escrow("e1")).state is EscrowState.OPEN
    ledger.clock.advance(0.001)
    assert await eco.maintain() == Maintenance(expired=1)
    escrow = await eco.get_escrow("e1")
    assert (escrow.state, escrow.released, escrow.captured) == (EscrowState.EXPIRED, 500, 100)
    assert escrow.close_time == ledger.clock.now
    payer = await eco.get_account("payer")
    assert (payer.balance, payer.escrowed) == (900, 0)
    [expired, *_] = (await eco.list_transactions("payer")).transactions
    assert expired.kind is TransactionKind.ESCROW_EXPIRE and expired.escrow_id == "e1"
    assert [(p.account_id, p.amount) for p in expired.postings] == [
        ("escrow:e1", -500),
        ("payer", 500),
    ]
    assert await eco.maintain() == Maintenance()  # once
    assert (await eco.audit()).ok


async def test_an_expired_escrow_pays_nothing_more(opened: Economy, ledger: Ledger) -> None:
    eco = opened
    ledger.clock.advance(TTL)
    # Not swept yet: a capture at exactly the expire time is already too late.
    with pytest.raises(EscrowExpired) as late:
        await eco.capture_escrow("e1", "agent", 1)
    assert late.value.reason == "ESCROW_EXPIRED" and late.value.metadata == {"escrow_id": "e1"}
    with pytest.raises(EscrowExpired):
        await eco.renew_escrow("e1")
    await eco.maintain()
    for attempt in (eco.capture_escrow("e1", "agent", 1), eco.renew_escrow("e1")):
        with pytest.raises(EscrowExpired):
            await attempt
    # Releasing an expired escrow returns it unchanged.
    released = await eco.release_escrow("e1")
    assert released.transaction is None and released.escrow.state is EscrowState.EXPIRED
    assert (await eco.get_account("agent")).balance == 0


async def test_renew_pushes_the_expiry(opened: Economy, ledger: Ledger) -> None:
    eco = opened
    ledger.clock.advance(TTL - 1)
    renewed = await eco.renew_escrow("e1")
    assert renewed.expire_time == ledger.clock.now + TTL  # its own ttl
    ledger.clock.advance(TTL - 1)
    assert (await eco.maintain()).expired == 0
    longer = await eco.renew_escrow("e1", ttl_s=500.0)
    assert longer.expire_time == ledger.clock.now + 500
    # The new ttl is the escrow's from now on: a capture pushes it by 500 too.
    ledger.clock.advance(10)
    captured = await eco.capture_escrow("e1", "agent", 1)
    assert captured.escrow.expire_time == ledger.clock.now + 500
    ledger.clock.advance(499.999)
    assert (await eco.maintain()).expired == 0
    ledger.clock.advance(0.001)
    assert (await eco.maintain()).expired == 1


async def test_an_escrow_may_have_its_own_ttl(opened: Economy, ledger: Ledger) -> None:
    eco = opened
    short = await eco.open_escrow("payer", 10, escrow_id="e2", ttl_s=5.0)
    assert short.escrow.expire_time == ledger.clock.now + 5
    ledger.clock.advance(5)
    assert await eco.maintain() == Maintenance(expired=1)
    assert (await eco.get_escrow("e2")).state is EscrowState.EXPIRED
    assert (await eco.get_escrow("e1")).state is EscrowState.OPEN


async def test_a_closed_escrow_stays_closed(opened: Economy, ledger: Ledger) -> None:
    eco = opened
    await eco.release_escrow("e1")
    ledger.clock.advance(TTL * 3)
    assert await eco.maintain() == Maintenance()
    escrow = await eco.get_escrow("e1")
    assert (escrow.state, escrow.released) == (EscrowState.CLOSED, 600)
    with pytest.raises(EscrowClosed):
        await eco.renew_escrow("e1")
    assert (await eco.get_account("payer")).balance == 1_000
    assert (await eco.audit()).ok


async def test_an_emptied_escrow_expires_without_a_transaction(
    opened: Economy, ledger: Ledger
) -> None:
    eco = opened
    await eco.capture_escrow("e1", "agent", 600)
    count = (await eco.audit()).transaction_count
    ledger.clock.advance(TTL)
    assert (await eco.maintain()).expired == 1
    assert (await eco.get_escrow("e1")).state is EscrowState.EXPIRED
    assert (await eco.audit()).transaction_count == count


async def test_two_economies_expire_an_escrow_once(opened: Economy, ledger: Ledger) -> None:
    other = Economy(ledger.another_store(), clock=ledger.clock)
    ledger.clock.advance(TTL)
    done = [await opened.maintain(), await other.maintain()]
    assert sum(m.expired for m in done) == 1
    assert (await opened.get_account("payer")).balance == 1_000
    assert (await opened.audit()).ok


async def test_start_runs_maintenance_until_stop(ledger: Ledger) -> None:
    eco = ledger.economy(params=Params(escrow_ttl_s=TTL), maintenance_interval_s=0.01)
    await eco.create_account("payer", initial_balance=10)
    await eco.open_escrow("payer", 10, escrow_id="e1")
    ledger.clock.advance(TTL)
    eco.start()
    eco.start()  # once is enough; a second start changes nothing
    try:

        async def expired() -> bool:
            return (await eco.get_escrow("e1")).state is EscrowState.EXPIRED

        await eventually(expired, timeout=10)
    finally:
        await eco.stop()
    await eco.stop()  # stopping twice is harmless
    await eco.open_escrow("payer", 10, escrow_id="e2", ttl_s=1.0)
    ledger.clock.advance(1)
    assert (await eco.get_escrow("e2")).state is EscrowState.OPEN  # nothing runs it now
    assert (await eco.get_account("payer")).balance == 0


async def test_renew_errors(opened: Economy) -> None:
    eco = opened
    with pytest.raises(NotFound):
        await eco.renew_escrow("nope")
    with pytest.raises(InvalidArgument) as bad:
        await eco.renew_escrow("", ttl_s=0.0)
    assert fields(bad.value) == ["escrow_id", "ttl"]
    with pytest.raises(InvalidArgument) as too_long:
        await eco.renew_escrow("e1", ttl_s=10 * 366 * 86_400.0 + 1)
    assert fields(too_long.value) == ["ttl"]
    assert (await eco.renew_escrow("e1", ttl_s=10 * 366 * 86_400.0)).state is EscrowState.OPEN


async def test_expiry_over_the_wire(env: Env) -> None:
    await env.account("payer", 100)
    opened = await env.remote.call(
        "OpenEscrow",
        pb.OpenEscrowRequest(
            escrow_id="e1", payer_account_id="payer", amount=100, ttl={"seconds": 30}
        ),
    )
    assert opened.escrow.expire_time.seconds == int(env.clock.now) + 30
    env.clock.advance(20)
    renewed = await env.remote.call("RenewEscrow", pb.RenewEscrowRequest(escrow_id="e1"))
    assert renewed.escrow.expire_time.seconds == int(env.clock.now) + 30
    env.clock.advance(30)
    await env.economy.maintain()
    got = await env.remote.call("GetEscrow", pb.GetEscrowRequest(escrow_id="e1"))
    assert got.escrow.state == pb.ESCROW_STATE_EXPIRED
    with pytest.raises(EscrowExpired):
        await env.remote.call(
            "CaptureEscrow",
            pb.CaptureEscrowRequest(escrow_id="e1", payee_account_id="payer", amount=1),
        )

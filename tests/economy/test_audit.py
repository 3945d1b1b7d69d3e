"""The audit replays every posting: ok on a busy ledger; a tampered balance, an unbalanced
entry and a negative balance are each found (written under the kernel, into the
backend's own records)."""

from __future__ import annotations

import pytest

from meshwright.economy import Asset, BalanceMismatch, Economy, Params, VoteChoice
from meshwright.economy.v1 import economy_pb2 as pb
from tests.economy.conftest import Env, Ledger, open_account

pytestmark = pytest.mark.timeout(60)


async def busy(ledger: Ledger) -> Economy:
    """A ledger that saw every kind of transaction."""
    eco = ledger.economy(
        params=Params(transfer_fee_bps=100, unbonding_period_s=10.0, escrow_ttl_s=50.0)
    )
    await open_account(eco, "alice", 10_000, gov=500, stake=500)
    await open_account(eco, "bob", 1_000, gov=100)
    await eco.mint("system:rewards", 5_000)
    await eco.transfer("alice", "bob", 1_000)
    await eco.transfer("bob", "alice", 10, asset=Asset.GOV)
    await eco.open_escrow("alice", 2_000, escrow_id="e1")
    await eco.open_escrow("alice", 300, escrow_id="e2")
    await eco.capture_escrow("e1", "bob", 500, task_id="t1")
    await eco.release_escrow("e1")
    await eco.distribute_rewards(999)
    await eco.unstake("alice", 100)
    p = await eco.create_proposal("alice", "p")
    await eco.cast_vote(p.proposal_id, "alice", VoteChoice.YES)
    ledger.clock.advance(60)
    await eco.maintain()  # expires e2, completes the unbonding, closes p
    return eco


async def test_audit_is_ok_on_a_busy_ledger(ledger: Ledger) -> None:
    eco = await busy(ledger)
    report = await eco.audit()
    assert report.ok, report
    assert (report.mismatches, report.unbalanced, report.negative) == ((), (), ())
    assert report.transaction_count == 14
    ids = {a.account_id for a in (await eco.list_accounts(page_size=1000)).items}
    assert report.account_count == len(ids)
    supplies = {s.asset: (s.issued, s.held) for s in report.supplies}
    assert supplies == {Asset.CREDIT: (16_000, 16_000), Asset.GOV: (1_100, 1_100)}


async def test_an_empty_ledger_audits_ok(eco: Economy) -> None:
    await eco.parameters()
    report = await eco.audit()
    assert report.ok and report.transaction_count == 0 and report.account_count == 3


async def test_a_tampered_balance_is_found(ledger: Ledger) -> None:
    eco = await busy(ledger)
    alice = await eco.get_account("alice")
    await ledger.set_field("a:alice", "CREDIT", str(alice.balance + 1_000))
    report = await eco.audit()
    assert not report.ok
    assert report.mismatches == (
        BalanceMismatch("alice", Asset.CREDIT, alice.balance + 1_000, alice.balance),
    )
    credit = next(s for s in report.supplies if s.asset is Asset.CREDIT)
    assert credit.held == credit.issued + 1_000  # money from nowhere


async def test_a_tampered_supply_is_found(ledger: Ledger) -> None:
    eco = await busy(ledger)
    await ledger.set_field("a:system:issuance", "GOV", "-1")
    report = await eco.audit()
    assert not report.ok
    assert [(m.account_id, m.asset) for m in report.mismatches] == [("system:issuance", Asset.GOV)]


async def test_an_unbalanced_entry_is_found(ledger: Ledger) -> None:
    eco = await busy(ledger)
    await ledger.append_entry("tx_forged", [("bob", "CREDIT", 5)])
    report = await eco.audit()
    assert not report.ok
    assert report.unbalanced == ("tx_forged",)
    assert report.transaction_count == 15
    # Its posting is not in bob's stored balance either.
    bob = await eco.get_account("bob")
    assert report.mismatches == (
        BalanceMismatch("bob", Asset.CREDIT, bob.balance, bob.balance + 5),
    )


async def test_a_balanced_entry_to_an_unknown_account_is_found(ledger: Ledger) -> None:
    eco = await busy(ledger)
    await ledger.append_entry("tx_ghost", [("bob", "CREDIT", -5), ("ghost", "CREDIT", 5)])
    report = await eco.audit()
    assert not report.ok and report.unbalanced == ()
    assert BalanceMismatch("ghost", Asset.CREDIT, 0, 5) in report.mismatches


async def test_a_negative_balance_is_found(ledger: Ledger) -> None:
    eco = await busy(ledger)
    await ledger.set_field("a:bob", "GOV", "-3")
    report = await eco.audit()
    assert not report.ok
    [negative] = report.negative
    assert (negative.account_id, negative.asset, negative.stored) == ("bob", Asset.GOV, -3)


async def test_audit_over_the_wire(env: Env) -> None:
    await env.account("alice", 100, stake=10)
    reply = await env.audit()
    assert reply.ok and reply.transaction_count == 2
    assert {(s.asset, s.issued, s.held) for s in reply.supplies} == {
        (pb.ASSET_CREDIT, 100, 100),
        (pb.ASSET_GOV, 10, 10),
    }
    env.store._records["a:alice"]["CREDIT"] = "101"
    tampered = await env.audit()
    assert not tampered.ok
    assert [(m.account_id, m.stored, m.replayed) for m in tampered.mismatches] == [
        ("alice", 101, 100)
    ]

"""The unbonding period: unstaked GOV waits in ``unbonding:<id>`` until maintenance
completes it at exactly its completion time (0: back at once)."""

from __future__ import annotations

import pytest

from meshwright.economy import (
    AccountKind,
    Economy,
    Maintenance,
    Params,
    TransactionKind,
)
from meshwright.economy.v1 import economy_pb2 as pb
from meshwright.mesh import InvalidArgument
from tests.economy.conftest import Env, Ledger, open_account

pytestmark = pytest.mark.timeout(60)

PERIOD = 100.0


@pytest.fixture
def bonded(ledger: Ledger) -> Economy:
    return ledger.economy(params=Params(unbonding_period_s=PERIOD))


async def test_a_zero_period_returns_the_stake_at_once(eco: Economy) -> None:
    await open_account(eco, "alice", stake=10)
    done = await eco.unstake("alice", 10)
    assert done.unbonding is None
    assert (done.account.gov_balance, done.account.unbonding) == (10, 0)
    assert await eco.maintain() == Maintenance()


async def test_unbonding_waits_out_the_period(bonded: Economy, ledger: Ledger) -> None:
    eco = bonded
    await open_account(eco, "alice", stake=100)
    start = ledger.clock.now
    done = await eco.unstake("alice", 30)
    entry = done.unbonding
    assert entry is not None
    assert (entry.account_id, entry.amount, entry.complete_time) == ("alice", 30, start + PERIOD)
    assert entry.entry_id.startswith("unb_")
    assert (done.account.staked, done.account.unbonding, done.account.gov_balance) == (70, 30, 0)
    assert [(p.account_id, p.amount) for p in done.transaction.postings] == [
        ("stake:alice", -30),
        ("unbonding:alice", 30),
    ]
    assert done.transaction.kind is TransactionKind.UNSTAKE
    holder = await eco.get_account("unbonding:alice")
    assert (holder.kind, holder.gov_balance) == (AccountKind.UNBONDING, 30)
    # The account's own history shows it though no posting is its own.
    assert (await eco.list_transactions("alice")).transactions[0] == done.transaction
    # Unbonding GOV is neither stake (no tier, no vote) nor spendable.
    assert (await eco.get_account("alice")).staked == 70

    ledger.clock.advance(PERIOD - 0.001)
    assert await eco.maintain() == Maintenance()
    assert (await eco.get_account("alice")).unbonding == 30
    ledger.clock.advance(0.001)  # exactly complete_time
    assert await eco.maintain() == Maintenance(unbonded=1)
    account = await eco.get_account("alice")
    assert (account.staked, account.unbonding, account.gov_balance) == (70, 0, 30)
    [completed, *_] = (await eco.list_transactions("alice")).transactions
    assert completed.kind is TransactionKind.UNBOND_COMPLETE
    assert [(p.account_id, p.amount) for p in completed.postings] == [
        ("unbonding:alice", -30),
        ("alice", 30),
    ]
    assert await eco.maintain() == Maintenance()  # done once
    assert (await eco.audit()).ok


async def test_entries_complete_each_at_its_own_time(bonded: Economy, ledger: Ledger) -> None:
    eco = bonded
    await open_account(eco, "alice", stake=100)
    await eco.unstake("alice", 10)
    ledger.clock.advance(50)
    await eco.unstake("alice", 20)
    ledger.clock.advance(50)
    assert (await eco.maintain()).unbonded == 1
    assert (await eco.get_account("alice")).unbonding == 20
    ledger.clock.advance(50)
    assert (await eco.maintain()).unbonded == 1
    account = await eco.get_account("alice")
    assert (account.unbonding, account.gov_balance, account.staked) == (0, 30, 70)


async def test_two_economies_complete_an_entry_once(bonded: Economy, ledger: Ledger) -> None:
    await open_account(bonded, "alice", stake=10)
    await bonded.unstake("alice", 10)
    other = Economy(ledger.another_store(), clock=ledger.clock)
    ledger.clock.advance(PERIOD)
    done = [await bonded.maintain(), await other.maintain()]
    assert sum(m.unbonded for m in done) == 1
    assert (await bonded.get_account("alice")).gov_balance == 10
    assert (await bonded.audit()).ok


async def test_a_retried_unstake_replays_its_unbonding_entry(
    bonded: Economy, ledger: Ledger
) -> None:
    """The retry answers the first result, completion time included, also once the entry
    has completed (its record is gone then)."""
    await open_account(bonded, "alice", stake=10)
    first = await bonded.unstake("alice", 10, request_id="u1")
    assert await bonded.unstake("alice", 10, request_id="u1") == first
    ledger.clock.advance(PERIOD)
    await bonded.maintain()
    again = await bonded.unstake("alice", 10, request_id="u1")
    assert again.unbonding == first.unbonding


async def test_unbonding_over_the_wire(env: Env) -> None:
    await env.account("alice", stake=5)
    reply = await env.remote.call("Unstake", pb.UnstakeRequest(account_id="alice", amount=5))
    assert not reply.HasField("unbonding")  # the default period is 0
    with pytest.raises(InvalidArgument):
        await env.remote.call("Unstake", pb.UnstakeRequest(account_id="alice", amount=0))

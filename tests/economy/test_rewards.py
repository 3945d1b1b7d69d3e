"""Rewards: the pro rata split, distributions to stakers (admin-triggered and scheduled),
and the tier and streak bonuses a capture pays from the rewards pool."""

from __future__ import annotations

import asyncio
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from meshwright.economy import (
    Economy,
    InsufficientFunds,
    Maintenance,
    Params,
    Tier,
    TierLevel,
    TierTable,
    TransactionKind,
    pro_rata,
)
from meshwright.economy.v1 import economy_pb2 as pb
from meshwright.mesh import InvalidArgument
from tests.economy.conftest import Env, Ledger, fields, open_account

pytestmark = pytest.mark.timeout(60)

# pro_rata ---------------------------------------------------------------------------------


def test_pro_rata_splits_exactly_with_largest_remainders() -> None:
    assert pro_rata(10, [("a", 1), ("b", 1), ("c", 1)]) == [("a", 4), ("b", 3), ("c", 3)]
    assert pro_rata(10, [("c", 1), ("b", 1), ("a", 1)]) == [("a", 4), ("b", 3), ("c", 3)]
    # 7 * 2/3 = 4.67 and 7 * 1/3 = 2.33: the larger remainder gets the unit.
    assert pro_rata(7, [("a", 1), ("b", 2)]) == [("a", 2), ("b", 5)]
    assert pro_rata(100, [("a", 3), ("b", 0), ("c", 1)]) == [("a", 75), ("c", 25)]
    assert pro_rata(1, [("b", 1), ("a", 1)]) == [("a", 1)]  # tie: the smaller key
    assert pro_rata(0, [("a", 1)]) == []
    assert pro_rata(5, []) == [] and pro_rata(5, [("a", 0), ("b", -3)]) == []
    with pytest.raises(ValueError):
        pro_rata(-1, [("a", 1)])


@settings(max_examples=300, deadline=None)
@given(
    amount=st.integers(min_value=0, max_value=2**62),
    weights=st.dictionaries(
        st.text("abcdefgh", min_size=1, max_size=3),
        st.integers(min_value=0, max_value=2**40),
        max_size=12,
    ),
)
def test_pro_rata_properties(amount: int, weights: dict[str, int]) -> None:
    pairs = list(weights.items())
    shares = pro_rata(amount, pairs)
    total = sum(w for w in weights.values() if w > 0)
    if total == 0:
        assert shares == []
        return
    got = dict(shares)
    assert sum(got.values()) == amount  # exact to the unit
    assert [k for k, _ in shares] == sorted(got)  # key order
    for key, weight in weights.items():
        exact = Fraction(amount * weight, total)
        assert abs(got.get(key, 0) - exact) < 1, key  # within one unit of the exact quotient
    assert pro_rata(amount, pairs[::-1]) == shares  # depends only on the inputs


def test_pro_rata_never_returns_shares_that_miss_the_amount() -> None:
    """A key given twice must not silently lose units (combine its weights or refuse)."""
    try:
        shares = pro_rata(10, [("a", 1), ("a", 1), ("b", 1)])
    except ValueError:
        return
    assert sum(n for _, n in shares) == 10


# Distributions ------------------------------------------------------------------------------


async def stakers(eco: Economy) -> None:
    """Three stakers at 1.0x, 1.2x and 1.5x (the default tiers) and one with no stake."""
    await open_account(eco, "bronze", stake=100)  # weight 100 * 1.0
    await open_account(eco, "silver", stake=500)  # 500 * 1.2 = 600
    await open_account(eco, "gold", stake=2_000)  # 2000 * 1.5 = 3000
    await open_account(eco, "none", gov=1_000)
    await eco.mint("system:rewards", 100_000)


async def test_distribution_is_pro_rata_to_stake_times_multiplier(eco: Economy) -> None:
    await stakers(eco)
    done = await eco.distribute_rewards(3_701, memo="epoch 1")
    assert done.recipients == 3 and done.transaction is not None
    tx = done.transaction
    assert (tx.kind, tx.memo) == (TransactionKind.REWARD_DISTRIBUTION, "epoch 1")
    # Weights 100 : 600 : 3000 of 3701: 100.03, 600.16, 3000.81 -> 100, 600, 3001.
    paid = {p.account_id: p.amount for p in tx.postings if p.amount > 0}
    assert paid == {"bronze": 100, "silver": 600, "gold": 3_001}
    assert sum(paid.values()) == 3_701
    assert [(await eco.get_account(a)).balance for a in ("bronze", "silver", "gold", "none")] == [
        100,
        600,
        3_001,
        0,
    ]
    assert (await eco.get_account("system:rewards")).balance == 100_000 - 3_701
    assert (await eco.audit()).ok


async def test_distribution_errors_and_edges(eco: Economy) -> None:
    with pytest.raises(InvalidArgument) as bad:
        await eco.distribute_rewards(0, memo="m" * 1025, request_id="r" * 257)
    assert fields(bad.value) == ["amount", "memo", "request_id"]
    # Nobody staked: nothing to pay, nothing recorded.
    assert (await eco.distribute_rewards(10)).transaction is None
    await open_account(eco, "a", stake=1)
    with pytest.raises(InsufficientFunds) as short:
        await eco.distribute_rewards(1)  # the pool is empty
    assert short.value.metadata == {"account_id": "system:rewards"}
    await eco.mint("system:rewards", 5)
    assert (await eco.distribute_rewards(5)).recipients == 1  # exactly what the pool holds
    # A staker who unstaked everything gets nothing.
    await eco.unstake("a", 1)
    assert (await eco.distribute_rewards(1)).transaction is None


async def test_scheduled_distribution_once_per_period(ledger: Ledger) -> None:
    eco = ledger.economy(params=Params(distribution_amount=370, distribution_interval_s=60.0))
    await stakers(eco)
    # Two economies (replicas) on the same ledger.
    other = Economy(ledger.another_store(), clock=ledger.clock)
    ledger.clock.now = 1_700_000_040.0  # period [1_699_999_980, 1_700_000_040) just ended
    first = await asyncio.gather(eco.maintain(), other.maintain())  # at once
    assert sum(m.distributed for m in first) == 1
    ledger.clock.advance(59.999)  # same period
    assert [await eco.maintain(), await other.maintain()] == [Maintenance(), Maintenance()]
    ledger.clock.advance(0.001)  # the next period starts exactly here
    assert (await other.maintain()).distributed == 1
    assert (await eco.maintain()).distributed == 0
    gold = await eco.get_account("gold")
    assert gold.balance == 2 * 300  # 370 * 3000/3700 each time
    assert (await eco.get_account("system:rewards")).balance == 100_000 - 2 * 370
    assert (await eco.audit()).ok


async def test_scheduled_distribution_pays_what_the_pool_has(ledger: Ledger) -> None:
    eco = ledger.economy(params=Params(distribution_amount=1_000, distribution_interval_s=10.0))
    await open_account(eco, "a", stake=1)
    await open_account(eco, "b", stake=1)
    assert (await eco.maintain()).distributed == 0  # empty pool: nothing, no marker
    await eco.mint("system:rewards", 7)
    assert (await eco.maintain()).distributed == 1  # same period, now funded
    assert [(await eco.get_account(x)).balance for x in ("a", "b")] == [4, 3]
    assert (await eco.get_account("system:rewards")).balance == 0


async def test_distribution_over_the_wire(env: Env) -> None:
    await env.account("alice", stake=100)
    await env.remote.call("Mint", pb.MintRequest(account_id="system:rewards", amount=50))
    reply = await env.remote.call("DistributeRewards", pb.DistributeRewardsRequest(amount=50))
    assert reply.recipient_count == 1
    assert reply.transaction.kind == pb.TRANSACTION_KIND_REWARD_DISTRIBUTION
    assert (await env.get("alice")).balance == 50


# Capture bonuses ------------------------------------------------------------------------------

TIERS = TierTable(
    levels=(TierLevel(Tier.SILVER, 10, 12_500), TierLevel(Tier.GOLD, 20, 10_000)),
)


async def budget(eco: Economy, pool: int) -> None:
    await eco.create_account("payer", initial_balance=10_000)
    await eco.open_escrow("payer", 10_000, escrow_id="e1")
    if pool:
        await eco.mint("system:rewards", pool)


async def test_the_tier_bonus_is_price_times_multiplier_minus_one(ledger: Ledger) -> None:
    eco = ledger.economy(params=Params(tiers=TIERS))
    await budget(eco, pool=1_000)
    await open_account(eco, "agent", stake=10)  # SILVER, 1.25x
    await open_account(eco, "flat", stake=20)  # GOLD here is 1.0x: no bonus
    await eco.create_account("nobody")  # NONE, 1.0x
    done = await eco.capture_escrow("e1", "agent", 101)
    assert done.bonus == 25  # 101 * 0.25 = 25.25, rounded down
    assert [(p.account_id, p.amount) for p in done.transaction.postings] == [
        ("escrow:e1", -101),
        ("agent", 101),
        ("system:rewards", -25),
        ("agent", 25),
    ]
    assert done.escrow.captured == 101  # the bonus is not the escrow's money
    assert (await eco.get_account("agent")).balance == 126
    for payee in ("flat", "nobody"):
        plain = await eco.capture_escrow("e1", payee, 100)
        assert plain.bonus == 0 and len(plain.transaction.postings) == 2
    assert (await eco.get_account("system:rewards")).balance == 975
    assert (await eco.audit()).ok


async def test_the_bonus_is_capped_by_the_pool(ledger: Ledger) -> None:
    eco = ledger.economy(params=Params(tiers=TIERS))
    await budget(eco, pool=10)
    await open_account(eco, "agent", stake=10)
    short = await eco.capture_escrow("e1", "agent", 100)  # a 25 bonus, the pool has 10
    assert short.bonus == 10
    assert (await eco.get_account("system:rewards")).balance == 0
    empty = await eco.capture_escrow("e1", "agent", 100)
    assert empty.bonus == 0 and len(empty.transaction.postings) == 2  # no bonus posting
    assert (await eco.get_account("agent")).balance == 210
    assert (await eco.audit()).ok


async def test_the_streak_bonus_from_exactly_the_threshold(ledger: Ledger) -> None:
    eco = ledger.economy(params=Params(streak_threshold=3, streak_bonus_bps=1_000))
    await budget(eco, pool=1_000)
    await eco.create_account("agent")
    bonuses = [(await eco.capture_escrow("e1", "agent", 50)).bonus for _ in range(4)]
    assert bonuses == [0, 0, 5, 5]  # the 3rd paid task in a row is the first with a bonus
    assert (await eco.get_account("agent")).streak == 4
    # A failure starts the streak again.
    reset = await eco.report_task_failure("agent", escrow_id="e1", task_id="t5")
    assert reset.streak == 0
    bonuses = [(await eco.capture_escrow("e1", "agent", 50)).bonus for _ in range(3)]
    assert bonuses == [0, 0, 5]
    assert (await eco.audit()).ok


async def test_tier_and_streak_bonuses_add_up(ledger: Ledger) -> None:
    eco = ledger.economy(params=Params(tiers=TIERS, streak_threshold=1, streak_bonus_bps=500))
    await budget(eco, pool=1_000)
    await open_account(eco, "agent", stake=10)
    assert (await eco.capture_escrow("e1", "agent", 100)).bonus == 25 + 5


async def test_report_task_failure_errors(eco: Economy) -> None:
    with pytest.raises(InvalidArgument) as bad:
        await eco.report_task_failure("", escrow_id="!", task_id="a b")
    assert fields(bad.value) == ["payee_account_id", "escrow_id", "task_id"]
    with pytest.raises(InvalidArgument):
        await eco.report_task_failure("system:rewards")
    from meshwright.mesh import NotFound

    with pytest.raises(NotFound):
        await eco.report_task_failure("ghost")

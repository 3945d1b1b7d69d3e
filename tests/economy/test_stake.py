"""Staking, unstaking and the tiers the stake earns."""

from __future__ import annotations

import pytest

from meshwright.economy import (
    DEFAULT_TIERS,
    Economy,
    InsufficientFunds,
    InsufficientStake,
    MemoryLedgerStore,
    Tier,
    TierLevel,
    TierTable,
)
from meshwright.economy.v1 import economy_pb2 as pb
from meshwright.mesh import InvalidArgument, NotFound
from tests.economy.conftest import Env, fields


async def test_stake_and_unstake_move_between_balance_and_stake(env: Env) -> None:
    await env.account("alice", 1000)
    staked = await env.remote.call("Stake", pb.StakeRequest(account_id="alice", amount=600))
    assert (staked.account.balance, staked.account.staked) == (400, 600)
    tx = staked.transaction
    assert (tx.kind, tx.from_account_id, tx.to_account_id, tx.amount) == (
        pb.TRANSACTION_KIND_STAKE,
        "alice",
        "",
        600,
    )
    unstaked = await env.remote.call("Unstake", pb.UnstakeRequest(account_id="alice", amount=200))
    assert (unstaked.account.balance, unstaked.account.staked) == (600, 400)
    assert unstaked.transaction.kind == pb.TRANSACTION_KIND_UNSTAKE
    assert (await env.get("alice")).staked == 400


async def test_stake_errors(env: Env) -> None:
    with pytest.raises(InvalidArgument) as bad:
        await env.remote.call("Stake", pb.StakeRequest(account_id="", amount=0))
    assert fields(bad.value) == ["account_id", "amount"]
    with pytest.raises(InvalidArgument) as bad_unstake:
        await env.remote.call("Unstake", pb.UnstakeRequest(account_id="a", amount=-3))
    assert fields(bad_unstake.value) == ["amount"]
    with pytest.raises(NotFound):
        await env.remote.call("Stake", pb.StakeRequest(account_id="nobody", amount=1))
    with pytest.raises(NotFound):
        await env.remote.call("Unstake", pb.UnstakeRequest(account_id="nobody", amount=1))

    await env.account("alice", 100, stake=50)
    with pytest.raises(InsufficientFunds) as funds:
        await env.remote.call("Stake", pb.StakeRequest(account_id="alice", amount=51))
    assert funds.value.reason == "INSUFFICIENT_FUNDS"
    with pytest.raises(InsufficientStake) as stake:
        await env.remote.call("Unstake", pb.UnstakeRequest(account_id="alice", amount=51))
    assert stake.value.reason == "INSUFFICIENT_STAKE"
    acct = await env.get("alice")
    assert (acct.balance, acct.staked) == (50, 50)


async def test_tier_transitions_follow_the_stake(env: Env) -> None:
    await env.account("alice", 100_000)
    expected = [
        (99, pb.STAKE_TIER_NONE, 10_000),
        (100, pb.STAKE_TIER_BRONZE, 10_000),
        (499, pb.STAKE_TIER_BRONZE, 10_000),
        (500, pb.STAKE_TIER_SILVER, 12_000),
        (2_000, pb.STAKE_TIER_GOLD, 15_000),
        (9_999, pb.STAKE_TIER_GOLD, 15_000),
        (10_000, pb.STAKE_TIER_PLATINUM, 20_000),
        (50_000, pb.STAKE_TIER_DIAMOND, 30_000),
        (100_000, pb.STAKE_TIER_DIAMOND, 30_000),
    ]
    current = 0
    for target, tier, bps in expected:
        reply = await env.remote.call(
            "Stake", pb.StakeRequest(account_id="alice", amount=target - current)
        )
        current = target
        assert (reply.account.tier, reply.account.reward_multiplier_bps) == (tier, bps), target
    # And back down on unstake.
    reply = await env.remote.call("Unstake", pb.UnstakeRequest(account_id="alice", amount=99_600))
    assert reply.account.staked == 400 and reply.account.tier == pb.STAKE_TIER_BRONZE
    reply = await env.remote.call("Unstake", pb.UnstakeRequest(account_id="alice", amount=400))
    assert reply.account.tier == pb.STAKE_TIER_NONE


async def test_operators_can_change_the_tier_table() -> None:
    tiers = TierTable(
        levels=(TierLevel(Tier.SILVER, 10, 11_000), TierLevel(Tier.DIAMOND, 20, 40_000)),
        none_multiplier_bps=9_000,
    )
    economy = Economy(MemoryLedgerStore(), tiers=tiers)
    await economy.create_account("a", initial_balance=100)
    seen = []
    for _ in range(3):
        level = economy.tier_of(await economy.get_account("a"))
        seen.append((level.tier, level.multiplier_bps))
        await economy.stake("a", 10)
    assert seen == [(Tier.NONE, 9_000), (Tier.SILVER, 11_000), (Tier.DIAMOND, 40_000)]
    assert DEFAULT_TIERS.level_for(99).tier is Tier.NONE


def test_tier_table_rejects_bad_tables() -> None:
    with pytest.raises(ValueError):
        TierTable(levels=(TierLevel(Tier.GOLD, 100, 1), TierLevel(Tier.SILVER, 200, 1)))
    with pytest.raises(ValueError):
        TierTable(levels=(TierLevel(Tier.BRONZE, 100, 1), TierLevel(Tier.SILVER, 100, 1)))
    with pytest.raises(ValueError):
        TierTable(levels=(TierLevel(Tier.NONE, 1, 1),))
    with pytest.raises(ValueError):
        TierTable(levels=(TierLevel(Tier.BRONZE, 0, 1),))

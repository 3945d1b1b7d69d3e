"""Staking GOV into ``stake:<id>``, unstaking at once (no unbonding period), and the tiers a
stake earns: the domain on both ledger backends and the wire's shapes."""

from __future__ import annotations

import pytest

from meshwright.economy import (
    DEFAULT_TIERS,
    AccountKind,
    Asset,
    Economy,
    InsufficientFunds,
    InsufficientStake,
    Params,
    Tier,
    TierLevel,
    TierTable,
    TransactionKind,
)
from meshwright.economy.model import INT64_MAX
from meshwright.economy.v1 import economy_pb2 as pb
from meshwright.mesh import InvalidArgument, NotFound
from tests.economy.conftest import Env, Ledger, as_caller, fields, open_account

pytestmark = pytest.mark.timeout(60)


async def test_stake_and_unstake_move_gov_between_balance_and_stake(eco: Economy) -> None:
    await open_account(eco, "alice", 50, gov=1000)
    staked = await eco.stake("alice", 600)
    assert (staked.account.gov_balance, staked.account.staked, staked.account.balance) == (
        400,
        600,
        50,  # CREDIT is not stake
    )
    tx = staked.transaction
    assert (tx.kind, tx.from_account_id, tx.to_account_id, tx.amount, tx.asset) == (
        TransactionKind.STAKE,
        "alice",
        "stake:alice",
        600,
        Asset.GOV,
    )
    stake_account = await eco.get_account("stake:alice")
    assert (stake_account.kind, stake_account.gov_balance) == (AccountKind.STAKE, 600)
    unstaked = await eco.unstake("alice", 200)
    assert (unstaked.account.gov_balance, unstaked.account.staked) == (600, 400)
    assert unstaked.unbonding is None  # no unbonding period: back at once
    assert unstaked.transaction.kind is TransactionKind.UNSTAKE
    assert [(p.account_id, p.amount) for p in unstaked.transaction.postings] == [
        ("stake:alice", -200),
        ("alice", 200),
    ]
    assert (await eco.get_account("alice")).staked == 400
    kinds = [t.kind for t in (await eco.list_transactions("alice")).transactions]
    assert kinds == [TransactionKind.UNSTAKE, TransactionKind.STAKE, TransactionKind.MINT]
    assert (await eco.audit()).ok


async def test_the_stake_account_belongs_to_the_stakers_owner(eco: Economy) -> None:
    with as_caller("agent", "bot"):
        await open_account(eco, "bot", gov=10, stake=5)
    assert (await eco.get_account("stake:bot")).owner == "agent:bot"


async def test_stake_errors(eco: Economy) -> None:
    with pytest.raises(InvalidArgument) as bad:
        await eco.stake("", 0)
    assert fields(bad.value) == ["account_id", "amount"]
    for amount in (-3, INT64_MAX + 1):
        with pytest.raises(InvalidArgument) as bad_unstake:
            await eco.unstake("a", amount)
        assert fields(bad_unstake.value) == ["amount"]
    for method in (eco.stake, eco.unstake):
        with pytest.raises(InvalidArgument) as reserved:
            await method("stake:alice", 1)
        assert fields(reserved.value) == ["account_id"]
        with pytest.raises(InvalidArgument) as long_id:
            await method("alice", 1, request_id="r" * 257)
        assert fields(long_id.value) == ["request_id"]
        with pytest.raises(NotFound) as missing:
            await method("nobody", 1)
        assert missing.value.metadata == {"account_id": "nobody"}

    await open_account(eco, "alice", 1_000, gov=50, stake=50)
    with pytest.raises(InsufficientFunds) as funds:  # GOV, whatever the CREDIT balance
        await eco.stake("alice", 51)
    assert funds.value.metadata == {"account_id": "alice"}
    with pytest.raises(InsufficientStake) as stake:
        await eco.unstake("alice", 51)
    assert stake.value.reason == "INSUFFICIENT_STAKE"
    assert stake.value.metadata == {"account_id": "alice"}
    account = await eco.get_account("alice")
    assert (account.gov_balance, account.staked) == (50, 50)
    # Exactly the balance and exactly the stake pass.
    assert (await eco.stake("alice", 50)).account.staked == 100
    assert (await eco.unstake("alice", 100)).account.staked == 0


async def test_unstake_without_any_stake_is_insufficient_stake(eco: Economy) -> None:
    await open_account(eco, "alice", gov=10)
    with pytest.raises(InsufficientStake):
        await eco.unstake("alice", 1)


async def test_tier_transitions_follow_the_stake(eco: Economy) -> None:
    await open_account(eco, "alice", gov=100_000)
    expected = [
        (99, Tier.NONE, 10_000),
        (100, Tier.BRONZE, 10_000),
        (499, Tier.BRONZE, 10_000),
        (500, Tier.SILVER, 12_000),
        (1_999, Tier.SILVER, 12_000),
        (2_000, Tier.GOLD, 15_000),
        (9_999, Tier.GOLD, 15_000),
        (10_000, Tier.PLATINUM, 20_000),
        (49_999, Tier.PLATINUM, 20_000),
        (50_000, Tier.DIAMOND, 30_000),
        (100_000, Tier.DIAMOND, 30_000),
    ]
    current = 0
    for target, tier, bps in expected:
        account = (await eco.stake("alice", target - current)).account
        current = target
        assert (account.tier, account.multiplier_bps) == (tier, bps), target
    account = (await eco.unstake("alice", 99_600)).account
    assert account.staked == 400 and account.tier is Tier.BRONZE
    assert (await eco.unstake("alice", 400)).account.tier is Tier.NONE


async def test_the_tier_table_is_a_parameter(ledger: Ledger) -> None:
    tiers = TierTable(
        levels=(TierLevel(Tier.SILVER, 10, 11_000), TierLevel(Tier.DIAMOND, 20, 40_000)),
        none_multiplier_bps=9_000,
    )
    eco = ledger.economy(params=Params(tiers=tiers))
    await open_account(eco, "a", gov=100)
    seen = []
    for _ in range(3):
        account = await eco.get_account("a")
        seen.append((account.tier, account.multiplier_bps))
        await eco.stake("a", 10)
    assert seen == [(Tier.NONE, 9_000), (Tier.SILVER, 11_000), (Tier.DIAMOND, 40_000)]
    assert (await eco.parameters()).tiers == tiers
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
    with pytest.raises(ValueError):
        TierTable(levels=(TierLevel(Tier.BRONZE, 1, 0),))
    with pytest.raises(ValueError):
        TierTable(none_multiplier_bps=0)
    assert TierTable(levels=()).level_for(10**18).tier is Tier.NONE


async def test_stake_over_the_wire(env: Env) -> None:
    await env.account("alice", 7, gov=1000)
    staked = await env.remote.call("Stake", pb.StakeRequest(account_id="alice", amount=600))
    account = staked.account
    assert (account.gov_balance, account.staked, account.balance) == (400, 600, 7)
    assert (account.tier, account.reward_multiplier_bps) == (pb.STAKE_TIER_SILVER, 12_000)
    assert staked.transaction.asset == pb.ASSET_GOV
    assert staked.transaction.to_account_id == "stake:alice"
    unstaked = await env.remote.call("Unstake", pb.UnstakeRequest(account_id="alice", amount=600))
    assert unstaked.account.gov_balance == 1000 and not unstaked.HasField("unbonding")

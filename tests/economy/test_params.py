"""Parameters and the changes governance may make: validation (each rule by an input only
it refuses, each bound at exactly the limit and one past), application and stored forms."""

from __future__ import annotations

import pytest

from meshwright.economy import Economy, ParameterChange, Params, Tier, TierLevel, TierTable
from meshwright.economy.params import MAX_PERIOD_S
from tests.economy.conftest import Ledger

pytestmark = pytest.mark.timeout(60)

TEN_YEARS = MAX_PERIOD_S


def violations(change: ParameterChange) -> list[str]:
    return [v.field for v in change.violations("change")]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (ParameterChange(), ["change"]),
        (ParameterChange(transfer_fee_bps=1, pass_threshold_bps=1), ["change"]),
        (ParameterChange(transfer_fee_bps=-1), ["change.transfer_fee_bps"]),
        (ParameterChange(transfer_fee_bps=10_001), ["change.transfer_fee_bps"]),
        (ParameterChange(pass_threshold_bps=-1), ["change.pass_threshold_bps"]),
        (ParameterChange(pass_threshold_bps=10_000), ["change.pass_threshold_bps"]),
        (ParameterChange(unbonding_period_s=-1.0), ["change.unbonding_period"]),
        (ParameterChange(unbonding_period_s=TEN_YEARS + 1), ["change.unbonding_period"]),
        (ParameterChange(unbonding_period_s=float("nan")), ["change.unbonding_period"]),
        (ParameterChange(escrow_ttl_s=0.0), ["change.escrow_ttl"]),
        (ParameterChange(escrow_ttl_s=TEN_YEARS + 1), ["change.escrow_ttl"]),
        (ParameterChange(streak=(-1, 0)), ["change.streak_bonus.threshold"]),
        (ParameterChange(streak=(1_000_001, 0)), ["change.streak_bonus.threshold"]),
        (ParameterChange(streak=(1, -1)), ["change.streak_bonus.bonus_bps"]),
        (ParameterChange(streak=(1, 1_000_001)), ["change.streak_bonus.bonus_bps"]),
        (ParameterChange(distribution=(-1, 1.0)), ["change.reward_distribution.amount"]),
        (ParameterChange(distribution=(2**62, 1.0)), ["change.reward_distribution.amount"]),
        (ParameterChange(distribution=(1, -1.0)), ["change.reward_distribution.interval"]),
        (ParameterChange(distribution=(1, TEN_YEARS + 1)), ["change.reward_distribution.interval"]),
        (ParameterChange(distribution=(1, 0.0)), ["change.reward_distribution.interval"]),
        (
            ParameterChange(tiers=TierTable(levels=(TierLevel(Tier.GOLD, 1, 1_000_001),))),
            ["change.tiers.levels[0].multiplier_bps"],
        ),
    ],
    ids=str,
)
def test_each_rule_refuses_its_input(change: ParameterChange, expected: list[str]) -> None:
    assert violations(change) == expected


@pytest.mark.parametrize(
    "change",
    [
        ParameterChange(transfer_fee_bps=0),
        ParameterChange(transfer_fee_bps=10_000),
        ParameterChange(pass_threshold_bps=0),
        ParameterChange(pass_threshold_bps=9_999),
        ParameterChange(unbonding_period_s=0.0),
        ParameterChange(unbonding_period_s=TEN_YEARS),
        ParameterChange(escrow_ttl_s=0.001),
        ParameterChange(escrow_ttl_s=TEN_YEARS),
        ParameterChange(streak=(0, 0)),
        ParameterChange(streak=(1_000_000, 1_000_000)),
        ParameterChange(distribution=(0, 0.0)),  # off
        ParameterChange(distribution=(2**62 - 1, TEN_YEARS)),
        ParameterChange(tiers=TierTable(levels=(TierLevel(Tier.GOLD, 1, 1_000_000),))),
    ],
    ids=str,
)
def test_each_bound_is_inclusive(change: ParameterChange) -> None:
    assert violations(change) == []


def test_apply_changes_only_its_field() -> None:
    base = Params(transfer_fee_bps=3, version=4)
    assert ParameterChange(transfer_fee_bps=9).apply(base) == Params(transfer_fee_bps=9, version=4)
    streak = ParameterChange(streak=(2, 300)).apply(base)
    assert (streak.streak_threshold, streak.streak_bonus_bps, streak.transfer_fee_bps) == (
        2,
        300,
        3,
    )
    dist = ParameterChange(distribution=(5, 60.0)).apply(base)
    assert (dist.distribution_amount, dist.distribution_interval_s) == (5, 60.0)
    tiers = TierTable(levels=(TierLevel(Tier.BRONZE, 7, 10_500),))
    assert ParameterChange(tiers=tiers).apply(base).tiers == tiers


@pytest.mark.parametrize(
    "change",
    [
        ParameterChange(tiers=TierTable(levels=(TierLevel(Tier.SILVER, 3, 12_000),))),
        ParameterChange(transfer_fee_bps=17),
        ParameterChange(unbonding_period_s=12.5),
        ParameterChange(streak=(3, 100)),
        ParameterChange(distribution=(10, 3.5)),
        ParameterChange(pass_threshold_bps=6_000),
        ParameterChange(escrow_ttl_s=9.0),
    ],
    ids=str,
)
def test_changes_round_trip_their_stored_form(change: ParameterChange) -> None:
    assert ParameterChange.from_json(change.to_json()) == change


def test_params_round_trip_their_stored_form() -> None:
    params = Params(
        tiers=TierTable(levels=(TierLevel(Tier.GOLD, 5, 25_000),), none_multiplier_bps=9_000),
        transfer_fee_bps=25,
        unbonding_period_s=60.0,
        streak_threshold=3,
        streak_bonus_bps=100,
        distribution_amount=1_000,
        distribution_interval_s=3_600.0,
        pass_threshold_bps=6_000,
        escrow_ttl_s=120.0,
    )
    assert Params.from_json(params.to_json(), 7) == params.__class__(
        **{**{f: getattr(params, f) for f in params.__dataclass_fields__}, "version": 7}
    )
    assert ParameterChange.from_json("") is None


def test_a_config_error_names_the_config_key_a_change_error_the_contract_field() -> None:
    with pytest.raises(ValueError, match=r"parameters\.escrow_ttl_s: must be positive"):
        Params.from_config('{"escrow_ttl_s": 0}')
    (violation,) = ParameterChange(escrow_ttl_s=0.0).violations()
    assert violation.field == "change.escrow_ttl"


def test_params_from_config() -> None:
    from_config = Params.from_config
    params = from_config('{"transfer_fee_bps": 25, "escrow_ttl_s": 5}')
    assert (params.transfer_fee_bps, params.escrow_ttl_s, params.tiers) == (25, 5, Params().tiers)
    for bad in ('{"nope": 1}', "[1]", '{"transfer_fee_bps": 10001}', '{"escrow_ttl_s": 0}'):
        with pytest.raises(ValueError):
            from_config(bad)


async def test_the_first_economy_writes_the_parameters(ledger: Ledger) -> None:
    first = ledger.economy(params=Params(transfer_fee_bps=7))
    stored = await first.parameters()
    assert (stored.transfer_fee_bps, stored.version) == (7, 1)
    # A later economy configured otherwise follows the ledger, not its own configuration.
    later = Economy(ledger.another_store(), params=Params(transfer_fee_bps=99), clock=ledger.clock)
    assert await later.parameters() == stored
    assert later.initial_params.transfer_fee_bps == 99

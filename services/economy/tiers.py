"""Stake tiers: how much stake earns which tier and reward multiplier.

A tier is derived from the stake whenever an account is read, never stored,
so an operator who changes the table changes every account's tier at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum

BPS_ONE = 10_000
"""A multiplier of 1.0x in basis points."""


class Tier(IntEnum):
    """Account rank by stake; numbers match the contract's ``StakeTier``."""

    NONE = 1
    BRONZE = 2
    SILVER = 3
    GOLD = 4
    PLATINUM = 5
    DIAMOND = 6


@dataclass(frozen=True, slots=True)
class TierLevel:
    """One rung of the table."""

    tier: Tier
    min_stake: int
    """Stake (minor units) from which the tier applies."""
    multiplier_bps: int
    """Reward multiplier in basis points (10000 = 1.0x)."""


def _default_levels() -> tuple[TierLevel, ...]:
    return (
        TierLevel(Tier.BRONZE, 100, 10_000),
        TierLevel(Tier.SILVER, 500, 12_000),
        TierLevel(Tier.GOLD, 2_000, 15_000),
        TierLevel(Tier.PLATINUM, 10_000, 20_000),
        TierLevel(Tier.DIAMOND, 50_000, 30_000),
    )


@dataclass(frozen=True, slots=True)
class TierTable:
    """Stake thresholds and multipliers, e.g. ``TierTable(levels=(TierLevel(...), ...))``."""

    levels: tuple[TierLevel, ...] = field(default_factory=_default_levels)
    """Rungs in ascending order of ``min_stake`` and tier; tiers may be left out."""
    none_multiplier_bps: int = BPS_ONE
    """Multiplier below the lowest rung (tier NONE)."""

    def __post_init__(self) -> None:
        previous: TierLevel | None = None
        for level in self.levels:
            if level.tier is Tier.NONE:
                raise ValueError("Tier.NONE is the implicit level below the table")
            if level.min_stake <= 0 or level.multiplier_bps <= 0:
                raise ValueError(f"{level.tier.name}: min_stake and multiplier_bps must be > 0")
            if previous is not None and (
                level.min_stake <= previous.min_stake or level.tier <= previous.tier
            ):
                raise ValueError("levels must ascend in both min_stake and tier")
            previous = level
        if self.none_multiplier_bps <= 0:
            raise ValueError("none_multiplier_bps must be > 0")

    def level_for(self, staked: int) -> TierLevel:
        """The rung a stake reaches (a NONE level below the first)."""
        # Five rungs: a reverse scan beats bisect's call overhead.
        for level in reversed(self.levels):
            if staked >= level.min_stake:
                return level
        return TierLevel(Tier.NONE, 0, self.none_multiplier_bps)


DEFAULT_TIERS = TierTable()
"""bronze >= 100, silver >= 500, gold >= 2000, platinum >= 10000, diamond >= 50000."""

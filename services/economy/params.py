"""The economy's parameters: what governance can change, stored in the ledger.

Parameters are one record (``params``) with a version. The first economy to
start on an empty ledger writes its configured parameters; afterwards only a
passed proposal changes them, atomically with its PARAMETER_CHANGE
transaction. Every step whose outcome depends on a parameter checks the
version it planned with, so no replica applies a stale fee, tier or period.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from meshwright.economy.tiers import BPS_ONE, DEFAULT_TIERS, Tier, TierLevel, TierTable
from meshwright.mesh.errors import FieldViolation

MAX_PERIOD_S = 10 * 366 * 86_400.0
"""Ten years: the longest period or time to live a parameter may hold."""
MAX_MULTIPLIER_BPS = 100 * BPS_ONE
"""A 100x tier multiplier at most (keeps bonus arithmetic far inside int64)."""
MAX_STREAK_THRESHOLD = 1_000_000


@dataclass(frozen=True, slots=True)
class Params:
    """The values governance may change. Durations in seconds, rates in basis points."""

    tiers: TierTable = DEFAULT_TIERS
    """Stake thresholds (GOV) and reward multipliers."""
    transfer_fee_bps: int = 0
    """Fee on transfers, paid by the sender on top of the amount to ``system:treasury``
    (rounded down)."""
    unbonding_period_s: float = 0.0
    """How long unstaked GOV waits before it is back in the balance (0: at once)."""
    streak_threshold: int = 0
    """Consecutive paid tasks from which each further task earns the streak bonus (0: off)."""
    streak_bonus_bps: int = 0
    """Streak bonus as a share of the task's price, from the rewards pool."""
    distribution_amount: int = 0
    """CREDIT the rewards pool pays to stakers every ``distribution_interval_s`` (0: none)."""
    distribution_interval_s: float = 0.0
    """Period of scheduled reward distributions (0: only admin-triggered ones)."""
    pass_threshold_bps: int = 5_000
    """Default share of yes in yes + no a proposal must exceed to pass."""
    escrow_ttl_s: float = 3_600.0
    """How long an escrow stays open without a renewal or capture."""
    version: int = 0
    """Bumped by every change; 0 before the ledger stored any."""

    def to_json(self) -> str:
        """The stored form (the version is stored beside it)."""
        body = dataclasses.asdict(self)
        body.pop("version")
        body["tiers"] = _tiers_json(self.tiers)
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    @staticmethod
    def from_config(text: str) -> Params:
        """Parameters from a JSON object naming any of the fields (the rest keep their
        defaults), e.g. ``{"transfer_fee_bps": 25, "tiers": {"levels": [["BRONZE", 100,
        10000], ...]}}``. ValueError for unknown keys or values out of range."""
        body = json.loads(text)
        if not isinstance(body, dict):
            raise ValueError("economy parameters must be a JSON object")
        known = {f.name for f in dataclasses.fields(Params)} - {"version"}
        unknown = sorted(set(body) - known)
        if unknown:
            raise ValueError(f"unknown economy parameters {unknown}; known: {sorted(known)}")
        defaults = json.loads(Params().to_json())
        if "tiers" in body:
            body["tiers"] = {**defaults["tiers"], **body["tiers"]}
        params = Params.from_json(json.dumps({**defaults, **body}), 0)
        change_errors = [
            v
            for change in (
                ParameterChange(tiers=params.tiers),
                ParameterChange(transfer_fee_bps=params.transfer_fee_bps),
                ParameterChange(unbonding_period_s=params.unbonding_period_s),
                ParameterChange(streak=(params.streak_threshold, params.streak_bonus_bps)),
                ParameterChange(
                    distribution=(params.distribution_amount, params.distribution_interval_s)
                ),
                ParameterChange(pass_threshold_bps=params.pass_threshold_bps),
                ParameterChange(escrow_ttl_s=params.escrow_ttl_s),
            )
            for v in change.violations("parameters", names={})
        ]
        if change_errors:
            raise ValueError("; ".join(f"{v.field}: {v.description}" for v in change_errors))
        return params

    @staticmethod
    def from_json(text: str, version: int) -> Params:
        """Parse the stored form."""
        body: dict[str, Any] = json.loads(text)
        tiers = _tiers_from(body.pop("tiers"))
        known = {f.name for f in dataclasses.fields(Params)}
        return Params(tiers=tiers, version=version, **{k: v for k, v in body.items() if k in known})


CONTRACT_NAMES: Mapping[str, str] = {
    "tiers": "tiers",
    "transfer_fee_bps": "transfer_fee_bps",
    "unbonding_period_s": "unbonding_period",
    "streak": "streak_bonus",
    "distribution": "reward_distribution",
    "pass_threshold_bps": "pass_threshold_bps",
    "escrow_ttl_s": "escrow_ttl",
}
"""``ParameterChange`` field -> the contract's ``ParameterChange`` field (error paths)."""


@dataclass(frozen=True, slots=True)
class ParameterChange:
    """A typed change a proposal carries; exactly one field is set."""

    tiers: TierTable | None = None
    transfer_fee_bps: int | None = None
    unbonding_period_s: float | None = None
    streak: tuple[int, int] | None = None
    """(threshold, bonus_bps)."""
    distribution: tuple[int, float] | None = None
    """(amount, interval_s)."""
    pass_threshold_bps: int | None = None
    escrow_ttl_s: float | None = None

    def set_fields(self) -> list[str]:
        """Names of the fields set."""
        return [f.name for f in dataclasses.fields(self) if getattr(self, f.name) is not None]

    def violations(
        self, field: str = "change", *, names: Mapping[str, str] | None = None
    ) -> list[FieldViolation]:
        """What is wrong with it, as field violations under ``field``.

        Paths use the contract's field names (``change.streak_bonus.threshold``);
        ``names`` maps this class's field names to others (a config file's).
        """
        set_names = self.set_fields()
        if len(set_names) != 1:
            return [FieldViolation(field, "must set exactly one parameter")]
        name = set_names[0]
        shown = (CONTRACT_NAMES if names is None else names).get(name, name)
        path = f"{field}.{shown}"
        if self.transfer_fee_bps is not None and not 0 <= self.transfer_fee_bps <= BPS_ONE:
            return [FieldViolation(path, "must be 0..10000 basis points")]
        if self.pass_threshold_bps is not None and not 0 <= self.pass_threshold_bps < BPS_ONE:
            return [FieldViolation(path, "must be 0..9999 basis points")]
        for value in (self.unbonding_period_s, self.escrow_ttl_s):
            if value is not None and not (math.isfinite(value) and 0 <= value <= MAX_PERIOD_S):
                return [FieldViolation(path, "must be 0..ten years")]
        if self.escrow_ttl_s is not None and self.escrow_ttl_s <= 0:
            return [FieldViolation(path, "must be positive")]
        if self.streak is not None:
            threshold, bonus = self.streak
            if not 0 <= threshold <= MAX_STREAK_THRESHOLD:
                return [FieldViolation(f"{path}.threshold", "must be 0..1000000")]
            if not 0 <= bonus <= MAX_MULTIPLIER_BPS:
                return [FieldViolation(f"{path}.bonus_bps", "must be 0..1000000 basis points")]
        if self.distribution is not None:
            amount, interval = self.distribution
            if not 0 <= amount < 2**62:
                return [FieldViolation(f"{path}.amount", "must be 0..2^62")]
            if not (math.isfinite(interval) and 0 <= interval <= MAX_PERIOD_S):
                return [FieldViolation(f"{path}.interval", "must be 0..ten years")]
            if amount > 0 and interval <= 0:
                return [FieldViolation(f"{path}.interval", "must be positive with an amount")]
        if self.tiers is not None:
            for i, level in enumerate(self.tiers.levels):
                if level.multiplier_bps > MAX_MULTIPLIER_BPS:
                    return [
                        FieldViolation(f"{path}.levels[{i}].multiplier_bps", "must be at most 100x")
                    ]
        return []

    def apply(self, params: Params) -> Params:
        """``params`` with this change (the version is the caller's to bump)."""
        changes: dict[str, Any] = {}
        if self.tiers is not None:
            changes["tiers"] = self.tiers
        if self.transfer_fee_bps is not None:
            changes["transfer_fee_bps"] = self.transfer_fee_bps
        if self.unbonding_period_s is not None:
            changes["unbonding_period_s"] = self.unbonding_period_s
        if self.streak is not None:
            changes["streak_threshold"], changes["streak_bonus_bps"] = self.streak
        if self.distribution is not None:
            changes["distribution_amount"], changes["distribution_interval_s"] = self.distribution
        if self.pass_threshold_bps is not None:
            changes["pass_threshold_bps"] = self.pass_threshold_bps
        if self.escrow_ttl_s is not None:
            changes["escrow_ttl_s"] = self.escrow_ttl_s
        return dataclasses.replace(params, **changes)

    def to_json(self) -> str:
        """The stored form (inside a proposal record)."""
        body: dict[str, Any] = {}
        for name in self.set_fields():
            value = getattr(self, name)
            body[name] = _tiers_json(value) if isinstance(value, TierTable) else value
        return json.dumps(body, sort_keys=True, separators=(",", ":"))

    @staticmethod
    def from_json(text: str) -> ParameterChange | None:
        """Parse the stored form ("" for no change)."""
        if not text:
            return None
        body: dict[str, Any] = json.loads(text)
        if "tiers" in body:
            body["tiers"] = _tiers_from(body["tiers"])
        for pair in ("streak", "distribution"):
            if pair in body:
                body[pair] = tuple(body[pair])
        return ParameterChange(**body)


def _tiers_json(tiers: TierTable) -> dict[str, Any]:
    return {
        "none_multiplier_bps": tiers.none_multiplier_bps,
        "levels": [[lv.tier.name, lv.min_stake, lv.multiplier_bps] for lv in tiers.levels],
    }


def _tiers_from(raw: dict[str, Any]) -> TierTable:
    return TierTable(
        levels=tuple(TierLevel(Tier[name], int(m), int(b)) for name, m, b in raw["levels"]),
        none_multiplier_bps=int(raw["none_multiplier_bps"]),
    )


__all__ = ["MAX_PERIOD_S", "ParameterChange", "Params"]

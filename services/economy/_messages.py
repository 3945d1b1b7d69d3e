"""Domain values to contract messages and back (the servicer's only translation layer).

Enums convert by name (a domain ``Asset.GOV`` is the contract's ``ASSET_GOV``), so a domain
enum that drifts from the contract fails at import. Durations are seconds in the domain.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from typing import Any, TypeVar

from google.protobuf import duration_pb2

from meshwright.economy.model import (
    Account,
    AccountKind,
    Asset,
    AuditReport,
    BalanceMismatch,
    Escrow,
    EscrowState,
    Posting,
    Proposal,
    ProposalState,
    Transaction,
    TransactionKind,
    UnbondingEntry,
)
from meshwright.economy.params import ParameterChange, Params
from meshwright.economy.tiers import Tier, TierLevel, TierTable
from meshwright.economy.v1 import economy_pb2 as pb
from meshwright.mesh.errors import InvalidArgument
from meshwright.mesh.timeutil import timestamp
from meshwright.mesh.validation import duration_s

E = TypeVar("E", bound=IntEnum)


def _to_pb(domain: type[E], contract: Any, prefix: str) -> dict[E, Any]:
    """Each domain value's contract value, matched by name."""
    return {v: contract.Value(f"{prefix}{v.name}") for v in domain}


_TIER: dict[Tier, pb.StakeTier] = _to_pb(Tier, pb.StakeTier, "STAKE_TIER_")
_ASSET: dict[Asset, pb.Asset] = _to_pb(Asset, pb.Asset, "ASSET_")
_ACCOUNT_KIND: dict[AccountKind, pb.AccountKind] = _to_pb(
    AccountKind, pb.AccountKind, "ACCOUNT_KIND_"
)
_KIND: dict[TransactionKind, pb.TransactionKind] = _to_pb(
    TransactionKind, pb.TransactionKind, "TRANSACTION_KIND_"
)
_ESCROW_STATE: dict[EscrowState, pb.EscrowState] = _to_pb(
    EscrowState, pb.EscrowState, "ESCROW_STATE_"
)
_PROPOSAL_STATE: dict[ProposalState, pb.ProposalState] = _to_pb(
    ProposalState, pb.ProposalState, "PROPOSAL_STATE_"
)


def _inverse(mapping: Mapping[E, int]) -> dict[int, E]:
    return {int(number): value for value, number in mapping.items()}


_TIER_OF = _inverse(_TIER)
_ASSET_OF = _inverse(_ASSET)
_ACCOUNT_KIND_OF = _inverse(_ACCOUNT_KIND)
_KIND_OF = _inverse(_KIND)
_ESCROW_STATE_OF = _inverse(_ESCROW_STATE)
_PROPOSAL_STATE_OF = _inverse(_PROPOSAL_STATE)


def _filter(inverse: dict[int, E], value: int) -> E | int | None:
    """A request's enum as the domain takes it: None when unspecified, the domain value when
    known, else the number itself (the domain refuses it, naming the field)."""
    if value == 0:
        return None
    return inverse.get(value, value)


def asset_of(value: int) -> Asset | int | None:
    """A request's Asset (None: unspecified, which the domain reads as CREDIT or "any")."""
    return _filter(_ASSET_OF, value)


def account_kind_of(value: int) -> AccountKind | int | None:
    return _filter(_ACCOUNT_KIND_OF, value)


def transaction_kind_of(value: int) -> TransactionKind | int | None:
    return _filter(_KIND_OF, value)


def escrow_state_of(value: int) -> EscrowState | int | None:
    return _filter(_ESCROW_STATE_OF, value)


def proposal_state_of(value: int) -> ProposalState | int | None:
    return _filter(_PROPOSAL_STATE_OF, value)


def duration(seconds: float) -> duration_pb2.Duration:
    """A Duration of ``seconds``."""
    d = duration_pb2.Duration()
    d.FromNanoseconds(round(seconds * 1e9))
    return d


def optional_duration_s(msg: Any, field: str) -> float | None:
    """The Duration field ``field`` of ``msg`` in seconds; None when unset."""
    return duration_s(getattr(msg, field)) if msg.HasField(field) else None


# Domain -> contract ---------------------------------------------------------------


def account_pb(account: Account) -> pb.Account:
    return pb.Account(
        account_id=account.account_id,
        display_name=account.display_name,
        balance=account.balance,
        staked=account.staked,
        escrowed=account.escrowed,
        owner=account.owner,
        tier=_TIER[account.tier],
        reward_multiplier_bps=account.multiplier_bps,
        create_time=timestamp(account.create_time),
        gov_balance=account.gov_balance,
        unbonding=account.unbonding,
        kind=_ACCOUNT_KIND[account.kind],
        streak=account.streak,
    )


def posting_pb(posting: Posting) -> pb.Posting:
    return pb.Posting(
        account_id=posting.account_id, asset=_ASSET[posting.asset], amount=posting.amount
    )


def transaction_pb(tx: Transaction) -> pb.Transaction:
    return pb.Transaction(
        transaction_id=tx.transaction_id,
        kind=_KIND[tx.kind],
        from_account_id=tx.from_account_id,
        to_account_id=tx.to_account_id,
        amount=tx.amount,
        escrow_id=tx.escrow_id,
        memo=tx.memo,
        create_time=timestamp(tx.create_time),
        postings=[posting_pb(p) for p in tx.postings],
        request_id=tx.request_id,
        caller=tx.caller,
        asset=_ASSET[tx.asset],
        task_id=tx.task_id,
        proposal_id=tx.proposal_id,
    )


def escrow_pb(escrow: Escrow) -> pb.Escrow:
    msg = pb.Escrow(
        escrow_id=escrow.escrow_id,
        payer_account_id=escrow.payer_account_id,
        amount=escrow.amount,
        captured=escrow.captured,
        released=escrow.released,
        state=_ESCROW_STATE[escrow.state],
        reference=escrow.reference,
        create_time=timestamp(escrow.create_time),
        owner=escrow.owner,
        captures=escrow.captures,
    )
    if escrow.close_time is not None:
        msg.close_time.CopyFrom(timestamp(escrow.close_time))
    if escrow.expire_time:
        msg.expire_time.CopyFrom(timestamp(escrow.expire_time))
    return msg


def unbonding_pb(entry: UnbondingEntry) -> pb.UnbondingEntry:
    return pb.UnbondingEntry(
        entry_id=entry.entry_id,
        account_id=entry.account_id,
        amount=entry.amount,
        complete_time=timestamp(entry.complete_time),
    )


def tier_levels_pb(tiers: TierTable) -> list[pb.TierLevel]:
    return [
        pb.TierLevel(tier=_TIER[lv.tier], min_stake=lv.min_stake, multiplier_bps=lv.multiplier_bps)
        for lv in tiers.levels
    ]


def change_pb(change: ParameterChange) -> pb.ParameterChange:
    msg = pb.ParameterChange()
    if change.tiers is not None:
        msg.tiers.levels.extend(tier_levels_pb(change.tiers))
    if change.transfer_fee_bps is not None:
        msg.transfer_fee_bps = change.transfer_fee_bps
    if change.unbonding_period_s is not None:
        msg.unbonding_period.CopyFrom(duration(change.unbonding_period_s))
    if change.streak is not None:
        threshold, bonus_bps = change.streak
        msg.streak_bonus.CopyFrom(pb.StreakBonus(threshold=threshold, bonus_bps=bonus_bps))
    if change.distribution is not None:
        amount, interval_s = change.distribution
        msg.reward_distribution.CopyFrom(
            pb.RewardDistribution(amount=amount, interval=duration(interval_s))
        )
    if change.pass_threshold_bps is not None:
        msg.pass_threshold_bps = change.pass_threshold_bps
    if change.escrow_ttl_s is not None:
        msg.escrow_ttl.CopyFrom(duration(change.escrow_ttl_s))
    return msg


def proposal_pb(proposal: Proposal) -> pb.Proposal:
    msg = pb.Proposal(
        proposal_id=proposal.proposal_id,
        proposer_account_id=proposal.proposer_account_id,
        title=proposal.title,
        description=proposal.description,
        state=_PROPOSAL_STATE[proposal.state],
        yes_weight=proposal.yes_weight,
        no_weight=proposal.no_weight,
        abstain_weight=proposal.abstain_weight,
        quorum=proposal.quorum,
        voter_count=proposal.voter_count,
        create_time=timestamp(proposal.create_time),
        voting_end_time=timestamp(proposal.voting_end_time),
        closed_early_by=proposal.closed_early_by,
        threshold_bps=proposal.threshold_bps,
        applied=proposal.applied,
    )
    if proposal.close_time is not None:
        msg.close_time.CopyFrom(timestamp(proposal.close_time))
    if proposal.change is not None:
        msg.change.CopyFrom(change_pb(proposal.change))
    return msg


def parameters_pb(params: Params) -> pb.EconomyParameters:
    return pb.EconomyParameters(
        tiers=tier_levels_pb(params.tiers),
        transfer_fee_bps=params.transfer_fee_bps,
        unbonding_period=duration(params.unbonding_period_s),
        streak_bonus=pb.StreakBonus(
            threshold=params.streak_threshold, bonus_bps=params.streak_bonus_bps
        ),
        reward_distribution=pb.RewardDistribution(
            amount=params.distribution_amount, interval=duration(params.distribution_interval_s)
        ),
        pass_threshold_bps=params.pass_threshold_bps,
        escrow_ttl=duration(params.escrow_ttl_s),
        version=params.version,
    )


def _mismatch_pb(m: BalanceMismatch) -> pb.BalanceMismatch:
    return pb.BalanceMismatch(
        account_id=m.account_id, asset=_ASSET[m.asset], stored=m.stored, replayed=m.replayed
    )


def audit_pb(report: AuditReport) -> pb.AuditLedgerResponse:
    return pb.AuditLedgerResponse(
        ok=report.ok,
        transaction_count=report.transaction_count,
        account_count=report.account_count,
        supplies=[
            pb.AssetSupply(asset=_ASSET[s.asset], issued=s.issued, held=s.held)
            for s in report.supplies
        ],
        mismatches=[_mismatch_pb(m) for m in report.mismatches],
        unbalanced_transaction_ids=list(report.unbalanced),
        negative_balances=[_mismatch_pb(m) for m in report.negative],
    )


# Contract -> domain ---------------------------------------------------------------


def tier_table(levels: Any, field: str) -> TierTable:
    """A TierTable from repeated TierLevel; INVALID_ARGUMENT naming ``field`` if it is not one."""
    parsed: list[TierLevel] = []
    for i, level in enumerate(levels):
        tier = _TIER_OF.get(level.tier)
        if tier is None or tier is Tier.NONE:
            raise InvalidArgument.field(
                f"{field}[{i}].tier", "must be a tier from BRONZE to DIAMOND"
            )
        parsed.append(TierLevel(tier, level.min_stake, level.multiplier_bps))
    try:
        return TierTable(levels=tuple(parsed))
    except ValueError as err:  # thresholds or tiers out of order, non-positive values
        raise InvalidArgument.field(field, str(err)) from None


def parameter_change(msg: pb.ParameterChange, field: str = "change") -> ParameterChange:
    """The domain change a ParameterChange message sets (the domain checks its ranges)."""
    which = msg.WhichOneof("change")
    if which == "tiers":
        return ParameterChange(tiers=tier_table(msg.tiers.levels, f"{field}.tiers.levels"))
    if which == "transfer_fee_bps":
        return ParameterChange(transfer_fee_bps=msg.transfer_fee_bps)
    if which == "unbonding_period":
        return ParameterChange(unbonding_period_s=duration_s(msg.unbonding_period))
    if which == "streak_bonus":
        return ParameterChange(streak=(msg.streak_bonus.threshold, msg.streak_bonus.bonus_bps))
    if which == "reward_distribution":
        rd = msg.reward_distribution
        return ParameterChange(distribution=(rd.amount, duration_s(rd.interval)))
    if which == "pass_threshold_bps":
        return ParameterChange(pass_threshold_bps=msg.pass_threshold_bps)
    if which == "escrow_ttl":
        return ParameterChange(escrow_ttl_s=duration_s(msg.escrow_ttl))
    if which is None:
        return ParameterChange()  # the domain refuses it: exactly one parameter must be set
    # A oneof member added to the contract before this layer learned it.
    raise InvalidArgument.field(f"{field}.{which}", "is not supported by this server")

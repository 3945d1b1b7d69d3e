"""Domain values to contract messages (the servicer's only translation layer)."""

from __future__ import annotations

from meshwright.economy.model import (
    Account,
    Escrow,
    EscrowState,
    Proposal,
    ProposalState,
    Transaction,
    TransactionKind,
)
from meshwright.economy.tiers import Tier, TierTable
from meshwright.economy.v1 import economy_pb2 as pb
from meshwright.mesh.timeutil import timestamp

# Built by name, so a domain enum that drifts from the contract fails at import.
_TIER: dict[Tier, pb.StakeTier] = {t: getattr(pb, f"STAKE_TIER_{t.name}") for t in Tier}
_KIND: dict[TransactionKind, pb.TransactionKind] = {
    k: getattr(pb, f"TRANSACTION_KIND_{k.name}") for k in TransactionKind
}
_ESCROW_STATE: dict[EscrowState, pb.EscrowState] = {
    s: getattr(pb, f"ESCROW_STATE_{s.name}") for s in EscrowState
}
_PROPOSAL_STATE: dict[ProposalState, pb.ProposalState] = {
    s: getattr(pb, f"PROPOSAL_STATE_{s.name}") for s in ProposalState
}


def account_pb(account: Account, tiers: TierTable) -> pb.Account:
    level = tiers.level_for(account.staked)
    return pb.Account(
        account_id=account.account_id,
        display_name=account.display_name,
        balance=account.balance,
        staked=account.staked,
        escrowed=account.escrowed,
        owner=account.owner,
        tier=_TIER[level.tier],
        reward_multiplier_bps=level.multiplier_bps,
        create_time=timestamp(account.create_time),
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
    )
    if escrow.close_time is not None:
        msg.close_time.CopyFrom(timestamp(escrow.close_time))
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
    )
    if proposal.close_time is not None:
        msg.close_time.CopyFrom(timestamp(proposal.close_time))
    return msg

"""Governance rules: when a proposal passes, and when its voting has ended.

Pure functions over ``Proposal`` values, shared by every store.
"""

from __future__ import annotations

import dataclasses

from meshwright.economy.model import Proposal, ProposalState


def outcome(yes: int, no: int, abstain: int, quorum: int) -> ProposalState:
    """PASSED iff the turnout meets quorum and yes outweighs no."""
    if yes + no + abstain >= quorum and yes > no:
        return ProposalState.PASSED
    return ProposalState.REJECTED


def decided(proposal: Proposal, *, end_time: float) -> Proposal:
    """``proposal`` closed at ``end_time`` with its outcome."""
    return dataclasses.replace(
        proposal,
        state=outcome(
            proposal.yes_weight, proposal.no_weight, proposal.abstain_weight, proposal.quorum
        ),
        voting_end_time=end_time,
    )


def as_of(proposal: Proposal, now: float) -> Proposal:
    """The proposal as it stands at ``now``.

    Voting ends lazily: an open proposal past its end is decided when looked
    at, with no timer. Nothing can change its tally after the end, so the
    outcome read now is the one a timer would have recorded.
    """
    if proposal.state is ProposalState.OPEN and now >= proposal.voting_end_time:
        return decided(proposal, end_time=proposal.voting_end_time)
    return proposal

"""Governance rules: when a proposal passes, and when its voting has ended.

Pure functions over ``Proposal`` values, shared by every store.
"""

from __future__ import annotations

import dataclasses

from meshwright.economy.model import Proposal, ProposalState


def outcome(
    yes: int, no: int, abstain: int, quorum: int, threshold_bps: int = 5_000
) -> ProposalState:
    """PASSED iff the turnout meets quorum and yes is more than ``threshold_bps`` of yes + no.

    At the default 5000 that is "yes outweighs no"; a tie never passes.
    """
    if yes + no + abstain >= quorum and yes * 10_000 > threshold_bps * (yes + no):
        return ProposalState.PASSED
    return ProposalState.REJECTED


def decided(proposal: Proposal, *, close_time: float, closed_early_by: str = "") -> Proposal:
    """``proposal`` closed at ``close_time`` with its outcome.

    ``voting_end_time`` stays the window set at creation, so an early close
    reads as one: ``close_time`` before ``voting_end_time`` and who did it.
    """
    return dataclasses.replace(
        proposal,
        state=outcome(
            proposal.yes_weight,
            proposal.no_weight,
            proposal.abstain_weight,
            proposal.quorum,
            proposal.threshold_bps,
        ),
        close_time=close_time,
        closed_early_by=closed_early_by,
    )


def as_of(proposal: Proposal, now: float) -> Proposal:
    """The proposal as it stands at ``now``.

    Voting ends lazily: an open proposal past its end is decided when looked
    at, with no timer, closed at its ``voting_end_time``. Nothing can change its
    tally after the end, so the outcome read now is the one a timer would have
    recorded.
    """
    if proposal.state is ProposalState.OPEN and now >= proposal.voting_end_time:
        return decided(proposal, close_time=proposal.voting_end_time)
    return proposal

"""Governance: stake-weighted votes, quorum, re-votes, lazy and explicit close."""

from __future__ import annotations

from typing import Any, cast

import pytest
from google.protobuf import duration_pb2

from meshwright.economy import ProposalClosed, StakeRequired
from meshwright.economy.v1 import economy_pb2 as pb
from meshwright.mesh import FailedPrecondition, InvalidArgument, NotFound
from tests.economy.conftest import Env, fields

YES, NO, ABSTAIN = pb.VOTE_CHOICE_YES, pb.VOTE_CHOICE_NO, pb.VOTE_CHOICE_ABSTAIN


async def propose(env: Env, quorum: int = 0, period_s: int | None = None) -> Any:
    request = pb.CreateProposalRequest(
        proposer_account_id="alice", title="Raise gold to 3000", quorum=quorum
    )
    if period_s is not None:
        request.voting_period.CopyFrom(duration_pb2.Duration(seconds=period_s))
    return (await env.remote.call("CreateProposal", request)).proposal


async def vote(env: Env, proposal_id: str, voter: str, choice: pb.VoteChoice) -> Any:
    reply = await env.remote.call(
        "CastVote",
        pb.CastVoteRequest(proposal_id=proposal_id, voter_account_id=voter, choice=choice),
    )
    return reply.proposal


async def get(env: Env, proposal_id: str) -> Any:
    reply = await env.remote.call("GetProposal", pb.GetProposalRequest(proposal_id=proposal_id))
    return reply.proposal


@pytest.fixture
async def voters(env: Env) -> Env:
    await env.account("alice", 1000, stake=100)
    await env.account("bob", 1000, stake=300)
    await env.account("carol", 1000, stake=50)
    await env.account("dave", 1000)  # no stake
    return env


async def test_create_proposal(voters: Env) -> None:
    env = voters
    p = await propose(env, quorum=200)
    assert p.proposal_id.startswith("prop_")
    assert (p.state, p.quorum, p.voter_count, p.yes_weight) == (pb.PROPOSAL_STATE_OPEN, 200, 0, 0)
    assert p.proposer_account_id == "alice" and p.title == "Raise gold to 3000"
    # The server default period (600 s in these tests) when unset.
    assert p.voting_end_time.seconds - p.create_time.seconds == 600
    custom = await propose(env, period_s=30)
    assert custom.voting_end_time.seconds - custom.create_time.seconds == 30
    assert await get(env, p.proposal_id) == p


async def test_create_proposal_errors(voters: Env) -> None:
    env = voters
    with pytest.raises(InvalidArgument) as bad:
        await env.remote.call(
            "CreateProposal",
            pb.CreateProposalRequest(
                proposer_account_id="",
                title="  ",
                quorum=-1,
                voting_period=duration_pb2.Duration(seconds=-5),
            ),
        )
    assert fields(bad.value) == ["proposer_account_id", "title", "voting_period", "quorum"]
    with pytest.raises(NotFound):
        await env.remote.call(
            "CreateProposal", pb.CreateProposalRequest(proposer_account_id="ghost", title="t")
        )
    with pytest.raises(StakeRequired) as no_stake:
        await env.remote.call(
            "CreateProposal", pb.CreateProposalRequest(proposer_account_id="dave", title="t")
        )
    assert no_stake.value.reason == "STAKE_REQUIRED"


async def test_passes_with_quorum_and_more_yes(voters: Env) -> None:
    env = voters
    p = await propose(env, quorum=400)
    await vote(env, p.proposal_id, "alice", YES)
    await vote(env, p.proposal_id, "carol", NO)
    tally = await vote(env, p.proposal_id, "bob", YES)
    assert (tally.yes_weight, tally.no_weight, tally.voter_count) == (400, 50, 3)
    closed = await env.remote.call(
        "CloseProposal", pb.CloseProposalRequest(proposal_id=p.proposal_id)
    )
    assert closed.proposal.state == pb.PROPOSAL_STATE_PASSED
    # Closed now, before its window: the window stays as set, the close is recorded as early
    # (these tests run auth off, where every caller is the anonymous admin).
    assert closed.proposal.close_time.seconds == int(env.clock.now)
    assert closed.proposal.voting_end_time == p.voting_end_time
    assert closed.proposal.closed_early_by == "admin:anonymous"


async def test_rejected_when_no_outweighs_yes_or_ties(voters: Env) -> None:
    env = voters
    p = await propose(env)
    await vote(env, p.proposal_id, "alice", YES)
    await vote(env, p.proposal_id, "bob", NO)
    closed = await env.remote.call(
        "CloseProposal", pb.CloseProposalRequest(proposal_id=p.proposal_id)
    )
    assert closed.proposal.state == pb.PROPOSAL_STATE_REJECTED

    tie = await propose(env)
    await vote(env, tie.proposal_id, "carol", YES)
    await env.remote.call("Stake", pb.StakeRequest(account_id="dave", amount=50))
    await vote(env, tie.proposal_id, "dave", NO)
    closed = await env.remote.call(
        "CloseProposal", pb.CloseProposalRequest(proposal_id=tie.proposal_id)
    )
    assert closed.proposal.state == pb.PROPOSAL_STATE_REJECTED


async def test_quorum_counts_abstentions(voters: Env) -> None:
    env = voters
    short = await propose(env, quorum=451)
    await vote(env, short.proposal_id, "alice", YES)
    await vote(env, short.proposal_id, "bob", ABSTAIN)
    await vote(env, short.proposal_id, "carol", ABSTAIN)
    closed = await env.remote.call(
        "CloseProposal", pb.CloseProposalRequest(proposal_id=short.proposal_id)
    )
    assert closed.proposal.state == pb.PROPOSAL_STATE_REJECTED  # 450 < 451

    met = await propose(env, quorum=450)
    await vote(env, met.proposal_id, "alice", YES)
    await vote(env, met.proposal_id, "bob", ABSTAIN)
    tally = await vote(env, met.proposal_id, "carol", ABSTAIN)
    assert tally.abstain_weight == 350
    closed = await env.remote.call(
        "CloseProposal", pb.CloseProposalRequest(proposal_id=met.proposal_id)
    )
    assert closed.proposal.state == pb.PROPOSAL_STATE_PASSED


async def test_revote_replaces_and_weight_is_stake_at_vote_time(voters: Env) -> None:
    env = voters
    p = await propose(env)
    await vote(env, p.proposal_id, "bob", NO)
    tally = await vote(env, p.proposal_id, "bob", YES)
    assert (tally.yes_weight, tally.no_weight, tally.voter_count) == (300, 0, 1)
    # Bob stakes more and re-votes: the new vote carries the new stake.
    await env.remote.call("Stake", pb.StakeRequest(account_id="bob", amount=200))
    tally = await vote(env, p.proposal_id, "bob", ABSTAIN)
    assert (tally.yes_weight, tally.abstain_weight, tally.voter_count) == (0, 500, 1)
    # The stake behind a cast vote cannot be withdrawn while voting is open.
    with pytest.raises(FailedPrecondition) as locked:
        await env.remote.call("Unstake", pb.UnstakeRequest(account_id="bob", amount=500))
    assert locked.value.reason == "STAKE_LOCKED"
    assert (await get(env, p.proposal_id)).abstain_weight == 500
    with pytest.raises(StakeRequired):
        await vote(env, p.proposal_id, "dave", YES)


async def test_late_vote_is_refused_and_outcome_is_decided_lazily(voters: Env) -> None:
    env = voters
    p = await propose(env, period_s=60)
    await vote(env, p.proposal_id, "alice", YES)
    env.clock.advance(59.9)
    await vote(env, p.proposal_id, "carol", NO)  # still open
    env.clock.advance(0.1)
    with pytest.raises(ProposalClosed) as late:
        await vote(env, p.proposal_id, "bob", NO)
    assert late.value.reason == "PROPOSAL_CLOSED"
    decided = await get(env, p.proposal_id)
    assert decided.state == pb.PROPOSAL_STATE_PASSED  # 100 yes > 50 no, quorum 0
    assert (decided.no_weight, decided.voter_count) == (50, 2)
    assert decided.voting_end_time == p.voting_end_time
    # Decided by time passing: closed at its window's end, by nobody early.
    assert decided.close_time == p.voting_end_time
    assert decided.closed_early_by == ""
    assert not p.HasField("close_time")
    # Closing a decided proposal returns it unchanged.
    env.clock.advance(100)
    closed = await env.remote.call(
        "CloseProposal", pb.CloseProposalRequest(proposal_id=p.proposal_id)
    )
    assert closed.proposal == decided
    again = await env.remote.call(
        "CloseProposal", pb.CloseProposalRequest(proposal_id=p.proposal_id)
    )
    assert again.proposal == decided


async def test_vote_after_close_is_refused(voters: Env) -> None:
    env = voters
    p = await propose(env)
    await env.remote.call("CloseProposal", pb.CloseProposalRequest(proposal_id=p.proposal_id))
    with pytest.raises(ProposalClosed):
        await vote(env, p.proposal_id, "alice", YES)


async def test_vote_errors(voters: Env) -> None:
    env = voters
    p = await propose(env)
    with pytest.raises(InvalidArgument) as bad:
        await env.remote.call("CastVote", pb.CastVoteRequest(proposal_id="", voter_account_id=""))
    assert fields(bad.value) == ["proposal_id", "voter_account_id", "choice"]
    with pytest.raises(InvalidArgument) as unknown_choice:
        await env.remote.call(
            "CastVote",
            pb.CastVoteRequest(
                proposal_id=p.proposal_id, voter_account_id="bob", choice=cast(pb.VoteChoice, 42)
            ),
        )
    assert fields(unknown_choice.value) == ["choice"]
    with pytest.raises(NotFound):
        await vote(env, "prop_nope", "alice", YES)
    with pytest.raises(NotFound):
        await vote(env, p.proposal_id, "ghost", YES)
    with pytest.raises(StakeRequired):
        await vote(env, p.proposal_id, "dave", YES)
    with pytest.raises(NotFound):
        await get(env, "prop_nope")
    with pytest.raises(NotFound):
        await env.remote.call("CloseProposal", pb.CloseProposalRequest(proposal_id="prop_nope"))
    assert (await get(env, p.proposal_id)).voter_count == 0


async def test_a_stake_cannot_vote_twice_through_another_account(voters: Env) -> None:
    """Unstake, move the money, stake it again elsewhere, vote again: refused."""
    from meshwright.economy import StakeLocked

    env = voters
    p = await propose(env, period_s=60)
    await vote(env, p.proposal_id, "bob", YES)  # bob's 300 backs this vote
    with pytest.raises(StakeLocked) as err:
        await env.remote.call("Unstake", pb.UnstakeRequest(account_id="bob", amount=1))
    assert err.value.metadata == {"account_id": "bob", "locked": "300"}
    assert (await env.get("bob")).staked == 300  # nothing applied
    # More stake than the vote used can still go.
    await env.remote.call("Stake", pb.StakeRequest(account_id="bob", amount=50))
    await env.remote.call("Unstake", pb.UnstakeRequest(account_id="bob", amount=50))
    # Once the proposal is decided, the lock is gone.
    env.clock.advance(61)
    assert (await get(env, p.proposal_id)).state == pb.PROPOSAL_STATE_PASSED
    reply = await env.remote.call("Unstake", pb.UnstakeRequest(account_id="bob", amount=300))
    assert reply.account.staked == 0


async def test_closing_a_proposal_releases_its_locks(voters: Env) -> None:
    env = voters
    first, second = await propose(env), await propose(env)
    await vote(env, first.proposal_id, "carol", NO)
    await vote(env, second.proposal_id, "carol", NO)
    await env.remote.call("CloseProposal", pb.CloseProposalRequest(proposal_id=first.proposal_id))
    with pytest.raises(FailedPrecondition):  # still locked by the second
        await env.remote.call("Unstake", pb.UnstakeRequest(account_id="carol", amount=50))
    await env.remote.call("CloseProposal", pb.CloseProposalRequest(proposal_id=second.proposal_id))
    await env.remote.call("Unstake", pb.UnstakeRequest(account_id="carol", amount=50))

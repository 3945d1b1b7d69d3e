"""Governance: GOV-stake-weighted votes, quorum and threshold, re-votes, lazy and explicit
close, and parameter changes applied when a passed proposal closes; the domain on both
ledger backends and the wire's shapes."""

from __future__ import annotations

import pytest
from google.protobuf import duration_pb2

from meshwright.economy import (
    Asset,
    Economy,
    Maintenance,
    ParameterChange,
    Params,
    Proposal,
    ProposalClosed,
    ProposalState,
    StakeLocked,
    StakeRequired,
    Tier,
    TierLevel,
    TierTable,
    TransactionKind,
    VoteChoice,
    VotingOpen,
)
from meshwright.economy.v1 import economy_pb2 as pb
from meshwright.mesh import FailedPrecondition, InvalidArgument, NotFound
from tests.economy.conftest import Env, Ledger, as_caller, fields, open_account

pytestmark = pytest.mark.timeout(60)

YES, NO, ABSTAIN = VoteChoice.YES, VoteChoice.NO, VoteChoice.ABSTAIN
PASSED, REJECTED, OPEN = ProposalState.PASSED, ProposalState.REJECTED, ProposalState.OPEN


async def voters(eco: Economy) -> Economy:
    await open_account(eco, "alice", 1000, stake=100)
    await open_account(eco, "bob", 1000, stake=300)
    await open_account(eco, "carol", 1000, stake=50)
    await open_account(eco, "dave", 1000, gov=1000)  # no stake
    return eco


@pytest.fixture
async def gov(eco: Economy) -> Economy:
    return await voters(eco)


async def test_create_proposal(gov: Economy, ledger: Ledger) -> None:
    p = await gov.create_proposal("alice", "Raise gold to 3000", quorum=200)
    assert p.proposal_id.startswith("prop_")
    assert (p.state, p.quorum, p.voter_count, p.yes_weight) == (OPEN, 200, 0, 0)
    assert p.proposer_account_id == "alice" and p.title == "Raise gold to 3000"
    assert (p.threshold_bps, p.change, p.applied) == (5_000, None, False)
    assert p.voting_end_time - p.create_time == 600  # the economy's default period
    assert p.create_time == ledger.clock.now and p.close_time is None
    custom = await gov.create_proposal("alice", "t", voting_period_s=30, threshold_bps=9_999)
    assert (custom.voting_end_time - custom.create_time, custom.threshold_bps) == (30, 9_999)
    assert await gov.get_proposal(p.proposal_id) == p


async def test_create_proposal_validation(gov: Economy) -> None:
    with pytest.raises(InvalidArgument) as every:
        await gov.create_proposal("", "  ", quorum=-1, voting_period_s=-5)
    assert fields(every.value) == ["proposer_account_id", "title", "voting_period", "quorum"]
    cases: list[tuple[dict[str, object], list[str]]] = [
        ({"title": "t" * 257}, ["title"]),
        ({"description": "d" * 16_385}, ["description"]),
        ({"voting_period_s": 0.0}, ["voting_period"]),
        ({"voting_period_s": 10 * 366 * 86_400.0 + 1}, ["voting_period"]),
        ({"voting_period_s": float("nan")}, ["voting_period"]),
        ({"threshold_bps": 10_000}, ["threshold_bps"]),
        ({"threshold_bps": -1}, ["threshold_bps"]),
        ({"change": ParameterChange()}, ["change"]),
        ({"change": ParameterChange(transfer_fee_bps=1, escrow_ttl_s=1.0)}, ["change"]),
        ({"change": ParameterChange(transfer_fee_bps=10_001)}, ["change.transfer_fee_bps"]),
        ({"request_id": "r" * 257}, ["request_id"]),
    ]
    for kwargs, expected in cases:
        title = str(kwargs.pop("title", "t"))
        with pytest.raises(InvalidArgument) as err:
            await gov.create_proposal("alice", title, **kwargs)  # type: ignore[arg-type]
        assert fields(err.value) == expected, kwargs
    longest = await gov.create_proposal(
        "alice",
        "t" * 256,
        description="d" * 16_384,
        voting_period_s=10 * 366 * 86_400.0,
        threshold_bps=0,
    )
    assert longest.threshold_bps == 0
    with pytest.raises(NotFound):
        await gov.create_proposal("ghost", "t")
    with pytest.raises(StakeRequired) as no_stake:
        await gov.create_proposal("dave", "t")  # GOV in the balance is not stake
    assert no_stake.value.reason == "STAKE_REQUIRED"


async def test_passes_with_quorum_and_more_yes(gov: Economy, ledger: Ledger) -> None:
    p = await gov.create_proposal("alice", "p", quorum=400)
    await gov.cast_vote(p.proposal_id, "alice", YES)
    await gov.cast_vote(p.proposal_id, "carol", NO)
    tally = await gov.cast_vote(p.proposal_id, "bob", YES)
    assert (tally.yes_weight, tally.no_weight, tally.voter_count) == (400, 50, 3)
    with as_caller("admin", "ops"):
        closed = await gov.close_proposal(p.proposal_id)
    assert closed.state is PASSED
    # Closed before its window: the window stays as set, the close is recorded as early.
    assert closed.close_time == ledger.clock.now
    assert closed.voting_end_time == p.voting_end_time
    assert closed.closed_early_by == "admin:ops"
    assert not closed.applied  # nothing to apply


async def test_rejected_when_no_outweighs_yes_or_ties(gov: Economy) -> None:
    p = await gov.create_proposal("alice", "p")
    await gov.cast_vote(p.proposal_id, "alice", YES)
    await gov.cast_vote(p.proposal_id, "bob", NO)
    assert (await gov.close_proposal(p.proposal_id)).state is REJECTED
    tie = await gov.create_proposal("alice", "tie")
    await gov.cast_vote(tie.proposal_id, "carol", YES)
    await gov.stake("dave", 50)
    await gov.cast_vote(tie.proposal_id, "dave", NO)
    assert (await gov.close_proposal(tie.proposal_id)).state is REJECTED
    # Nobody voted: no yes outweighs no.
    empty = await gov.create_proposal("alice", "empty", threshold_bps=0)
    assert (await gov.close_proposal(empty.proposal_id)).state is REJECTED


async def test_quorum_counts_abstentions_exactly(gov: Economy) -> None:
    short = await gov.create_proposal("alice", "p", quorum=451)
    met = await gov.create_proposal("alice", "p", quorum=450)
    for p in (short, met):
        await gov.cast_vote(p.proposal_id, "alice", YES)
        await gov.cast_vote(p.proposal_id, "bob", ABSTAIN)
        tally = await gov.cast_vote(p.proposal_id, "carol", ABSTAIN)
        assert tally.abstain_weight == 350
    assert (await gov.close_proposal(short.proposal_id)).state is REJECTED  # 450 < 451
    assert (await gov.close_proposal(met.proposal_id)).state is PASSED


async def test_the_threshold_is_exceeded_or_not(ledger: Ledger) -> None:
    eco = ledger.economy()
    await open_account(eco, "y60", stake=60)
    await open_account(eco, "y61", stake=61)
    await open_account(eco, "n40", stake=40)
    await open_account(eco, "n39", stake=39)
    at = await eco.create_proposal("y60", "at", threshold_bps=6_000)
    await eco.cast_vote(at.proposal_id, "y60", YES)
    await eco.cast_vote(at.proposal_id, "n40", NO)
    above = await eco.create_proposal("y61", "above", threshold_bps=6_000)
    await eco.cast_vote(above.proposal_id, "y61", YES)
    await eco.cast_vote(above.proposal_id, "n39", NO)
    assert (await eco.close_proposal(at.proposal_id)).state is REJECTED  # 60 % is not > 60 %
    assert (await eco.close_proposal(above.proposal_id)).state is PASSED  # 61 %


async def test_the_default_threshold_is_a_parameter(ledger: Ledger) -> None:
    eco = ledger.economy(params=Params(pass_threshold_bps=7_500))
    await open_account(eco, "alice", stake=1)
    assert (await eco.create_proposal("alice", "t")).threshold_bps == 7_500


async def test_revote_replaces_and_weight_is_stake_at_vote_time(gov: Economy) -> None:
    p = await gov.create_proposal("alice", "p")
    await gov.cast_vote(p.proposal_id, "bob", NO)
    tally = await gov.cast_vote(p.proposal_id, "bob", YES)
    assert (tally.yes_weight, tally.no_weight, tally.voter_count) == (300, 0, 1)
    await open_account(gov, "bob-extra")  # unrelated account, no effect
    await gov.mint("bob", 200, asset=Asset.GOV)
    await gov.stake("bob", 200)
    tally = await gov.cast_vote(p.proposal_id, "bob", ABSTAIN)
    assert (tally.yes_weight, tally.abstain_weight, tally.voter_count) == (0, 500, 1)
    with pytest.raises(FailedPrecondition) as locked:
        await gov.unstake("bob", 500)
    assert locked.value.reason == "STAKE_LOCKED"
    assert (await gov.get_proposal(p.proposal_id)).abstain_weight == 500
    with pytest.raises(StakeRequired):
        await gov.cast_vote(p.proposal_id, "dave", YES)


async def test_late_vote_is_refused_and_outcome_is_decided_lazily(
    gov: Economy, ledger: Ledger
) -> None:
    p = await gov.create_proposal("alice", "p", voting_period_s=60)
    await gov.cast_vote(p.proposal_id, "alice", YES)
    ledger.clock.advance(59.9)
    await gov.cast_vote(p.proposal_id, "carol", NO)  # still open
    ledger.clock.advance(0.1)  # exactly the end
    with pytest.raises(ProposalClosed) as late:
        await gov.cast_vote(p.proposal_id, "bob", NO)
    assert late.value.reason == "PROPOSAL_CLOSED"
    decided = await gov.get_proposal(p.proposal_id)
    assert decided.state is PASSED  # 100 yes > 50 no, quorum 0
    assert (decided.no_weight, decided.voter_count) == (50, 2)
    assert decided.close_time == p.voting_end_time and decided.closed_early_by == ""
    ledger.clock.advance(100)
    closed = await gov.close_proposal(p.proposal_id)
    assert (closed.state, closed.close_time) == (PASSED, p.voting_end_time)
    assert await gov.close_proposal(p.proposal_id) == closed  # unchanged


async def test_only_an_admin_closes_early(gov: Economy, ledger: Ledger) -> None:
    p = await gov.create_proposal("alice", "p")
    for role in ("client", "agent", "service"):
        with as_caller(role, "x"), pytest.raises(VotingOpen) as err:
            await gov.close_proposal(p.proposal_id)
        assert err.value.metadata["proposal_id"] == p.proposal_id
    ledger.clock.advance(600)
    with as_caller("client", "x"):  # after the window anyone may
        assert (await gov.close_proposal(p.proposal_id)).state is REJECTED
    outside = await gov.create_proposal("alice", "q")
    closed = await gov.close_proposal(outside.proposal_id)  # the mesh itself, no call
    assert closed.closed_early_by == "internal"


async def test_vote_after_close_is_refused(gov: Economy) -> None:
    p = await gov.create_proposal("alice", "p")
    await gov.close_proposal(p.proposal_id)
    with pytest.raises(ProposalClosed):
        await gov.cast_vote(p.proposal_id, "alice", YES)


async def test_vote_errors(gov: Economy) -> None:
    p = await gov.create_proposal("alice", "p")
    with pytest.raises(InvalidArgument) as bad:
        await gov.cast_vote("", "", 0)
    assert fields(bad.value) == ["proposal_id", "voter_account_id", "choice"]
    with pytest.raises(InvalidArgument) as unknown_choice:
        await gov.cast_vote(p.proposal_id, "bob", 42)
    assert fields(unknown_choice.value) == ["choice"]
    with pytest.raises(InvalidArgument) as long_id:
        await gov.cast_vote(p.proposal_id, "bob", YES, request_id="r" * 257)
    assert fields(long_id.value) == ["request_id"]
    with pytest.raises(NotFound):
        await gov.cast_vote("prop_nope", "alice", YES)
    with pytest.raises(NotFound):
        await gov.cast_vote(p.proposal_id, "ghost", YES)
    with pytest.raises(StakeRequired):
        await gov.cast_vote(p.proposal_id, "dave", YES)
    with pytest.raises(NotFound):
        await gov.get_proposal("prop_nope")
    with pytest.raises(InvalidArgument):
        await gov.get_proposal("")
    with pytest.raises(NotFound):
        await gov.close_proposal("prop_nope")
    assert (await gov.get_proposal(p.proposal_id)).voter_count == 0


async def test_a_stake_cannot_vote_twice_through_another_account(
    gov: Economy, ledger: Ledger
) -> None:
    """Unstake, move the GOV, stake it again elsewhere, vote again: refused."""
    p = await gov.create_proposal("alice", "p", voting_period_s=60)
    await gov.cast_vote(p.proposal_id, "bob", YES)  # bob's 300 backs this vote
    with pytest.raises(StakeLocked) as err:
        await gov.unstake("bob", 1)
    assert err.value.metadata == {"account_id": "bob", "locked": "300"}
    assert (await gov.get_account("bob")).staked == 300  # nothing applied
    await gov.mint("bob", 50, asset=Asset.GOV)
    await gov.stake("bob", 50)
    await gov.unstake("bob", 50)  # more stake than the vote used can still go
    ledger.clock.advance(60)
    assert (await gov.get_proposal(p.proposal_id)).state is PASSED
    assert (await gov.unstake("bob", 300)).account.staked == 0


async def test_closing_a_proposal_releases_its_locks(gov: Economy) -> None:
    first = await gov.create_proposal("alice", "p")
    second = await gov.create_proposal("alice", "q")
    await gov.cast_vote(first.proposal_id, "carol", NO)
    await gov.cast_vote(second.proposal_id, "carol", NO)
    await gov.close_proposal(first.proposal_id)
    with pytest.raises(StakeLocked):  # still locked by the second
        await gov.unstake("carol", 50)
    await gov.close_proposal(second.proposal_id)
    await gov.unstake("carol", 50)


@pytest.mark.timeout(120)
async def test_the_lock_holds_after_a_thousand_past_votes(ledger: Ledger) -> None:
    """An account that voted on more than 1000 proposals still cannot unstake the stake
    behind its vote on an open one."""
    eco = ledger.economy()
    await open_account(eco, "alice", stake=10)
    for _ in range(1_000):
        p = await eco.create_proposal("alice", "old", voting_period_s=1)
        await eco.cast_vote(p.proposal_id, "alice", YES)
    ledger.clock.advance(2)  # all of those are decided now
    live = await eco.create_proposal("alice", "live")
    await eco.cast_vote(live.proposal_id, "alice", YES)
    with pytest.raises(StakeLocked):
        await eco.unstake("alice", 10)


# Parameter changes ----------------------------------------------------------------------


async def passed(eco: Economy, change: ParameterChange) -> Proposal:
    """A proposal of ``change`` that passes, closed (early, by the mesh itself)."""
    p = await eco.create_proposal("alice", "change", change=change)
    assert p.change == change
    await eco.cast_vote(p.proposal_id, "alice", YES)
    return await eco.close_proposal(p.proposal_id)


NEW_TIERS = TierTable(levels=(TierLevel(Tier.GOLD, 5, 25_000),), none_multiplier_bps=10_000)
CHANGES: list[tuple[ParameterChange, dict[str, object]]] = [
    (ParameterChange(tiers=NEW_TIERS), {"tiers": NEW_TIERS}),
    (ParameterChange(transfer_fee_bps=125), {"transfer_fee_bps": 125}),
    (ParameterChange(unbonding_period_s=30.0), {"unbonding_period_s": 30.0}),
    (ParameterChange(streak=(3, 500)), {"streak_threshold": 3, "streak_bonus_bps": 500}),
    (
        ParameterChange(distribution=(1_000, 60.0)),
        {"distribution_amount": 1_000, "distribution_interval_s": 60.0},
    ),
    (ParameterChange(pass_threshold_bps=6_600), {"pass_threshold_bps": 6_600}),
    (ParameterChange(escrow_ttl_s=90.0), {"escrow_ttl_s": 90.0}),
]


@pytest.mark.parametrize(("change", "expected"), CHANGES, ids=lambda c: str(c)[:40])
async def test_a_passed_change_is_applied_when_closed(
    ledger: Ledger, change: ParameterChange, expected: dict[str, object]
) -> None:
    eco = ledger.economy()
    await open_account(eco, "alice", stake=10)
    before = await eco.parameters()
    assert before.version == 1
    count = (await eco.audit()).transaction_count
    closed = await passed(eco, change)
    assert (closed.state, closed.applied) == (PASSED, True)
    after = await eco.parameters()
    assert after.version == 2
    for name, value in expected.items():
        assert getattr(after, name) == value, name
    untouched = {f for f in Params.__dataclass_fields__ if f not in expected and f != "version"}
    for name in untouched:
        assert getattr(after, name) == getattr(before, name), name
    # Recorded as one PARAMETER_CHANGE transaction (no postings) naming the proposal.
    report = await eco.audit()
    assert report.ok and report.transaction_count == count + 1
    [entry] = await eco.store.ledger_page(after_seq=count, limit=10)
    assert (entry.kind, entry.refs.get("proposal_id"), entry.postings) == (
        TransactionKind.PARAMETER_CHANGE.name,
        closed.proposal_id,
        (),
    )
    assert await eco.get_proposal(closed.proposal_id) == closed
    # Another economy on the same ledger sees the change too.
    other = Economy(ledger.another_store(), clock=ledger.clock)
    assert await other.parameters() == after


async def test_a_rejected_change_is_not_applied(ledger: Ledger) -> None:
    eco = ledger.economy()
    await open_account(eco, "alice", stake=10)
    await open_account(eco, "bob", stake=20)
    count = (await eco.audit()).transaction_count
    p = await eco.create_proposal("alice", "fee", change=ParameterChange(transfer_fee_bps=100))
    await eco.cast_vote(p.proposal_id, "alice", YES)
    await eco.cast_vote(p.proposal_id, "bob", NO)
    closed = await eco.close_proposal(p.proposal_id)
    assert (closed.state, closed.applied) == (REJECTED, False)
    params = await eco.parameters(fresh=True)
    assert (params.version, params.transfer_fee_bps) == (1, 0)
    assert (await eco.audit()).transaction_count == count


async def test_a_passed_fee_applies_to_the_next_transfer(ledger: Ledger) -> None:
    eco = ledger.economy()
    await open_account(eco, "alice", 1_000, stake=10)
    await eco.create_account("bob")
    await eco.transfer("alice", "bob", 100)
    assert (await eco.get_account("system:treasury")).balance == 0
    await passed(eco, ParameterChange(transfer_fee_bps=250))
    done = await eco.transfer("alice", "bob", 399)
    assert (await eco.get_account("system:treasury")).balance == 9  # 9.975 rounded down
    assert done.from_account.balance == 1_000 - 100 - 399 - 9
    # An economy that read the parameters before the change does not charge the old fee:
    # its plan carries the version it used and is refused, then planned again.
    stale = Economy(ledger.another_store(), clock=ledger.clock, params_refresh_s=3600)
    await stale.parameters()
    await passed(eco, ParameterChange(transfer_fee_bps=0))
    await stale.transfer("alice", "bob", 100)
    assert (await eco.get_account("system:treasury")).balance == 9


async def test_maintenance_closes_ended_proposals_and_applies_them(ledger: Ledger) -> None:
    eco = ledger.economy()
    await open_account(eco, "alice", stake=10)
    p = await eco.create_proposal(
        "alice", "ttl", voting_period_s=60, change=ParameterChange(escrow_ttl_s=5.0)
    )
    await eco.cast_vote(p.proposal_id, "alice", YES)
    ledger.clock.advance(59.999)
    assert await eco.maintain() == Maintenance()
    ledger.clock.advance(0.001)
    assert await eco.maintain() == Maintenance(closed=1)
    closed = await eco.get_proposal(p.proposal_id)
    assert (closed.state, closed.applied, closed.close_time) == (PASSED, True, p.voting_end_time)
    assert (await eco.parameters()).escrow_ttl_s == 5.0
    assert await eco.maintain() == Maintenance()


# Listing ---------------------------------------------------------------------------------


async def test_list_proposals_newest_first_pages_and_filters(gov: Economy) -> None:
    made = [await gov.create_proposal("alice", f"p{i}") for i in range(4)]
    await gov.cast_vote(made[1].proposal_id, "alice", YES)
    await gov.close_proposal(made[1].proposal_id)
    ids = [p.proposal_id for p in made][::-1]
    assert [p.proposal_id for p in (await gov.list_proposals()).items] == ids
    exact = await gov.list_proposals(page_size=4)
    assert len(exact.items) == 4 and exact.next_page_token == ""
    short = await gov.list_proposals(page_size=3)
    assert [p.proposal_id for p in short.items] == ids[:3] and short.next_page_token
    rest = await gov.list_proposals(page_size=3, page_token=short.next_page_token)
    assert [p.proposal_id for p in rest.items] == ids[3:] and rest.next_page_token == ""
    passed_only = await gov.list_proposals(state=PASSED)
    assert [p.proposal_id for p in passed_only.items] == [made[1].proposal_id]
    assert len((await gov.list_proposals(state=OPEN)).items) == 3
    with pytest.raises(InvalidArgument) as bad:
        await gov.list_proposals(state=9, page_size=-1, page_token="!")
    assert fields(bad.value) == ["state", "page_size", "page_token"]


# Over the wire ----------------------------------------------------------------------


async def test_governance_over_the_wire(env: Env) -> None:
    await env.account("alice", stake=100)
    request = pb.CreateProposalRequest(
        proposer_account_id="alice",
        title="fee",
        voting_period=duration_pb2.Duration(seconds=30),
        threshold_bps=6_000,
        change=pb.ParameterChange(transfer_fee_bps=40),
    )
    p = (await env.remote.call("CreateProposal", request)).proposal
    assert p.voting_end_time.seconds - p.create_time.seconds == 30
    assert (p.threshold_bps, p.change.transfer_fee_bps) == (6_000, 40)
    await env.remote.call(
        "CastVote",
        pb.CastVoteRequest(
            proposal_id=p.proposal_id, voter_account_id="alice", choice=pb.VOTE_CHOICE_YES
        ),
    )
    closed = await env.remote.call(
        "CloseProposal", pb.CloseProposalRequest(proposal_id=p.proposal_id)
    )
    assert closed.proposal.state == pb.PROPOSAL_STATE_PASSED and closed.proposal.applied
    assert closed.proposal.closed_early_by == "admin:anonymous"
    params = (await env.remote.call("GetParameters", pb.GetParametersRequest())).parameters
    assert (params.transfer_fee_bps, params.version) == (40, 2)
    listed = await env.remote.call("ListProposals", pb.ListProposalsRequest())
    assert [x.proposal_id for x in listed.proposals] == [p.proposal_id]

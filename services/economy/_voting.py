"""Governance: proposals, stake-weighted votes, closing (applying parameter changes)."""

from __future__ import annotations

import math

from meshwright.economy import _checks, _records, governance
from meshwright.economy._ledger import (
    MAX_VOTING_PERIOD_S,
    _error,
    _Ledger,
    _page_after,
    _page_limit,
    _raise_if,
    _user_id,
    _version,
)
from meshwright.economy._records import (
    OPEN_PROPOSALS,
    PARAMS,
    PROPOSALS,
    acct,
    num,
)
from meshwright.economy.errors import (
    StakeRequired,
    VotingOpen,
)
from meshwright.economy.ids import new_id
from meshwright.economy.kernel import (
    Add,
    Check,
    FieldIs,
    IndexAdd,
    IndexRemove,
    Plan,
    Put,
    Refused,
    Write,
)
from meshwright.economy.model import (
    INTERNAL,
    Asset,
    Page,
    Proposal,
    ProposalState,
    TransactionKind,
    VoteChoice,
)
from meshwright.economy.params import ParameterChange, Params
from meshwright.economy.tiers import BPS_ONE
from meshwright.mesh.context import caller
from meshwright.mesh.errors import (
    FieldViolation,
    NotFound,
)
from meshwright.mesh.timeutil import timestamp
from meshwright.mesh.validation import check_id


class VotingOps(_Ledger):
    """Governance: proposals, stake-weighted votes, closing (applying parameter changes)."""

    # Governance ----------------------------------------------------------

    async def create_proposal(
        self,
        proposer_account_id: str,
        title: str,
        *,
        description: str = "",
        voting_period_s: float | None = None,
        quorum: int = 0,
        threshold_bps: int | None = None,
        change: ParameterChange | None = None,
        request_id: str = "",
    ) -> Proposal:
        """Open a vote lasting ``voting_period_s`` (the default when None), optionally on a
        parameter change that is applied when it passes."""
        violations = (
            _user_id(proposer_account_id, "proposer_account_id")
            + _checks.text(title, "title", _checks.MAX_NAME, required=True)
            + _checks.text(description, "description", _checks.MAX_DESCRIPTION)
        )
        period = self.default_voting_period_s if voting_period_s is None else voting_period_s
        if not (math.isfinite(period) and 0 < period <= MAX_VOTING_PERIOD_S):
            violations.append(
                FieldViolation("voting_period", "must be positive and at most ten years")
            )
        if threshold_bps is not None and not 0 <= threshold_bps < BPS_ONE:
            violations.append(FieldViolation("threshold_bps", "must be 0..9999 basis points"))
        if change is not None:
            violations += change.violations("change")
        _raise_if(
            violations + _checks.non_negative(quorum, "quorum") + _checks.request_id(request_id)
        )
        now = self._clock()
        proposal_id = new_id("prop")
        idem = self._idem(
            request_id, "CreateProposal", proposer_account_id, title, description,
            voting_period_s, quorum, threshold_bps, change.to_json() if change else "",
        )  # fmt: skip
        stake_rec = acct(_records.stake_account(proposer_account_id))

        async def build(params: Params) -> Plan:
            rows = await self.store.read([acct(proposer_account_id), stake_rec])
            if not rows[acct(proposer_account_id)]:
                raise NotFound(
                    f"account {proposer_account_id!r} not found",
                    metadata={"account_id": proposer_account_id},
                )
            if num(rows[stake_rec], Asset.GOV.name) <= 0:
                raise StakeRequired(
                    f"account {proposer_account_id!r} has no stake and cannot propose",
                    metadata={"account_id": proposer_account_id},
                )
            thr = params.pass_threshold_bps if threshold_bps is None else threshold_bps
            end = now + period
            fields = {
                "proposer": proposer_account_id,
                "title": title,
                "desc": description,
                "state": ProposalState.OPEN.name,
                "quorum": str(quorum),
                "ct": repr(now),
                "end": repr(end),
                "thr": str(thr),
                "change": change.to_json() if change else "",
            }
            return Plan(
                checks=[
                    _version(params),
                    FieldIs(stake_rec, "GOV", rows[stake_rec].get("GOV", "")),
                ],
                writes=[
                    Put(_records.proposal_rec(proposal_id), fields),
                    IndexAdd(PROPOSALS, proposal_id),
                    IndexAdd(OPEN_PROPOSALS, proposal_id, end),
                ],
                idem=idem,
                read_back=[_records.proposal_rec(proposal_id)],
            )

        committed = await self._run(build, idem)
        assert committed is not None
        ((name, row),) = committed.records.items()
        return _records.proposal_of(name.removeprefix("p:"), row)

    async def cast_vote(
        self,
        proposal_id: str,
        voter_account_id: str,
        choice: VoteChoice | int,
        *,
        request_id: str = "",
    ) -> Proposal:
        """Record the voter's stake as the weight of ``choice``; a re-vote replaces the first."""
        violations = check_id(proposal_id, "proposal_id") + _user_id(
            voter_account_id, "voter_account_id"
        )
        if choice not in VoteChoice._value2member_map_:
            violations.append(FieldViolation("choice", "must be YES, NO or ABSTAIN"))
        _raise_if(violations + _checks.request_id(request_id))
        vote = VoteChoice(choice)
        now = self._clock()
        record = _records.proposal_rec(proposal_id)
        vote_rec = _records.vote_rec(proposal_id, voter_account_id)
        stake_rec = acct(_records.stake_account(voter_account_id))
        idem = self._idem(request_id, "CastVote", proposal_id, voter_account_id, int(vote))

        async def build(params: Params) -> Plan:
            rows = await self.store.read([record, acct(voter_account_id), stake_rec, vote_rec])
            if not rows[record]:
                raise NotFound(
                    f"proposal {proposal_id!r} not found", metadata={"proposal_id": proposal_id}
                )
            if not rows[acct(voter_account_id)]:
                raise NotFound(
                    f"account {voter_account_id!r} not found",
                    metadata={"account_id": voter_account_id},
                )
            proposal = _records.proposal_of(proposal_id, rows[record])
            if governance.as_of(proposal, now).state is not ProposalState.OPEN:
                raise _error(Refused("PROPOSAL_CLOSED", record))
            weight = num(rows[stake_rec], Asset.GOV.name)
            if weight <= 0:
                raise StakeRequired(
                    f"account {voter_account_id!r} has no stake and cannot vote",
                    metadata={"account_id": voter_account_id},
                )
            previous = rows[vote_rec]
            writes: list[Write] = [
                Add(record, vote.name, weight),
                Put(vote_rec, {"choice": vote.name, "weight": str(weight)}),
                Add(acct(voter_account_id), "vv", 1),
                IndexAdd(_records.votes_index(voter_account_id), proposal_id),
            ]
            if previous:  # a re-vote replaces the earlier one
                writes.insert(0, Add(record, previous["choice"], -num(previous, "weight")))
            else:
                writes.append(Add(record, "voters", 1))
            return Plan(
                checks=[
                    FieldIs(record, "state", ProposalState.OPEN.name, "PROPOSAL_CLOSED"),
                    FieldIs(stake_rec, Asset.GOV.name, rows[stake_rec].get("GOV", "")),
                    FieldIs(vote_rec, "weight", previous.get("weight", "")),
                    FieldIs(vote_rec, "choice", previous.get("choice", "")),
                ],
                writes=writes,
                idem=idem,
                read_back=[record],
            )

        committed = await self._run(build, idem)
        assert committed is not None
        return _records.proposal_of(proposal_id, committed.records[record])

    async def get_proposal(self, proposal_id: str) -> Proposal:
        """The proposal as it stands now (decided once past its end). NOT_FOUND if unknown."""
        _raise_if(check_id(proposal_id, "proposal_id"))
        record = _records.proposal_rec(proposal_id)
        row = (await self.store.read([record]))[record]
        if not row:
            raise NotFound(
                f"proposal {proposal_id!r} not found", metadata={"proposal_id": proposal_id}
            )
        return governance.as_of(_records.proposal_of(proposal_id, row), self._clock())

    async def list_proposals(
        self,
        *,
        state: ProposalState | int | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[Proposal]:
        """Proposals, newest first, optionally in one state (as they stand now)."""
        violations: list[FieldViolation] = []
        if state not in (None, 0) and state not in ProposalState._value2member_map_:
            violations.append(FieldViolation("state", "is not a proposal state"))
        limit = _page_limit(page_size, violations)
        after = _page_after(page_token, violations)
        _raise_if(violations)
        want = ProposalState(state) if state else None
        now = self._clock()

        async def load(ids: list[str]) -> list[Proposal]:
            rows = await self.store.read([_records.proposal_rec(i) for i in ids])
            found = [
                governance.as_of(_records.proposal_of(i, rows[_records.proposal_rec(i)]), now)
                for i in ids
            ]
            return [p for p in found if want is None or p.state == want]

        return await self._lex_page(PROPOSALS, after, limit, load, reverse=True)

    async def close_proposal(self, proposal_id: str) -> Proposal:
        """Decide a proposal whose voting window has ended; a decided one comes back unchanged.

        Only an admin (or code outside any call, which is the mesh itself) may
        close before the window ends; that close is recorded as early, with who
        did it. Anyone else gets VOTING_OPEN, so nobody can end a vote the moment
        it leans their way. A passed proposal's parameter change is applied in
        the same step, recorded as a PARAMETER_CHANGE transaction.
        """
        _raise_if(check_id(proposal_id, "proposal_id"))
        who = caller()
        early_by: str | None = None
        if who is None:
            early_by = INTERNAL
        elif who.is_admin:
            early_by = who.name
        record = _records.proposal_rec(proposal_id)
        tx_id = new_id("tx")

        async def build(params: Params) -> Plan | None:
            now = self._clock()
            row = (await self.store.read([record]))[record]
            if not row:
                raise NotFound(
                    f"proposal {proposal_id!r} not found", metadata={"proposal_id": proposal_id}
                )
            stored = _records.proposal_of(proposal_id, row)
            if stored.state is not ProposalState.OPEN:
                return None
            proposal = governance.as_of(stored, now)
            if proposal.state is ProposalState.OPEN:
                if early_by is None:
                    raise VotingOpen(
                        f"voting on proposal {proposal_id!r} is open for "
                        f"{proposal.voting_end_time - now:.0f}s more; only an admin may close it "
                        "early",
                        metadata={
                            "proposal_id": proposal_id,
                            "voting_end_time": timestamp(proposal.voting_end_time).ToJsonString(),
                        },
                    )
                proposal = governance.decided(proposal, close_time=now, closed_early_by=early_by)
            fields = {
                "state": proposal.state.name,
                "closed": repr(proposal.close_time),
                "early_by": proposal.closed_early_by,
            }
            checks: list[Check] = [
                FieldIs(record, "state", ProposalState.OPEN.name),
                *(FieldIs(record, c.name, row.get(c.name, "")) for c in VoteChoice),
            ]
            writes: list[Write] = [IndexRemove(OPEN_PROPOSALS, proposal_id)]
            entry = None
            if proposal.state is ProposalState.PASSED and proposal.change is not None:
                changed = proposal.change.apply(params)
                checks.append(_version(params))
                writes.append(
                    Put(PARAMS, {"json": changed.to_json(), "version": str(params.version + 1)})
                )
                fields["applied"] = "1"
                entry = self._entry(
                    tx_id, TransactionKind.PARAMETER_CHANGE, now,
                    memo=proposal.change.to_json(), proposal_id=proposal_id,
                )  # fmt: skip
            writes.insert(0, Put(record, fields))
            return Plan(checks=checks, writes=writes, entry=entry, read_back=[record])

        committed = await self._run(build)
        if committed is not None and committed.entry is not None:
            self._params = None  # this process applied a change: read it at once
        row = (
            committed.records[record]
            if committed is not None
            else (await self.store.read([record]))[record]
        )
        return _records.proposal_of(proposal_id, row)

"""Staking GOV: stake, unstake (with the unbonding period), unbonding completion."""

from __future__ import annotations

from meshwright.economy import _checks, _records, governance
from meshwright.economy._ledger import (
    MAX_PAGE_SIZE,
    _error,
    _Ledger,
    _new_account,
    _raise_if,
    _user_id,
    _version,
)
from meshwright.economy._records import (
    STAKERS,
    UNBONDING,
    acct,
    num,
)
from meshwright.economy.errors import (
    StakeLocked,
)
from meshwright.economy.ids import new_id
from meshwright.economy.kernel import (
    CONFLICT,
    NOT_FOUND,
    Absent,
    Check,
    Delete,
    Exists,
    FieldIs,
    IndexAdd,
    IndexRemove,
    Move,
    Plan,
    Put,
    Refused,
    Write,
)
from meshwright.economy.model import (
    AccountKind,
    Asset,
    ProposalState,
    StakeChanged,
    TransactionKind,
    UnbondingEntry,
)
from meshwright.economy.params import Params
from meshwright.mesh.errors import (
    NotFound,
)


class StakingOps(_Ledger):
    """Staking GOV: stake, unstake (with the unbonding period), unbonding completion."""

    # Stake ---------------------------------------------------------------

    async def stake(self, account_id: str, amount: int, *, request_id: str = "") -> StakeChanged:
        """Lock ``amount`` of the account's GOV as stake (in ``stake:<id>``)."""
        _raise_if(
            _user_id(account_id, "account_id")
            + _checks.positive_amount(amount, "amount")
            + _checks.request_id(request_id)
        )
        now = self._clock()
        tx_id = new_id("tx")
        idem = self._idem(request_id, "Stake", account_id, amount)
        stake_id = _records.stake_account(account_id)

        async def build(params: Params) -> Plan:
            rows = await self.store.read([acct(account_id), acct(stake_id)])
            checks: list[Check] = [Exists(acct(account_id), NOT_FOUND)]
            writes: list[Write] = [IndexAdd(STAKERS, account_id)]
            if not rows[acct(stake_id)]:
                owner = rows[acct(account_id)].get("owner", "")
                checks.append(Absent(acct(stake_id)))
                writes += _new_account(stake_id, AccountKind.STAKE, owner, stake_id, now)
            return Plan(
                checks=checks,
                moves=[Move(account_id, stake_id, Asset.GOV.name, amount)],
                writes=writes,
                entry=self._entry(tx_id, TransactionKind.STAKE, now, request_id),
                idem=idem,
                read_back=_records.user_records(account_id),
            )

        committed = await self._run(build, idem)
        assert committed is not None and committed.entry is not None
        return StakeChanged(
            await self._after(committed, account_id), _records.transaction_of(committed.entry)
        )

    async def _locked_stake(self, account_id: str, now: float) -> tuple[int, list[str]]:
        """Stake behind the account's votes on proposals still open (the largest such vote),
        and the proposals it voted on that are decided (the unstake prunes them from its
        index, so the index holds open votes only and stays small)."""
        index = _records.votes_index(account_id)
        locked = 0
        decided: list[str] = []
        after = ""
        while proposals := await self.store.index_page(index, after=after, limit=MAX_PAGE_SIZE):
            after = proposals[-1]
            names = [_records.proposal_rec(p) for p in proposals] + [
                _records.vote_rec(p, account_id) for p in proposals
            ]
            rows = await self.store.read(names)
            for p in proposals:
                proposal = _records.proposal_of(p, rows[_records.proposal_rec(p)])
                if governance.as_of(proposal, now).state is ProposalState.OPEN:
                    locked = max(locked, num(rows[_records.vote_rec(p, account_id)], "weight"))
                else:
                    decided.append(p)
        return locked, decided

    async def unstake(self, account_id: str, amount: int, *, request_id: str = "") -> StakeChanged:
        """Return ``amount`` of stake: at once, or after the unbonding period (``unbonding:<id>``).

        Refused (STAKE_LOCKED) below the stake that backs the account's votes on
        proposals still open, so one stake cannot vote twice through two accounts.
        """
        _raise_if(
            _user_id(account_id, "account_id")
            + _checks.positive_amount(amount, "amount")
            + _checks.request_id(request_id)
        )
        now = self._clock()
        tx_id = new_id("tx")
        entry_id = new_id("unb")
        idem = self._idem(request_id, "Unstake", account_id, amount)
        stake_id = _records.stake_account(account_id)
        unbonding_id = _records.unbonding_account(account_id)
        complete = 0.0

        async def build(params: Params) -> Plan:
            nonlocal complete
            rows = await self.store.read([acct(account_id), acct(stake_id), acct(unbonding_id)])
            if not rows[acct(account_id)]:
                raise NotFound(
                    f"account {account_id!r} not found", metadata={"account_id": account_id}
                )
            staked = num(rows[acct(stake_id)], Asset.GOV.name)
            if staked < amount:
                raise _error(Refused("INSUFFICIENT_STAKE", account_id))
            locked, decided = await self._locked_stake(account_id, now)
            if staked - amount < locked:
                raise StakeLocked(
                    f"account {account_id!r} has {locked} of its {staked} staked backing votes "
                    f"on open proposals; at most {staked - locked} can be unstaked now",
                    metadata={"account_id": account_id, "locked": str(locked)},
                )
            checks: list[Check] = [
                _version(params),
                FieldIs(acct(account_id), "vv", rows[acct(account_id)].get("vv", "")),
                FieldIs(acct(stake_id), Asset.GOV.name, rows[acct(stake_id)].get("GOV", "")),
            ]
            writes: list[Write] = [
                IndexRemove(_records.votes_index(account_id), p) for p in decided
            ]
            if params.unbonding_period_s <= 0:
                moves = [Move(stake_id, account_id, Asset.GOV.name, amount, "INSUFFICIENT_STAKE")]
            else:
                complete = now + params.unbonding_period_s
                moves = [Move(stake_id, unbonding_id, Asset.GOV.name, amount, "INSUFFICIENT_STAKE")]
                if not rows[acct(unbonding_id)]:
                    owner = rows[acct(account_id)].get("owner", "")
                    checks.append(Absent(acct(unbonding_id)))
                    writes += _new_account(
                        unbonding_id, AccountKind.UNBONDING, owner, unbonding_id, now
                    )
                writes += [
                    Put(
                        _records.unbonding_rec(entry_id),
                        {"account": account_id, "amount": str(amount), "done": repr(complete)},
                    ),
                    IndexAdd(UNBONDING, entry_id, complete),
                ]
            return Plan(
                checks=checks,
                moves=moves,
                writes=writes,
                entry=self._entry(
                    tx_id,
                    TransactionKind.UNSTAKE,
                    now,
                    request_id,
                    also_log=[account_id],
                    unbonding_id=entry_id if complete else "",
                    complete_time=repr(complete) if complete else "",
                ),
                idem=idem,
                read_back=_records.user_records(account_id),
            )

        committed = await self._run(build, idem)
        assert committed is not None and committed.entry is not None
        unbonding: UnbondingEntry | None = None
        refs = committed.entry.refs  # the first call's, on a replay
        if refs.get("unbonding_id"):
            unbonding = UnbondingEntry(
                refs["unbonding_id"], account_id, amount, float(refs["complete_time"])
            )
        return StakeChanged(
            await self._after(committed, account_id),
            _records.transaction_of(committed.entry),
            unbonding,
        )

    async def _complete_unbonding(self, entry_id: str) -> bool:
        record = _records.unbonding_rec(entry_id)
        row = (await self.store.read([record]))[record]
        if not row:
            return False
        account_id = row["account"]
        now = self._clock()
        try:
            await self.store.commit(
                Plan(
                    checks=[Exists(record)],
                    moves=[
                        Move(
                            _records.unbonding_account(account_id),
                            account_id,
                            Asset.GOV.name,
                            int(row["amount"]),
                        )
                    ],
                    writes=[Delete(record), IndexRemove(UNBONDING, entry_id)],
                    entry=self._entry(
                        new_id("tx"), TransactionKind.UNBOND_COMPLETE, now, unbonding_id=entry_id
                    ),
                )
            )
        except Refused as refused:
            if refused.reason == CONFLICT:
                return False  # another replica completed it
            raise _error(refused) from None
        return True

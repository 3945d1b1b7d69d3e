"""``LedgerStore`` in process memory: the embedded default and the test store.

Atomicity comes from the event loop: each mutation checks and applies with no
``await`` in between, so no other coroutine can observe or interleave with a
half-done move. Rows are private and mutable; callers only ever get frozen
snapshots.
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_left
from dataclasses import dataclass, field

from meshwright.economy import governance
from meshwright.economy.errors import (
    EscrowClosed,
    EscrowExhausted,
    InsufficientFunds,
    InsufficientStake,
    MintLimitExceeded,
    ProposalClosed,
    StakeLocked,
    StakeRequired,
    VotingOpen,
)
from meshwright.economy.idempotency import DEFAULT_CAPACITY, IdempotencyCache, IdempotencyKey
from meshwright.economy.model import (
    INT64_MAX,
    Account,
    AccountCreated,
    Escrow,
    EscrowMoved,
    EscrowReleased,
    EscrowState,
    Proposal,
    ProposalState,
    StakeChanged,
    Transaction,
    TransactionKind,
    Transferred,
    VoteChoice,
)
from meshwright.mesh.errors import AlreadyExists, NotFound
from meshwright.mesh.timeutil import timestamp


@dataclass(slots=True)
class _AccountRow:
    account_id: str
    display_name: str
    balance: int
    staked: int
    escrowed: int
    create_time: float
    owner: str = ""
    ledger: list[Transaction] = field(default_factory=list)
    """Entries touching this account, ascending by seq (append-only)."""

    def snapshot(self) -> Account:
        return Account(
            self.account_id,
            self.display_name,
            self.balance,
            self.staked,
            self.escrowed,
            self.create_time,
            self.owner,
        )


@dataclass(slots=True)
class _EscrowRow:
    escrow_id: str
    payer: _AccountRow
    amount: int
    captured: int
    released: int
    state: EscrowState
    reference: str
    create_time: float
    close_time: float | None = None

    def snapshot(self) -> Escrow:
        return Escrow(
            self.escrow_id,
            self.payer.account_id,
            self.amount,
            self.captured,
            self.released,
            self.state,
            self.reference,
            self.create_time,
            self.close_time,
        )


@dataclass(frozen=True, slots=True)
class LedgerTotals:
    """Sums over the whole store, for audits and tests."""

    minted: int
    balances: int
    staked: int
    escrowed: int
    """Sum of the accounts' ``escrowed``."""
    escrow_held: int
    """Sum of what open escrows still hold."""

    @property
    def conserved(self) -> bool:
        """Money is neither created nor lost outside of minting."""
        return (
            self.balances + self.staked + self.escrow_held == self.minted
            and self.escrowed == self.escrow_held
        )


class MemoryLedgerStore:
    """Everything in dicts; lost when the process exits."""

    def __init__(self, *, idempotency_capacity: int = DEFAULT_CAPACITY) -> None:
        self._accounts: dict[str, _AccountRow] = {}
        self._escrows: dict[str, _EscrowRow] = {}
        self._proposals: dict[str, Proposal] = {}
        self._votes: dict[str, dict[str, tuple[VoteChoice, int]]] = {}
        # account -> proposals it voted on that may still be open (pruned lazily)
        self._voted_on: dict[str, set[str]] = {}
        self._idem = IdempotencyCache(idempotency_capacity)
        self._seq = 0
        self._minted = 0

    # Helpers (synchronous: they run inside one atomic section) -----------

    def _account(self, account_id: str) -> _AccountRow:
        row = self._accounts.get(account_id)
        if row is None:
            raise NotFound(f"account {account_id!r} not found", metadata={"account_id": account_id})
        return row

    def _escrow(self, escrow_id: str) -> _EscrowRow:
        row = self._escrows.get(escrow_id)
        if row is None:
            raise NotFound(f"escrow {escrow_id!r} not found", metadata={"escrow_id": escrow_id})
        return row

    def _proposal(self, proposal_id: str) -> Proposal:
        proposal = self._proposals.get(proposal_id)
        if proposal is None:
            raise NotFound(
                f"proposal {proposal_id!r} not found", metadata={"proposal_id": proposal_id}
            )
        return proposal

    def _record(
        self,
        transaction_id: str,
        kind: TransactionKind,
        debited: _AccountRow | None,
        credited: _AccountRow | None,
        amount: int,
        now: float,
        *,
        escrow_id: str = "",
        memo: str = "",
    ) -> Transaction:
        """Append one entry to the ledgers of the accounts it touches."""
        self._seq += 1
        tx = Transaction(
            transaction_id,
            self._seq,
            kind,
            debited.account_id if debited else "",
            credited.account_id if credited else "",
            amount,
            escrow_id,
            memo,
            now,
        )
        if debited is not None:
            debited.ledger.append(tx)
        if credited is not None and credited is not debited:
            credited.ledger.append(tx)
        return tx

    @staticmethod
    def _require_funds(row: _AccountRow, amount: int) -> None:
        if row.balance < amount:
            raise InsufficientFunds(
                f"account {row.account_id!r} has {row.balance} available, needs {amount}",
                metadata={"account_id": row.account_id},
            )

    # Reads ---------------------------------------------------------------

    async def get_account(self, account_id: str) -> Account | None:
        row = self._accounts.get(account_id)
        return None if row is None else row.snapshot()

    async def get_escrow(self, escrow_id: str) -> Escrow | None:
        row = self._escrows.get(escrow_id)
        return None if row is None else row.snapshot()

    async def get_proposal(self, proposal_id: str) -> Proposal | None:
        return self._proposals.get(proposal_id)

    async def list_transactions(
        self, account_id: str, *, before_seq: int | None, limit: int
    ) -> list[Transaction] | None:
        row = self._accounts.get(account_id)
        if row is None:
            return None
        ledger = row.ledger
        end = len(ledger) if before_seq is None else bisect_left(ledger, before_seq, key=_seq)
        return ledger[max(0, end - limit) : end][::-1]

    def audit(self) -> LedgerTotals:
        """Totals over every account and escrow (O(n); for tests and checks)."""
        rows = self._accounts.values()
        return LedgerTotals(
            minted=self._minted,
            balances=sum(r.balance for r in rows),
            staked=sum(r.staked for r in rows),
            escrowed=sum(r.escrowed for r in rows),
            escrow_held=sum(
                e.amount - e.captured - e.released
                for e in self._escrows.values()
                if e.state is EscrowState.OPEN
            ),
        )

    # Mutations -----------------------------------------------------------

    async def create_account(
        self,
        *,
        account_id: str,
        display_name: str,
        initial_balance: int,
        transaction_id: str,
        now: float,
        idem: IdempotencyKey | None,
        owner: str = "",
    ) -> AccountCreated:
        if (hit := self._idem.replay(idem, AccountCreated)) is not None:
            return hit
        if account_id in self._accounts:
            raise AlreadyExists(
                f"account {account_id!r} already exists", metadata={"account_id": account_id}
            )
        if self._minted + initial_balance > INT64_MAX:
            raise MintLimitExceeded("minting this would push the money supply past int64")
        row = _AccountRow(account_id, display_name, initial_balance, 0, 0, now, owner)
        self._accounts[account_id] = row
        self._minted += initial_balance
        tx = None
        if initial_balance > 0:
            tx = self._record(transaction_id, TransactionKind.MINT, None, row, initial_balance, now)
        return self._idem.remember(idem, AccountCreated(row.snapshot(), tx))

    async def transfer(
        self,
        *,
        from_account_id: str,
        to_account_id: str,
        amount: int,
        memo: str,
        transaction_id: str,
        now: float,
        idem: IdempotencyKey | None,
    ) -> Transferred:
        if (hit := self._idem.replay(idem, Transferred)) is not None:
            return hit
        src = self._account(from_account_id)
        dst = self._account(to_account_id)
        self._require_funds(src, amount)
        src.balance -= amount
        dst.balance += amount
        tx = self._record(
            transaction_id, TransactionKind.TRANSFER, src, dst, amount, now, memo=memo
        )
        return self._idem.remember(idem, Transferred(tx, src.snapshot(), dst.snapshot()))

    async def stake(
        self,
        *,
        account_id: str,
        amount: int,
        transaction_id: str,
        now: float,
        idem: IdempotencyKey | None,
    ) -> StakeChanged:
        if (hit := self._idem.replay(idem, StakeChanged)) is not None:
            return hit
        row = self._account(account_id)
        self._require_funds(row, amount)
        row.balance -= amount
        row.staked += amount
        tx = self._record(transaction_id, TransactionKind.STAKE, row, None, amount, now)
        return self._idem.remember(idem, StakeChanged(row.snapshot(), tx))

    async def unstake(
        self,
        *,
        account_id: str,
        amount: int,
        transaction_id: str,
        now: float,
        idem: IdempotencyKey | None,
    ) -> StakeChanged:
        if (hit := self._idem.replay(idem, StakeChanged)) is not None:
            return hit
        row = self._account(account_id)
        if row.staked < amount:
            raise InsufficientStake(
                f"account {account_id!r} has {row.staked} staked, needs {amount}",
                metadata={"account_id": account_id},
            )
        locked = self._locked_stake(account_id, now)
        if row.staked - amount < locked:
            # Otherwise one stake could vote, move to another account and vote again.
            raise StakeLocked(
                f"account {account_id!r} has {locked} of its {row.staked} staked backing votes "
                f"on open proposals; at most {row.staked - locked} can be unstaked now",
                metadata={"account_id": account_id, "locked": str(locked)},
            )
        row.staked -= amount
        row.balance += amount
        tx = self._record(transaction_id, TransactionKind.UNSTAKE, row, row, amount, now)
        return self._idem.remember(idem, StakeChanged(row.snapshot(), tx))

    async def open_escrow(
        self,
        *,
        escrow_id: str,
        payer_account_id: str,
        amount: int,
        reference: str,
        transaction_id: str,
        now: float,
        idem: IdempotencyKey | None,
    ) -> EscrowMoved:
        if (hit := self._idem.replay(idem, EscrowMoved)) is not None:
            return hit
        payer = self._account(payer_account_id)
        if escrow_id in self._escrows:
            raise AlreadyExists(
                f"escrow {escrow_id!r} already exists", metadata={"escrow_id": escrow_id}
            )
        self._require_funds(payer, amount)
        payer.balance -= amount
        payer.escrowed += amount
        row = _EscrowRow(escrow_id, payer, amount, 0, 0, EscrowState.OPEN, reference, now)
        self._escrows[escrow_id] = row
        tx = self._record(
            transaction_id, TransactionKind.ESCROW_OPEN, payer, None, amount, now,
            escrow_id=escrow_id, memo=reference,
        )  # fmt: skip
        return self._idem.remember(idem, EscrowMoved(row.snapshot(), tx))

    async def capture_escrow(
        self,
        *,
        escrow_id: str,
        payee_account_id: str,
        amount: int,
        memo: str,
        transaction_id: str,
        now: float,
        idem: IdempotencyKey | None,
    ) -> EscrowMoved:
        # The hot path (one call per finished task): dict lookups and arithmetic only.
        if idem is not None and (hit := self._idem.replay(idem, EscrowMoved)) is not None:
            return hit
        row = self._escrow(escrow_id)
        payee = self._account(payee_account_id)
        if row.state is not EscrowState.OPEN:
            raise EscrowClosed(f"escrow {escrow_id!r} is closed", metadata={"escrow_id": escrow_id})
        remaining = row.amount - row.captured
        if remaining < amount:
            raise EscrowExhausted(
                f"escrow {escrow_id!r} holds {remaining}, needs {amount}",
                metadata={"escrow_id": escrow_id},
            )
        row.captured += amount
        row.payer.escrowed -= amount
        payee.balance += amount
        tx = self._record(
            transaction_id, TransactionKind.ESCROW_CAPTURE, row.payer, payee, amount, now,
            escrow_id=escrow_id, memo=memo,
        )  # fmt: skip
        return self._idem.remember(idem, EscrowMoved(row.snapshot(), tx))

    async def release_escrow(
        self,
        *,
        escrow_id: str,
        transaction_id: str,
        now: float,
        idem: IdempotencyKey | None,
    ) -> EscrowReleased:
        if (hit := self._idem.replay(idem, EscrowReleased)) is not None:
            return hit
        row = self._escrow(escrow_id)
        if row.state is not EscrowState.OPEN:
            return self._idem.remember(idem, EscrowReleased(row.snapshot(), None))
        remaining = row.amount - row.captured
        row.released = remaining
        row.state = EscrowState.CLOSED
        row.close_time = now
        row.payer.escrowed -= remaining
        row.payer.balance += remaining
        tx = None
        if remaining > 0:
            tx = self._record(
                transaction_id, TransactionKind.ESCROW_RELEASE, row.payer, row.payer, remaining,
                now, escrow_id=escrow_id, memo=row.reference,
            )  # fmt: skip
        return self._idem.remember(idem, EscrowReleased(row.snapshot(), tx))

    async def create_proposal(
        self,
        *,
        proposal_id: str,
        proposer_account_id: str,
        title: str,
        description: str,
        quorum: int,
        voting_end_time: float,
        now: float,
        idem: IdempotencyKey | None,
    ) -> Proposal:
        if (hit := self._idem.replay(idem, Proposal)) is not None:
            return hit
        proposer = self._account(proposer_account_id)
        if proposer.staked <= 0:
            raise StakeRequired(
                f"account {proposer_account_id!r} has no stake and cannot propose",
                metadata={"account_id": proposer_account_id},
            )
        if proposal_id in self._proposals:
            raise AlreadyExists(f"proposal {proposal_id!r} already exists")
        proposal = Proposal(
            proposal_id, proposer_account_id, title, description, ProposalState.OPEN,
            0, 0, 0, quorum, 0, now, voting_end_time,
        )  # fmt: skip
        self._proposals[proposal_id] = proposal
        self._votes[proposal_id] = {}
        return self._idem.remember(idem, proposal)

    async def cast_vote(
        self,
        *,
        proposal_id: str,
        voter_account_id: str,
        choice: VoteChoice,
        now: float,
        idem: IdempotencyKey | None,
    ) -> Proposal:
        if (hit := self._idem.replay(idem, Proposal)) is not None:
            return hit
        proposal = self._proposal(proposal_id)
        voter = self._account(voter_account_id)
        if governance.as_of(proposal, now).state is not ProposalState.OPEN:
            raise ProposalClosed(
                f"voting on proposal {proposal_id!r} has ended",
                metadata={"proposal_id": proposal_id},
            )
        if voter.staked <= 0:
            raise StakeRequired(
                f"account {voter_account_id!r} has no stake and cannot vote",
                metadata={"account_id": voter_account_id},
            )
        votes = self._votes[proposal_id]
        weights = {
            VoteChoice.YES: proposal.yes_weight,
            VoteChoice.NO: proposal.no_weight,
            VoteChoice.ABSTAIN: proposal.abstain_weight,
        }
        previous = votes.get(voter_account_id)
        if previous is not None:  # a re-vote replaces the earlier one
            weights[previous[0]] -= previous[1]
        weights[choice] += voter.staked
        votes[voter_account_id] = (choice, voter.staked)
        self._voted_on.setdefault(voter_account_id, set()).add(proposal_id)
        proposal = dataclasses.replace(
            proposal,
            yes_weight=weights[VoteChoice.YES],
            no_weight=weights[VoteChoice.NO],
            abstain_weight=weights[VoteChoice.ABSTAIN],
            voter_count=len(votes),
        )
        self._proposals[proposal_id] = proposal
        return self._idem.remember(idem, proposal)

    def _locked_stake(self, account_id: str, now: float) -> int:
        """Stake behind the account's votes on proposals still open (the largest such vote)."""
        proposals = self._voted_on.get(account_id)
        if not proposals:
            return 0
        locked = 0
        for proposal_id in list(proposals):
            if governance.as_of(self._proposals[proposal_id], now).state is ProposalState.OPEN:
                locked = max(locked, self._votes[proposal_id][account_id][1])
            else:
                proposals.discard(proposal_id)
        return locked

    async def close_proposal(
        self, *, proposal_id: str, now: float, early_by: str | None
    ) -> Proposal:
        proposal = governance.as_of(self._proposal(proposal_id), now)
        if proposal.state is ProposalState.OPEN:
            if early_by is None:
                # Otherwise anyone could end a vote the moment it leans their way.
                raise VotingOpen(
                    f"voting on proposal {proposal_id!r} is open for "
                    f"{proposal.voting_end_time - now:.0f}s more; only an admin may close it early",
                    metadata={
                        "proposal_id": proposal_id,
                        "voting_end_time": timestamp(proposal.voting_end_time).ToJsonString(),
                    },
                )
            proposal = governance.decided(proposal, close_time=now, closed_early_by=early_by)
        self._proposals[proposal_id] = proposal
        return proposal


def _seq(tx: Transaction) -> int:
    return tx.seq

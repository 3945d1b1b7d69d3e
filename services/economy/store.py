"""The storage contract behind ``Economy``.

Every mutation is ONE atomic operation that checks its preconditions, applies
the change, appends its ledger entries and records its idempotency key
together, so concurrent callers and retries can never overdraw, double-apply
or leave half a move behind. In memory that means no ``await`` between check
and apply; in Redis, one Lua script (or one MULTI after WATCH) per method.

The caller has already validated the arguments' shape (ids, positive amounts)
and generated the new ids; a store raises only for the ledger's state:
``NotFound``, ``AlreadyExists``, the ``meshwright.economy.errors`` classes,
and ``InvalidArgument`` on ``request_id`` for a reused key.
"""

from __future__ import annotations

from typing import Protocol

from meshwright.economy.idempotency import IdempotencyKey
from meshwright.economy.model import (
    Account,
    AccountCreated,
    Escrow,
    EscrowMoved,
    EscrowReleased,
    Proposal,
    StakeChanged,
    Transaction,
    Transferred,
    VoteChoice,
)


class LedgerStore(Protocol):
    """Accounts, ledger, escrows and proposals, changed only atomically."""

    # Reads ---------------------------------------------------------------

    async def get_account(self, account_id: str) -> Account | None:
        """The account, or ``None``."""
        ...

    async def get_escrow(self, escrow_id: str) -> Escrow | None:
        """The escrow, or ``None``."""
        ...

    async def get_proposal(self, proposal_id: str) -> Proposal | None:
        """The proposal as stored (an open one may be past its end), or ``None``."""
        ...

    async def list_transactions(
        self, account_id: str, *, before_seq: int | None, limit: int
    ) -> list[Transaction] | None:
        """Up to ``limit`` entries touching the account with ``seq < before_seq``,
        newest first; ``None`` if the account is unknown."""
        ...

    # Atomic mutations ----------------------------------------------------

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
        """Open an account owned by ``owner``, minting ``initial_balance`` (a MINT entry if > 0).

        ALREADY_EXISTS if taken; MINT_LIMIT_EXCEEDED past an int64 supply.
        """
        ...

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
        """Balance to balance. NOT_FOUND, INSUFFICIENT_FUNDS."""
        ...

    async def stake(
        self,
        *,
        account_id: str,
        amount: int,
        transaction_id: str,
        now: float,
        idem: IdempotencyKey | None,
    ) -> StakeChanged:
        """Balance to stake. NOT_FOUND, INSUFFICIENT_FUNDS."""
        ...

    async def unstake(
        self,
        *,
        account_id: str,
        amount: int,
        transaction_id: str,
        now: float,
        idem: IdempotencyKey | None,
    ) -> StakeChanged:
        """Stake to balance. NOT_FOUND, INSUFFICIENT_STAKE."""
        ...

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
        """Payer balance into a new escrow. NOT_FOUND, ALREADY_EXISTS, INSUFFICIENT_FUNDS."""
        ...

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
        """Escrow to payee balance. NOT_FOUND, ESCROW_CLOSED, ESCROW_EXHAUSTED."""
        ...

    async def release_escrow(
        self,
        *,
        escrow_id: str,
        transaction_id: str,
        now: float,
        idem: IdempotencyKey | None,
    ) -> EscrowReleased:
        """Refund the remainder to the payer and close; a closed escrow comes back as is."""
        ...

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
        """Open a vote. NOT_FOUND, STAKE_REQUIRED."""
        ...

    async def cast_vote(
        self,
        *,
        proposal_id: str,
        voter_account_id: str,
        choice: VoteChoice,
        now: float,
        idem: IdempotencyKey | None,
    ) -> Proposal:
        """Record (or replace) the voter's stake-weighted vote.

        NOT_FOUND, PROPOSAL_CLOSED (also once ``now`` is past the end), STAKE_REQUIRED.
        """
        ...

    async def close_proposal(
        self, *, proposal_id: str, now: float, early_by: str | None
    ) -> Proposal:
        """Decide a proposal whose window has ended; a decided proposal comes back as is.

        Before the window ends it closes only with ``early_by`` (who closes it
        early, recorded as ``closed_early_by``), else VOTING_OPEN; the check and
        the close are one atomic step, so the window cannot end in between. NOT_FOUND.
        """
        ...

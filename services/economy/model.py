"""The economy's records: plain frozen values, independent of protobuf.

Stores hand these out as snapshots; nothing outside a store ever mutates
ledger state. Times are epoch seconds. Enum numbers match the contract's so
the conversion at the edge is a lookup, not a translation.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

INT64_MAX = 2**63 - 1
"""Largest amount the contract can carry."""


class TransactionKind(IntEnum):
    """What a ledger entry moved, and between which buckets.

    ``from_account_id``/``to_account_id`` per kind (the kind names the buckets):

    - MINT: "" -> account balance
    - TRANSFER: source balance -> destination balance
    - STAKE: account balance -> its stake (``to`` empty)
    - UNSTAKE: account stake -> its balance (both the account)
    - ESCROW_OPEN: payer balance -> escrow (``to`` empty)
    - ESCROW_CAPTURE: escrow (``from`` is the payer) -> payee balance
    - ESCROW_RELEASE: escrow (``from`` is the payer) -> payer balance
    """

    MINT = 1
    TRANSFER = 2
    STAKE = 3
    UNSTAKE = 4
    ESCROW_OPEN = 5
    ESCROW_CAPTURE = 6
    ESCROW_RELEASE = 7


class EscrowState(IntEnum):
    """Whether an escrow can still pay out."""

    OPEN = 1
    CLOSED = 2


class ProposalState(IntEnum):
    """Where a governance vote stands."""

    OPEN = 1
    PASSED = 2
    REJECTED = 3


class VoteChoice(IntEnum):
    """A voter's answer; ABSTAIN counts toward quorum only."""

    YES = 1
    NO = 2
    ABSTAIN = 3


@dataclass(frozen=True, slots=True)
class Account:
    """An account's balances at one moment."""

    account_id: str
    display_name: str
    balance: int
    """Spendable."""
    staked: int
    """Locked as stake; sets the tier and the voting weight."""
    escrowed: int
    """Still held in open escrows this account paid for."""
    create_time: float
    owner: str = ""
    """The principal (``role:subject``) that owns it; empty for accounts made outside any call."""


@dataclass(frozen=True, slots=True)
class Transaction:
    """One immutable ledger entry."""

    transaction_id: str
    seq: int
    """Position in the store's ledger; orders entries and keys page tokens."""
    kind: TransactionKind
    from_account_id: str
    to_account_id: str
    amount: int
    escrow_id: str
    memo: str
    create_time: float


@dataclass(frozen=True, slots=True)
class Escrow:
    """A payer's money held for a purpose."""

    escrow_id: str
    payer_account_id: str
    amount: int
    captured: int
    released: int
    state: EscrowState
    reference: str
    create_time: float
    close_time: float | None

    @property
    def remaining(self) -> int:
        """What an open escrow still holds."""
        return self.amount - self.captured - self.released


@dataclass(frozen=True, slots=True)
class Proposal:
    """A stake-weighted governance vote and its tally."""

    proposal_id: str
    proposer_account_id: str
    title: str
    description: str
    state: ProposalState
    yes_weight: int
    no_weight: int
    abstain_weight: int
    quorum: int
    voter_count: int
    create_time: float
    voting_end_time: float
    """The end of the voting window set at creation; an early close does not move it."""
    close_time: float | None = None
    """When it was decided: the close call's time, or ``voting_end_time`` when the window ran
    out. None while open."""
    closed_early_by: str = ""
    """Who closed it before its window ended (an admin's principal name, or ``INTERNAL``);
    empty otherwise."""


INTERNAL = "internal"
"""``closed_early_by`` of a close made by code outside any call (never a principal name,
which always has a ``role:`` prefix)."""


@dataclass(frozen=True, slots=True)
class AccountCreated:
    """Result of creating an account."""

    account: Account
    transaction: Transaction | None
    """The mint, when the account was funded."""


@dataclass(frozen=True, slots=True)
class Transferred:
    """Result of a transfer."""

    transaction: Transaction
    from_account: Account
    to_account: Account


@dataclass(frozen=True, slots=True)
class StakeChanged:
    """Result of staking or unstaking."""

    account: Account
    transaction: Transaction


@dataclass(frozen=True, slots=True)
class EscrowMoved:
    """Result of opening or capturing an escrow."""

    escrow: Escrow
    transaction: Transaction


@dataclass(frozen=True, slots=True)
class EscrowReleased:
    """Result of releasing an escrow."""

    escrow: Escrow
    transaction: Transaction | None
    """None when nothing was left to refund, or the escrow was already closed."""


@dataclass(frozen=True, slots=True)
class TransactionPage:
    """One page of an account's ledger, newest first."""

    transactions: list[Transaction]
    next_page_token: str

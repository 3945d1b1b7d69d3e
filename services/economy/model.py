"""The economy's records: plain frozen values, independent of protobuf.

``Economy`` builds these from the kernel's records; nothing outside the kernel
ever mutates ledger state. Times are epoch seconds. Enum names match the
contract's value suffixes, so the conversion at the edge is a lookup by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Generic, TypeVar

from meshwright.economy.tiers import Tier

if TYPE_CHECKING:
    from meshwright.economy.params import ParameterChange

INT64_MAX = 2**63 - 1
"""Largest amount the contract can carry."""

T = TypeVar("T")


class Asset(IntEnum):
    """What an amount is counted in."""

    CREDIT = 1
    """Pays for work: escrows, captures, transfers, rewards."""
    GOV = 2
    """Staked for tiers and voting weight."""


class AccountKind(IntEnum):
    """Who an account belongs to: a user (client or agent) or one of the ledger's roles."""

    USER = 1
    ISSUANCE = 2
    """``system:issuance``: minted money comes from it (its balance is minus the supply)."""
    TREASURY = 3
    """``system:treasury``: collects fees."""
    REWARDS_POOL = 4
    """``system:rewards``: pays tier and streak bonuses and reward distributions."""
    ESCROW = 5
    """``escrow:<id>``: one per escrow, holding what it has left."""
    STAKE = 6
    """``stake:<account>``: the GOV the account has staked."""
    UNBONDING = 7
    """``unbonding:<account>``: GOV on its way back from stake."""


class TransactionKind(IntEnum):
    """What a ledger transaction did (its postings say between which accounts)."""

    MINT = 1
    TRANSFER = 2
    STAKE = 3
    UNSTAKE = 4
    ESCROW_OPEN = 5
    ESCROW_CAPTURE = 6
    ESCROW_RELEASE = 7
    ESCROW_EXPIRE = 8
    UNBOND_COMPLETE = 9
    REWARD_DISTRIBUTION = 10
    PARAMETER_CHANGE = 11


class EscrowState(IntEnum):
    """Whether an escrow can still pay out."""

    OPEN = 1
    CLOSED = 2
    """Released by its workflow; the remainder went back to the payer."""
    EXPIRED = 3
    """Not renewed in time; the economy released it to the payer itself."""


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
    """CREDIT available."""
    staked: int
    """GOV staked (the balance of ``stake:<id>``): sets the tier and the voting weight."""
    escrowed: int
    """CREDIT still held in the open escrows this account paid for."""
    create_time: float
    owner: str = ""
    """The principal (``role:subject``) that owns it; empty for the ledger's own accounts."""
    gov_balance: int = 0
    """GOV available."""
    unbonding: int = 0
    """GOV unstaked and not yet back (the balance of ``unbonding:<id>``)."""
    kind: AccountKind = AccountKind.USER
    streak: int = 0
    """Consecutive tasks paid since the last reported failure."""
    tier: Tier = Tier.NONE
    multiplier_bps: int = 10_000
    """Reward multiplier of the tier, in basis points."""


@dataclass(frozen=True, slots=True)
class Posting:
    """One side of a movement; negative for the debited account."""

    account_id: str
    asset: Asset
    amount: int


@dataclass(frozen=True, slots=True)
class Transaction:
    """One immutable ledger transaction: postings that sum to zero per asset."""

    transaction_id: str
    seq: int
    """Position in the ledger; orders transactions and keys page tokens."""
    kind: TransactionKind
    from_account_id: str
    """The first posting pair's debited account (summary for readers of one movement)."""
    to_account_id: str
    amount: int
    escrow_id: str
    memo: str
    create_time: float
    asset: Asset = Asset.CREDIT
    postings: tuple[Posting, ...] = ()
    request_id: str = ""
    caller: str = ""
    task_id: str = ""
    proposal_id: str = ""


@dataclass(frozen=True, slots=True)
class Escrow:
    """A payer's money held for a purpose, in the account ``escrow:<id>``."""

    escrow_id: str
    payer_account_id: str
    amount: int
    captured: int
    released: int
    state: EscrowState
    reference: str
    create_time: float
    close_time: float | None
    expire_time: float = 0.0
    """When an open escrow is released unless renewed first."""
    owner: str = ""
    """The payer account's owner."""
    captures: int = 0
    """Captures made."""

    @property
    def remaining(self) -> int:
        """What an open escrow still holds."""
        return self.amount - self.captured - self.released


@dataclass(frozen=True, slots=True)
class UnbondingEntry:
    """Unstaked GOV on its way back to an account's balance."""

    entry_id: str
    account_id: str
    amount: int
    complete_time: float


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
    change: ParameterChange | None = None
    """The parameter change it applies when it passes."""
    threshold_bps: int = 5_000
    """Yes must be more than this share of yes + no, in basis points."""
    applied: bool = False
    """Whether its change has been applied (set when a passed proposal is closed)."""


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
class Minted:
    """Result of minting into an account."""

    account: Account
    transaction: Transaction


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
    unbonding: UnbondingEntry | None = None
    """Set by an unstake that waits out the unbonding period."""


@dataclass(frozen=True, slots=True)
class EscrowMoved:
    """Result of opening or capturing an escrow."""

    escrow: Escrow
    transaction: Transaction
    bonus: int = 0
    """Tier and streak bonus a capture paid from the rewards pool on top of the price."""


@dataclass(frozen=True, slots=True)
class EscrowReleased:
    """Result of releasing an escrow."""

    escrow: Escrow
    transaction: Transaction | None
    """None when nothing was left to refund, or the escrow was already closed."""


@dataclass(frozen=True, slots=True)
class Distributed:
    """Result of a reward distribution."""

    transaction: Transaction | None
    """None when there was no staker to pay."""
    recipients: int


@dataclass(frozen=True, slots=True)
class AssetSupply:
    """How much of an asset was issued and how much the accounts hold."""

    asset: Asset
    issued: int
    held: int


@dataclass(frozen=True, slots=True)
class BalanceMismatch:
    """A stored balance that replaying the ledger does not give (or a negative one)."""

    account_id: str
    asset: Asset
    stored: int
    replayed: int


@dataclass(frozen=True, slots=True)
class AuditReport:
    """What replaying every posting found."""

    ok: bool
    transaction_count: int
    account_count: int
    supplies: tuple[AssetSupply, ...]
    mismatches: tuple[BalanceMismatch, ...]
    unbalanced: tuple[str, ...]
    """Transactions whose postings do not sum to zero per asset."""
    negative: tuple[BalanceMismatch, ...]
    """Accounts (other than issuance) with a negative stored balance."""


@dataclass(frozen=True, slots=True)
class Maintenance:
    """What one maintenance pass did."""

    expired: int = 0
    unbonded: int = 0
    closed: int = 0
    distributed: int = 0


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing."""

    items: list[T]
    next_page_token: str = ""


@dataclass(frozen=True, slots=True)
class TransactionPage:
    """One page of an account's ledger, newest first."""

    transactions: list[Transaction]
    next_page_token: str

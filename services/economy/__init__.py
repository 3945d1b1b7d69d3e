"""The economy domain: accounts on a double-entry ledger, transfers, stakes,
escrow for workflow budgets, and stake-weighted governance."""

from meshwright.economy.economy import Economy
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
from meshwright.economy.idempotency import IdempotencyKey
from meshwright.economy.memory_store import LedgerTotals, MemoryLedgerStore
from meshwright.economy.model import (
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
    TransactionPage,
    Transferred,
    VoteChoice,
)
from meshwright.economy.servicer import ECONOMY_SERVICE, EconomyServicer
from meshwright.economy.store import LedgerStore
from meshwright.economy.tiers import DEFAULT_TIERS, Tier, TierLevel, TierTable

__all__ = [
    "DEFAULT_TIERS",
    "ECONOMY_SERVICE",
    "Account",
    "AccountCreated",
    "Economy",
    "EconomyServicer",
    "Escrow",
    "EscrowClosed",
    "EscrowExhausted",
    "EscrowMoved",
    "EscrowReleased",
    "EscrowState",
    "IdempotencyKey",
    "InsufficientFunds",
    "InsufficientStake",
    "LedgerStore",
    "LedgerTotals",
    "MemoryLedgerStore",
    "MintLimitExceeded",
    "Proposal",
    "ProposalClosed",
    "ProposalState",
    "StakeChanged",
    "StakeLocked",
    "StakeRequired",
    "Tier",
    "TierLevel",
    "TierTable",
    "Transaction",
    "TransactionKind",
    "TransactionPage",
    "Transferred",
    "VoteChoice",
    "VotingOpen",
]

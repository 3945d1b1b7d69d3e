"""The economy domain: accounts on a double-entry ledger, transfers, stakes,
escrow for workflow budgets, and stake-weighted governance.

Names load on first use (PEP 562), so importing a contract such as
``meshwright.economy.v1`` does not start the runtime behind this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshwright.mesh.lazy import lazy_exports

if TYPE_CHECKING:
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
    from meshwright.economy.memory_store import (
        LedgerTotals,
        MemoryLedgerStore,
    )
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
    from meshwright.economy.servicer import (
        ECONOMY_SERVICE,
        EconomyServicer,
    )
    from meshwright.economy.store import LedgerStore
    from meshwright.economy.tiers import (
        DEFAULT_TIERS,
        Tier,
        TierLevel,
        TierTable,
    )

_EXPORTS: dict[str, str] = {
    "Economy": "meshwright.economy.economy",
    "EscrowClosed": "meshwright.economy.errors",
    "EscrowExhausted": "meshwright.economy.errors",
    "InsufficientFunds": "meshwright.economy.errors",
    "InsufficientStake": "meshwright.economy.errors",
    "MintLimitExceeded": "meshwright.economy.errors",
    "ProposalClosed": "meshwright.economy.errors",
    "StakeLocked": "meshwright.economy.errors",
    "StakeRequired": "meshwright.economy.errors",
    "VotingOpen": "meshwright.economy.errors",
    "IdempotencyKey": "meshwright.economy.idempotency",
    "LedgerTotals": "meshwright.economy.memory_store",
    "MemoryLedgerStore": "meshwright.economy.memory_store",
    "Account": "meshwright.economy.model",
    "AccountCreated": "meshwright.economy.model",
    "Escrow": "meshwright.economy.model",
    "EscrowMoved": "meshwright.economy.model",
    "EscrowReleased": "meshwright.economy.model",
    "EscrowState": "meshwright.economy.model",
    "Proposal": "meshwright.economy.model",
    "ProposalState": "meshwright.economy.model",
    "StakeChanged": "meshwright.economy.model",
    "Transaction": "meshwright.economy.model",
    "TransactionKind": "meshwright.economy.model",
    "TransactionPage": "meshwright.economy.model",
    "Transferred": "meshwright.economy.model",
    "VoteChoice": "meshwright.economy.model",
    "ECONOMY_SERVICE": "meshwright.economy.servicer",
    "EconomyServicer": "meshwright.economy.servicer",
    "LedgerStore": "meshwright.economy.store",
    "DEFAULT_TIERS": "meshwright.economy.tiers",
    "Tier": "meshwright.economy.tiers",
    "TierLevel": "meshwright.economy.tiers",
    "TierTable": "meshwright.economy.tiers",
}
"""Each public name and the module that defines it."""

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


if not TYPE_CHECKING:  # mypy sees the imports above, and no catch-all attribute
    __getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

"""The economy domain: accounts on a double-entry ledger, transfers, stakes,
escrow for workflow budgets, and stake-weighted governance.

Names load on first use (PEP 562), so importing a contract such as
``meshwright.economy.v1`` does not start the runtime behind this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshwright.mesh.lazy import lazy_exports

if TYPE_CHECKING:
    from meshwright.economy.economy import (
        Economy,
    )
    from meshwright.economy.errors import (
        EscrowClosed,
        EscrowExhausted,
        EscrowExpired,
        InsufficientFunds,
        InsufficientStake,
        LedgerContended,
        MintLimitExceeded,
        PayeeNotOwned,
        ProposalClosed,
        StakeLocked,
        StakeRequired,
        TaskAlreadyPaid,
        VotingOpen,
    )
    from meshwright.economy.kernel import (
        Committed,
        LedgerStore,
        Plan,
        Refused,
    )
    from meshwright.economy.memory_store import (
        MemoryLedgerStore,
    )
    from meshwright.economy.model import (
        Account,
        AccountCreated,
        AccountKind,
        Asset,
        AssetSupply,
        AuditReport,
        BalanceMismatch,
        Distributed,
        Escrow,
        EscrowMoved,
        EscrowReleased,
        EscrowState,
        Maintenance,
        Minted,
        Page,
        Posting,
        Proposal,
        ProposalState,
        StakeChanged,
        Transaction,
        TransactionKind,
        TransactionPage,
        Transferred,
        UnbondingEntry,
        VoteChoice,
    )
    from meshwright.economy.params import (
        ParameterChange,
        Params,
    )
    from meshwright.economy.rewards import (
        pro_rata,
    )
    from meshwright.economy.servicer import (
        ECONOMY_SERVICE,
        EconomyServicer,
    )
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
    "EscrowExpired": "meshwright.economy.errors",
    "InsufficientFunds": "meshwright.economy.errors",
    "InsufficientStake": "meshwright.economy.errors",
    "LedgerContended": "meshwright.economy.errors",
    "MintLimitExceeded": "meshwright.economy.errors",
    "PayeeNotOwned": "meshwright.economy.errors",
    "ProposalClosed": "meshwright.economy.errors",
    "StakeLocked": "meshwright.economy.errors",
    "StakeRequired": "meshwright.economy.errors",
    "TaskAlreadyPaid": "meshwright.economy.errors",
    "VotingOpen": "meshwright.economy.errors",
    "Committed": "meshwright.economy.kernel",
    "LedgerStore": "meshwright.economy.kernel",
    "Plan": "meshwright.economy.kernel",
    "Refused": "meshwright.economy.kernel",
    "MemoryLedgerStore": "meshwright.economy.memory_store",
    "Account": "meshwright.economy.model",
    "AccountCreated": "meshwright.economy.model",
    "AccountKind": "meshwright.economy.model",
    "Asset": "meshwright.economy.model",
    "AssetSupply": "meshwright.economy.model",
    "AuditReport": "meshwright.economy.model",
    "BalanceMismatch": "meshwright.economy.model",
    "Distributed": "meshwright.economy.model",
    "Escrow": "meshwright.economy.model",
    "EscrowMoved": "meshwright.economy.model",
    "EscrowReleased": "meshwright.economy.model",
    "EscrowState": "meshwright.economy.model",
    "Maintenance": "meshwright.economy.model",
    "Minted": "meshwright.economy.model",
    "Page": "meshwright.economy.model",
    "Posting": "meshwright.economy.model",
    "Proposal": "meshwright.economy.model",
    "ProposalState": "meshwright.economy.model",
    "StakeChanged": "meshwright.economy.model",
    "Transaction": "meshwright.economy.model",
    "TransactionKind": "meshwright.economy.model",
    "TransactionPage": "meshwright.economy.model",
    "Transferred": "meshwright.economy.model",
    "UnbondingEntry": "meshwright.economy.model",
    "VoteChoice": "meshwright.economy.model",
    "ParameterChange": "meshwright.economy.params",
    "Params": "meshwright.economy.params",
    "pro_rata": "meshwright.economy.rewards",
    "ECONOMY_SERVICE": "meshwright.economy.servicer",
    "EconomyServicer": "meshwright.economy.servicer",
    "DEFAULT_TIERS": "meshwright.economy.tiers",
    "Tier": "meshwright.economy.tiers",
    "TierLevel": "meshwright.economy.tiers",
    "TierTable": "meshwright.economy.tiers",
}
"""Each public name and the module that defines it."""

__all__ = [
    "Account",
    "AccountCreated",
    "AccountKind",
    "Asset",
    "AssetSupply",
    "AuditReport",
    "BalanceMismatch",
    "Committed",
    "DEFAULT_TIERS",
    "Distributed",
    "ECONOMY_SERVICE",
    "Economy",
    "EconomyServicer",
    "Escrow",
    "EscrowClosed",
    "EscrowExhausted",
    "EscrowExpired",
    "EscrowMoved",
    "EscrowReleased",
    "EscrowState",
    "InsufficientFunds",
    "InsufficientStake",
    "LedgerContended",
    "LedgerStore",
    "Maintenance",
    "MemoryLedgerStore",
    "MintLimitExceeded",
    "Minted",
    "Page",
    "ParameterChange",
    "Params",
    "PayeeNotOwned",
    "Plan",
    "Posting",
    "Proposal",
    "ProposalClosed",
    "ProposalState",
    "Refused",
    "StakeChanged",
    "StakeLocked",
    "StakeRequired",
    "TaskAlreadyPaid",
    "Tier",
    "TierLevel",
    "TierTable",
    "Transaction",
    "TransactionKind",
    "TransactionPage",
    "Transferred",
    "UnbondingEntry",
    "VoteChoice",
    "VotingOpen",
    "pro_rata",
]


if not TYPE_CHECKING:  # mypy sees the imports above, and no catch-all attribute
    __getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

"""The economy's own failure reasons.

Each is a ``meshwright.mesh.errors`` subclass with its own ``reason``, so the
server maps it to the parent's gRPC code and the client side rebuilds the same
class from the ``ErrorInfo`` reason.
"""

from __future__ import annotations

from meshwright.mesh.errors import Aborted, FailedPrecondition, ResourceExhausted


class InsufficientFunds(FailedPrecondition):
    """The available balance cannot cover the amount."""

    reason = "INSUFFICIENT_FUNDS"


class InsufficientStake(FailedPrecondition):
    """Less is staked than the amount to unstake."""

    reason = "INSUFFICIENT_STAKE"


class StakeRequired(FailedPrecondition):
    """Governance needs an account with stake, and this one has none."""

    reason = "STAKE_REQUIRED"


class StakeLocked(FailedPrecondition):
    """The stake backs votes on proposals still open; it unlocks when they close."""

    reason = "STAKE_LOCKED"


class EscrowClosed(FailedPrecondition):
    """The escrow was released and pays out no more."""

    reason = "ESCROW_CLOSED"


class EscrowExhausted(FailedPrecondition):
    """The escrow holds less than the amount to capture."""

    reason = "ESCROW_EXHAUSTED"


class EscrowExpired(FailedPrecondition):
    """The escrow was not renewed in time; the economy released it to the payer."""

    reason = "ESCROW_EXPIRED"


class TaskAlreadyPaid(FailedPrecondition):
    """The task was already paid from this escrow, to another payee or another amount."""

    reason = "TASK_ALREADY_PAID"


class PayeeNotOwned(FailedPrecondition):
    """The payee account does not belong to the principal the capture names (squatted)."""

    reason = "PAYEE_NOT_OWNED"


class LedgerContended(Aborted):
    """The ledger kept changing under the request (conflicting writers); retry it."""

    reason = "LEDGER_CONTENDED"


class ProposalClosed(FailedPrecondition):
    """The proposal's voting has ended."""

    reason = "PROPOSAL_CLOSED"


class VotingOpen(FailedPrecondition):
    """The proposal's voting window has not ended, and only an admin may close it early."""

    reason = "VOTING_OPEN"


class MintLimitExceeded(ResourceExhausted):
    """Minting more would push the money supply past int64.

    Money is conserved, so capping the supply at int64 keeps every balance,
    stake, escrow and tally representable in the contract's int64 fields.
    """

    reason = "MINT_LIMIT_EXCEEDED"


__all__ = [
    "EscrowClosed",
    "EscrowExhausted",
    "EscrowExpired",
    "InsufficientFunds",
    "InsufficientStake",
    "LedgerContended",
    "MintLimitExceeded",
    "PayeeNotOwned",
    "ProposalClosed",
    "StakeLocked",
    "StakeRequired",
    "TaskAlreadyPaid",
    "VotingOpen",
]

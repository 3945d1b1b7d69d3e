"""The engine's side of the economy: escrow a workflow's budget, pay tasks, refund.

Every call carries a deadline and a request id derived from what it is for,
so a retry (the same replica, or another that took the workflow over) replays
the first result instead of moving money twice:

- open:    ``escrow/<escrow_id>/open``
- capture: ``escrow/<escrow_id>/task/<task_id>/pay`` (a task is paid once across
  retries and takeovers)
- release: ``workflow/<workflow_id>/release``
"""

from __future__ import annotations

from meshwright.economy.v1 import economy_pb2
from meshwright.mesh.client import ServiceClient
from meshwright.mesh.errors import AlreadyExists, InvalidArgument, NotFound
from meshwright.workflow.dispatch import Slot


class Payments:
    """Escrow moves of workflows, through the economy's contract."""

    def __init__(self, economy: ServiceClient, *, timeout_s: float) -> None:
        self._economy = economy
        self._timeout_s = timeout_s

    async def open(self, *, escrow_id: str, payer: str, amount: int, workflow_id: str) -> str:
        """Escrow ``amount`` from ``payer``; returns the escrow id (idempotent)."""
        reply = await self._economy.call(
            "OpenEscrow",
            economy_pb2.OpenEscrowRequest(
                escrow_id=escrow_id,
                payer_account_id=payer,
                amount=amount,
                reference=f"workflow/{workflow_id}",
                request_id=f"escrow/{escrow_id}/open",
            ),
            timeout=self._timeout_s,
        )
        return str(reply.escrow.escrow_id)

    async def pay(self, *, escrow_id: str, workflow_id: str, task_id: str, slot: Slot) -> None:
        """Pay the agent of ``slot`` its price for ``task_id`` from the escrow (once)."""
        capture = economy_pb2.CaptureEscrowRequest(
            escrow_id=escrow_id,
            payee_account_id=slot.payout_account_id,
            amount=slot.price,
            memo=f"workflow/{workflow_id}/task/{task_id}",
            request_id=f"escrow/{escrow_id}/task/{task_id}/pay",
        )
        try:
            await self._economy.call("CaptureEscrow", capture, timeout=self._timeout_s)
        except NotFound as err:
            if err.metadata.get("account_id") != slot.payout_account_id:
                raise
            # The agent could not open its payout account (the economy was down
            # when it started): open it now rather than fail work already done.
            try:
                await self._economy.call(
                    "CreateAccount",
                    economy_pb2.CreateAccountRequest(
                        account_id=slot.payout_account_id,
                        display_name=f"payout of agent {slot.agent_id}",
                        # The agent's, not the mesh's: it must be able to spend its pay.
                        owner=f"agent:{slot.agent_id}",
                    ),
                    timeout=self._timeout_s,
                )
            except AlreadyExists:
                pass
            await self._economy.call("CaptureEscrow", capture, timeout=self._timeout_s)

    async def release(self, *, escrow_id: str, workflow_id: str) -> int:
        """Close the escrow, refunding what is left; returns the refund (idempotent)."""
        reply = await self._economy.call(
            "ReleaseEscrow",
            economy_pb2.ReleaseEscrowRequest(
                escrow_id=escrow_id, request_id=f"workflow/{workflow_id}/release"
            ),
            timeout=self._timeout_s,
        )
        return int(reply.escrow.released)

    async def account_owner(self, account_id: str) -> str | None:
        """The owner of an account, None if there is none by that id."""
        try:
            reply = await self._economy.call(
                "GetAccount",
                economy_pb2.GetAccountRequest(account_id=account_id),
                timeout=self._timeout_s,
            )
        except (NotFound, InvalidArgument):
            return None
        return str(reply.account.owner)


__all__ = ["Payments"]

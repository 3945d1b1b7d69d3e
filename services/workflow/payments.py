"""The engine's side of the economy: escrow a workflow's budget, keep it, pay tasks, refund.

Every move carries a deadline and a request id derived from what it is for,
so a retry (the same replica, or another that took the workflow over) replays
the first result instead of moving money twice:

- open:    ``escrow/<escrow_id>/open``, with a ttl: the economy releases an escrow
  nobody renewed (its workflow vanished with no replica to take it over);
- capture: ``escrow/<escrow_id>/task/<task_id>/pay``, and the capture names the
  task: the economy pays a task once per escrow for good, whatever the payee
  (a replica that took the workflow over may have run it on another agent),
  long after request ids are forgotten;
- release: ``workflow/<workflow_id>/release``.

``EscrowKeeper`` renews the escrows of the runs this replica owns (one loop
for all of them, every third of the ttl).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from google.protobuf import duration_pb2

from meshwright.economy.errors import EscrowClosed, EscrowExpired, TaskAlreadyPaid
from meshwright.economy.v1 import economy_pb2
from meshwright.mesh.client import ServiceClient
from meshwright.mesh.context import detached
from meshwright.mesh.errors import AlreadyExists, InvalidArgument, MeshError, NotFound
from meshwright.workflow.dispatch import Slot

log = logging.getLogger(__name__)

_CAPTURE_LOOKUP_PAGES = 10
"""Pages (of 100) of an escrow's captures searched for the one that paid a task already."""
_RENEW_CONCURRENCY = 32
"""RenewEscrow calls one renewal round has in flight at once."""


def _ttl(ttl_s: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(round(ttl_s * 1e9))
    return d


def _already_paid(err: MeshError) -> bool:
    # By class, and by reason too: a client that does not know the economy's
    # errors rebuilds it as a plain FailedPrecondition with that reason.
    return isinstance(err, TaskAlreadyPaid) or err.reason == TaskAlreadyPaid.reason


def budget_gone(err: MeshError) -> bool:
    """Whether a refused renewal means the escrow pays no more (expired or released)."""
    return isinstance(err, EscrowExpired | EscrowClosed) or err.reason in (
        EscrowExpired.reason,
        EscrowClosed.reason,
    )


@dataclass(frozen=True, slots=True)
class Payment:
    """What the economy paid for a task."""

    payee_account_id: str
    amount: int
    already_paid: bool = False
    """The task had been paid before this capture (by this replica or another that ran
    the workflow then, maybe to another agent): nothing moved now."""


class Payments:
    """Escrow moves of workflows, through the economy's contract."""

    def __init__(self, economy: ServiceClient, *, timeout_s: float) -> None:
        self._economy = economy
        self._timeout_s = timeout_s

    async def open(
        self,
        *,
        escrow_id: str,
        payer: str,
        amount: int,
        workflow_id: str,
        ttl_s: float | None = None,
    ) -> str:
        """Escrow ``amount`` from ``payer`` for ``ttl_s`` (renewable; None: the economy's
        ``escrow_ttl`` parameter); returns the escrow id (idempotent)."""
        request = economy_pb2.OpenEscrowRequest(
            escrow_id=escrow_id,
            payer_account_id=payer,
            amount=amount,
            reference=f"workflow/{workflow_id}",
            request_id=f"escrow/{escrow_id}/open",
        )
        if ttl_s is not None:
            request.ttl.CopyFrom(_ttl(ttl_s))
        try:
            reply = await self._economy.call("OpenEscrow", request, timeout=self._timeout_s)
        except InvalidArgument as err:
            if not any(v.field == "request_id" for v in err.violations):
                raise
            # Opened already, with other options: the workflow's creator (an older
            # version, or one with another escrow_ttl_s) died before recording it. The
            # escrow id is this workflow's alone, so the escrow is its if it matches.
            await self._opened_before(request, err)
            return escrow_id
        return str(reply.escrow.escrow_id)

    async def _opened_before(
        self, request: economy_pb2.OpenEscrowRequest, refused: MeshError
    ) -> None:
        reply = await self._economy.call(
            "GetEscrow",
            economy_pb2.GetEscrowRequest(escrow_id=request.escrow_id),
            timeout=self._timeout_s,
        )
        escrow = reply.escrow
        if (escrow.payer_account_id, escrow.amount, escrow.reference) != (
            request.payer_account_id,
            request.amount,
            request.reference,
        ):
            raise refused
        meta = {"escrow_id": request.escrow_id}
        if escrow.state == economy_pb2.ESCROW_STATE_EXPIRED:
            raise EscrowExpired(f"escrow {request.escrow_id!r} expired", metadata=meta)
        if escrow.state != economy_pb2.ESCROW_STATE_OPEN:
            raise EscrowClosed(f"escrow {request.escrow_id!r} is closed", metadata=meta)

    async def renew(self, *, escrow_id: str, ttl_s: float) -> None:
        """Push the escrow's expiry to now + ``ttl_s`` (ESCROW_EXPIRED or ESCROW_CLOSED
        once it pays no more)."""
        await self._economy.call(
            "RenewEscrow",
            economy_pb2.RenewEscrowRequest(escrow_id=escrow_id, ttl=_ttl(ttl_s)),
            timeout=self._timeout_s,
        )

    async def pay(self, *, escrow_id: str, workflow_id: str, task_id: str, slot: Slot) -> Payment:
        """Pay the agent of ``slot`` its price for ``task_id`` from the escrow, unless the
        task was paid already (then says what that payment was)."""
        capture = economy_pb2.CaptureEscrowRequest(
            escrow_id=escrow_id,
            payee_account_id=slot.payout_account_id,
            amount=slot.price,
            memo=f"workflow/{workflow_id}/task/{task_id}",
            request_id=f"escrow/{escrow_id}/task/{task_id}/pay",
            task_id=task_id,
            # A payout account someone else opened under the agent's id collects nothing.
            payee_owner=f"agent:{slot.agent_id}",
        )
        try:
            await self._capture(capture, slot)
        except MeshError as err:
            if not _already_paid(err):
                raise
            payee, amount = err.metadata.get("payee_account_id"), err.metadata.get("amount")
            if payee and amount and amount.isdigit():
                log.info(
                    "task %s/%s was paid already: %s to %s (escrow %s); not paying %s again",
                    workflow_id, task_id, amount, payee, escrow_id, slot.payout_account_id,
                )  # fmt: skip
                return Payment(payee, int(amount), already_paid=True)
            # An economy that does not say who was paid: look the capture up.
            return await self._earlier_payment(escrow_id, workflow_id, task_id, slot)
        return Payment(slot.payout_account_id, slot.price)

    async def _capture(self, capture: economy_pb2.CaptureEscrowRequest, slot: Slot) -> None:
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

    async def _earlier_payment(
        self, escrow_id: str, workflow_id: str, task_id: str, slot: Slot
    ) -> Payment:
        """The capture that paid ``task_id`` before, read from the escrow's ledger entries:
        the workflow counts what was really spent, not this attempt's price."""
        found: economy_pb2.Transaction | None = None
        try:
            found = await self._capture_of(escrow_id, task_id)
        except MeshError as err:
            log.warning(
                "could not read the earlier payment of %s/%s: %s", workflow_id, task_id, err
            )
        if found is None:
            log.warning(
                "task %s/%s was paid already (escrow %s); its earlier payment was not found, "
                "counting this attempt's price %d",
                workflow_id,
                task_id,
                escrow_id,
                slot.price,
            )
            return Payment(slot.payout_account_id, slot.price, already_paid=True)
        log.info(
            "task %s/%s was paid already: %d to %s (escrow %s); not paying %s again",
            workflow_id,
            task_id,
            found.amount,
            found.to_account_id,
            escrow_id,
            slot.payout_account_id,
        )
        return Payment(found.to_account_id, int(found.amount), already_paid=True)

    async def _capture_of(self, escrow_id: str, task_id: str) -> economy_pb2.Transaction | None:
        token = ""
        for _ in range(_CAPTURE_LOOKUP_PAGES):
            reply = await self._economy.call(
                "ListTransactions",
                economy_pb2.ListTransactionsRequest(
                    account_id=f"escrow:{escrow_id}",
                    kind=economy_pb2.TRANSACTION_KIND_ESCROW_CAPTURE,
                    page_size=100,
                    page_token=token,
                ),
                timeout=self._timeout_s,
            )
            for tx in reply.transactions:
                if tx.task_id == task_id:
                    return tx
            token = reply.next_page_token
            if not token:
                break
        return None

    async def report_failure(self, *, escrow_id: str, task_id: str, slot: Slot) -> None:
        """Tell the economy the agent of ``slot`` failed ``task_id`` (its streak restarts).
        Best effort: a failure to report is logged, never raised."""
        try:
            await self._economy.call(
                "ReportTaskFailure",
                economy_pb2.ReportTaskFailureRequest(
                    payee_account_id=slot.payout_account_id, escrow_id=escrow_id, task_id=task_id
                ),
                timeout=self._timeout_s,
            )
        except NotFound:
            pass  # no payout account yet: no streak to reset
        except MeshError as err:
            log.warning(
                "could not report the failure of task %s by agent %s: %s",
                task_id,
                slot.agent_id,
                err,
            )

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


class EscrowKeeper:
    """Renews the escrows of the workflows this replica runs, every third of their ttl.

    One loop for all runs; each round renews every escrow ``escrows()`` names (at most
    ``_RENEW_CONCURRENCY`` calls at once). A renewal refused because the escrow pays
    no more (it expired, or was released) calls ``on_gone``; other failures (the
    economy unreachable) are logged and tried again next round, two more before the
    ttl runs out.
    """

    def __init__(
        self,
        payments: Payments,
        *,
        ttl_s: float,
        escrows: Callable[[], Iterable[tuple[str, str]]],
        on_gone: Callable[[str, MeshError], None],
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        self.ttl_s = ttl_s
        self._payments = payments
        self._escrows = escrows
        self._on_gone = on_gone
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start renewing (until ``stop``)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._renewing(), name="escrow-renew", context=detached()
            )

    async def stop(self) -> None:
        """Stop renewing (escrows of runs handed off are renewed by their next owner)."""
        task, self._task = self._task, None
        # Cancelled until it ends: Python 3.11's wait_for (under client libraries' calls)
        # drops a cancel that arrives as its inner call completes.
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=1.0)

    async def renew_once(self) -> None:
        """One round: renew every escrow of a live run now."""
        due = list(self._escrows())
        if not due:
            return
        room = asyncio.Semaphore(_RENEW_CONCURRENCY)

        async def renew(workflow_id: str, escrow_id: str) -> None:
            async with room:
                try:
                    await self._payments.renew(escrow_id=escrow_id, ttl_s=self.ttl_s)
                except MeshError as err:
                    if budget_gone(err):
                        self._on_gone(workflow_id, err)
                    else:
                        log.warning(
                            "renewing escrow %s of workflow %s failed (%s); retrying",
                            escrow_id,
                            workflow_id,
                            err,
                        )

        await asyncio.gather(*(renew(w, e) for w, e in due))

    async def _renewing(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.ttl_s / 3
        due = loop.time() + interval
        while True:
            # On a fixed beat: a slow round must not push every later one back.
            await asyncio.sleep(max(0.0, due - loop.time()))
            due = max(due + interval, loop.time())
            try:
                await self.renew_once()
            except Exception:  # a bug must not end the renewals of every run
                log.exception("escrow renewal round failed")


__all__ = ["EscrowKeeper", "Payment", "Payments", "budget_gone"]

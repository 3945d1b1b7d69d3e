"""``Economy``: the domain API the servicer (and in-process callers) use.

It validates the shape of every input, naming every bad field at once, then
hands ONE atomic operation to the ``LedgerStore``. It knows nothing of gRPC
or protobuf.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from meshwright.economy import _checks, governance
from meshwright.economy.idempotency import idempotency_key
from meshwright.economy.ids import new_id
from meshwright.economy.model import (
    INTERNAL,
    Account,
    Escrow,
    EscrowMoved,
    EscrowReleased,
    Proposal,
    StakeChanged,
    TransactionPage,
    Transferred,
    VoteChoice,
)
from meshwright.economy.store import LedgerStore
from meshwright.economy.tiers import DEFAULT_TIERS, TierLevel, TierTable
from meshwright.mesh import paging
from meshwright.mesh.context import caller
from meshwright.mesh.errors import FieldViolation, InvalidArgument, NotFound
from meshwright.mesh.validation import check_id, check_principal

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_VOTING_PERIOD_S = 10 * 366 * 86_400.0
"""Ten years: keeps voting_end_time well inside Timestamp's range."""


def _raise_if(violations: list[FieldViolation]) -> None:
    if violations:
        fields = ", ".join(v.field for v in violations)
        raise InvalidArgument(f"invalid request: {fields}", violations=violations)


class Economy:
    """Accounts, transfers, stakes, escrows and governance over a ``LedgerStore``."""

    def __init__(
        self,
        store: LedgerStore,
        *,
        tiers: TierTable = DEFAULT_TIERS,
        default_voting_period_s: float = 3600.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < default_voting_period_s <= MAX_VOTING_PERIOD_S:
            raise ValueError("default_voting_period_s must be > 0 and at most ten years")
        self.store: LedgerStore = store
        self.tiers = tiers
        self.default_voting_period_s = default_voting_period_s
        self._clock = clock

    def tier_of(self, account: Account) -> TierLevel:
        """The tier and reward multiplier the account's stake earns."""
        return self.tiers.level_for(account.staked)

    # Accounts ------------------------------------------------------------

    async def create_account(
        self,
        account_id: str,
        *,
        display_name: str = "",
        initial_balance: int = 0,
        request_id: str = "",
        owner: str = "",
    ) -> Account:
        """Open an account, minting ``initial_balance`` into it.

        It belongs to ``owner`` when given (policy lets only admins and mesh
        services name someone else), else to the caller.
        """
        violations = check_principal(owner, "owner")
        if not owner:
            who = caller()
            owner = "" if who is None else who.name
            if check_principal(owner, "owner"):
                # The verifier takes any 1-128 character subject; an owner must be a
                # clean "role:subject" (no whitespace) to be compared and shown safely.
                violations = [
                    FieldViolation(
                        "owner",
                        f"the caller {owner!r} cannot own an account: an owner is "
                        "'role:subject' with no whitespace, the subject not starting with ':'",
                    )
                ]
        _raise_if(
            check_id(account_id, "account_id")
            + violations
            + _checks.text(display_name, "display_name", _checks.MAX_NAME)
            + _checks.non_negative(initial_balance, "initial_balance")
            + _checks.request_id(request_id)
        )
        created = await self.store.create_account(
            account_id=account_id,
            display_name=display_name,
            initial_balance=initial_balance,
            transaction_id=new_id("tx"),
            now=self._clock(),
            idem=idempotency_key(
                request_id, "CreateAccount", account_id, display_name, initial_balance, owner
            ),
            owner=owner,
        )
        return created.account

    async def owner_of(self, account_id: str) -> str | None:
        """The owner of an account, None if there is none by that id (policy lookups)."""
        if check_id(account_id, "account_id"):
            return None
        account = await self.store.get_account(account_id)
        return None if account is None else account.owner

    async def get_account(self, account_id: str) -> Account:
        """The account. NOT_FOUND if unknown."""
        _raise_if(check_id(account_id, "account_id"))
        account = await self.store.get_account(account_id)
        if account is None:
            raise NotFound(f"account {account_id!r} not found", metadata={"account_id": account_id})
        return account

    async def transfer(
        self,
        from_account_id: str,
        to_account_id: str,
        amount: int,
        *,
        memo: str = "",
        request_id: str = "",
    ) -> Transferred:
        """Move ``amount`` between two accounts' balances."""
        violations = check_id(from_account_id, "from_account_id") + check_id(
            to_account_id, "to_account_id"
        )
        if from_account_id and from_account_id == to_account_id:
            violations.append(FieldViolation("to_account_id", "must differ from from_account_id"))
        _raise_if(
            violations
            + _checks.positive_amount(amount, "amount")
            + _checks.text(memo, "memo", _checks.MAX_MEMO)
            + _checks.request_id(request_id)
        )
        return await self.store.transfer(
            from_account_id=from_account_id,
            to_account_id=to_account_id,
            amount=amount,
            memo=memo,
            transaction_id=new_id("tx"),
            now=self._clock(),
            idem=idempotency_key(
                request_id, "Transfer", from_account_id, to_account_id, amount, memo
            ),
        )

    async def list_transactions(
        self, account_id: str, *, page_size: int = 0, page_token: str = ""
    ) -> TransactionPage:
        """The account's ledger entries, newest first, one page at a time."""
        violations = check_id(account_id, "account_id")
        limit = 0
        try:
            limit = paging.page_size(page_size, default=DEFAULT_PAGE_SIZE, maximum=MAX_PAGE_SIZE)
        except InvalidArgument as err:
            violations.extend(err.violations)
        before_seq: int | None = None
        try:
            before_seq = _seq_from_token(page_token)
        except InvalidArgument as err:
            violations.extend(err.violations)
        _raise_if(violations)
        # One extra entry tells whether another page follows.
        found = await self.store.list_transactions(
            account_id, before_seq=before_seq, limit=limit + 1
        )
        if found is None:
            raise NotFound(f"account {account_id!r} not found", metadata={"account_id": account_id})
        page = found[:limit]
        more = len(found) > limit
        token = paging.encode_page_token(str(page[-1].seq)) if more else ""
        return TransactionPage(page, token)

    # Stake ---------------------------------------------------------------

    async def stake(self, account_id: str, amount: int, *, request_id: str = "") -> StakeChanged:
        """Lock ``amount`` of the balance as stake."""
        _raise_if(
            check_id(account_id, "account_id")
            + _checks.positive_amount(amount, "amount")
            + _checks.request_id(request_id)
        )
        return await self.store.stake(
            account_id=account_id,
            amount=amount,
            transaction_id=new_id("tx"),
            now=self._clock(),
            idem=idempotency_key(request_id, "Stake", account_id, amount),
        )

    async def unstake(self, account_id: str, amount: int, *, request_id: str = "") -> StakeChanged:
        """Return ``amount`` of stake to the balance."""
        _raise_if(
            check_id(account_id, "account_id")
            + _checks.positive_amount(amount, "amount")
            + _checks.request_id(request_id)
        )
        return await self.store.unstake(
            account_id=account_id,
            amount=amount,
            transaction_id=new_id("tx"),
            now=self._clock(),
            idem=idempotency_key(request_id, "Unstake", account_id, amount),
        )

    # Escrow --------------------------------------------------------------

    async def open_escrow(
        self,
        payer_account_id: str,
        amount: int,
        *,
        escrow_id: str = "",
        reference: str = "",
        request_id: str = "",
    ) -> EscrowMoved:
        """Move ``amount`` of the payer's balance into a new escrow (id generated if empty)."""
        _raise_if(
            check_id(escrow_id, "escrow_id", required=False)
            + check_id(payer_account_id, "payer_account_id")
            + _checks.positive_amount(amount, "amount")
            + _checks.text(reference, "reference", _checks.MAX_MEMO)
            + _checks.request_id(request_id)
        )
        return await self.store.open_escrow(
            escrow_id=escrow_id or new_id("esc"),
            payer_account_id=payer_account_id,
            amount=amount,
            reference=reference,
            transaction_id=new_id("tx"),
            now=self._clock(),
            # The requested id, not the generated one: a retry must match.
            idem=idempotency_key(
                request_id, "OpenEscrow", escrow_id, payer_account_id, amount, reference
            ),
        )

    async def capture_escrow(
        self,
        escrow_id: str,
        payee_account_id: str,
        amount: int,
        *,
        memo: str = "",
        request_id: str = "",
    ) -> EscrowMoved:
        """Pay ``amount`` out of an open escrow to the payee (the per-task hot path)."""
        _raise_if(
            check_id(escrow_id, "escrow_id")
            + check_id(payee_account_id, "payee_account_id")
            + _checks.positive_amount(amount, "amount")
            + _checks.text(memo, "memo", _checks.MAX_MEMO)
            + _checks.request_id(request_id)
        )
        return await self.store.capture_escrow(
            escrow_id=escrow_id,
            payee_account_id=payee_account_id,
            amount=amount,
            memo=memo,
            transaction_id=new_id("tx"),
            now=self._clock(),
            idem=idempotency_key(
                request_id, "CaptureEscrow", escrow_id, payee_account_id, amount, memo
            ),
        )

    async def release_escrow(self, escrow_id: str, *, request_id: str = "") -> EscrowReleased:
        """Refund what is left to the payer and close; a closed escrow comes back unchanged."""
        _raise_if(check_id(escrow_id, "escrow_id") + _checks.request_id(request_id))
        return await self.store.release_escrow(
            escrow_id=escrow_id,
            transaction_id=new_id("tx"),
            now=self._clock(),
            idem=idempotency_key(request_id, "ReleaseEscrow", escrow_id),
        )

    async def get_escrow(self, escrow_id: str) -> Escrow:
        """The escrow. NOT_FOUND if unknown (no RPC yet; for in-process callers)."""
        _raise_if(check_id(escrow_id, "escrow_id"))
        escrow = await self.store.get_escrow(escrow_id)
        if escrow is None:
            raise NotFound(f"escrow {escrow_id!r} not found", metadata={"escrow_id": escrow_id})
        return escrow

    # Governance ----------------------------------------------------------

    async def create_proposal(
        self,
        proposer_account_id: str,
        title: str,
        *,
        description: str = "",
        voting_period_s: float | None = None,
        quorum: int = 0,
        request_id: str = "",
    ) -> Proposal:
        """Open a vote lasting ``voting_period_s`` (the default when None)."""
        violations = (
            check_id(proposer_account_id, "proposer_account_id")
            + _checks.text(title, "title", _checks.MAX_NAME, required=True)
            + _checks.text(description, "description", _checks.MAX_DESCRIPTION)
        )
        period = self.default_voting_period_s if voting_period_s is None else voting_period_s
        if not (math.isfinite(period) and 0 < period <= MAX_VOTING_PERIOD_S):
            violations.append(
                FieldViolation("voting_period", "must be positive and at most ten years")
            )
        _raise_if(
            violations + _checks.non_negative(quorum, "quorum") + _checks.request_id(request_id)
        )
        now = self._clock()
        return await self.store.create_proposal(
            proposal_id=new_id("prop"),
            proposer_account_id=proposer_account_id,
            title=title,
            description=description,
            quorum=quorum,
            voting_end_time=now + period,
            now=now,
            idem=idempotency_key(
                request_id,
                "CreateProposal",
                proposer_account_id,
                title,
                description,
                voting_period_s,
                quorum,
            ),
        )

    async def cast_vote(
        self,
        proposal_id: str,
        voter_account_id: str,
        choice: VoteChoice | int,
        *,
        request_id: str = "",
    ) -> Proposal:
        """Record the voter's stake as the weight of ``choice``; a re-vote replaces the first."""
        violations = check_id(proposal_id, "proposal_id") + check_id(
            voter_account_id, "voter_account_id"
        )
        if choice not in VoteChoice._value2member_map_:
            violations.append(FieldViolation("choice", "must be YES, NO or ABSTAIN"))
        _raise_if(violations + _checks.request_id(request_id))
        vote = VoteChoice(choice)
        return await self.store.cast_vote(
            proposal_id=proposal_id,
            voter_account_id=voter_account_id,
            choice=vote,
            now=self._clock(),
            idem=idempotency_key(request_id, "CastVote", proposal_id, voter_account_id, int(vote)),
        )

    async def get_proposal(self, proposal_id: str) -> Proposal:
        """The proposal as it stands now (decided once past its end). NOT_FOUND if unknown."""
        _raise_if(check_id(proposal_id, "proposal_id"))
        proposal = await self.store.get_proposal(proposal_id)
        if proposal is None:
            raise NotFound(
                f"proposal {proposal_id!r} not found", metadata={"proposal_id": proposal_id}
            )
        return governance.as_of(proposal, self._clock())

    async def close_proposal(self, proposal_id: str) -> Proposal:
        """Decide a proposal whose voting window has ended; a decided one comes back unchanged.

        Only an admin (or code outside any call, which is the mesh itself) may
        close before the window ends; that close is recorded as early, with who
        did it. Anyone else gets VOTING_OPEN, so nobody can end a vote the moment
        it leans their way.
        """
        _raise_if(check_id(proposal_id, "proposal_id"))
        who = caller()
        early_by: str | None = None
        if who is None:
            early_by = INTERNAL
        elif who.is_admin:
            early_by = who.name
        return await self.store.close_proposal(
            proposal_id=proposal_id, now=self._clock(), early_by=early_by
        )


def _seq_from_token(token: str) -> int | None:
    return paging.decode_position_token(token)

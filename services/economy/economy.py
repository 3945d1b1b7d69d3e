"""``Economy``: the domain API the servicer (and in-process callers) use.

Every rule of the economy is here, once, whatever the backend: a method
validates the shape of its inputs (naming every bad field at once), reads what
the rule needs, and hands the kernel ONE plan (``meshwright.economy.kernel``)
that checks what it read is still true, moves the money, writes the records,
records the transaction and the idempotency key, all or nothing. A plan whose
guarded read went stale is refused with ``CONFLICT`` and planned again from a
fresh read, a bounded number of times.

It knows nothing of gRPC or protobuf.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

from meshwright.economy import _checks, _records, governance
from meshwright.economy._records import (
    ACCOUNTS,
    ESCROWS,
    OPEN_ESCROWS,
    OPEN_PROPOSALS,
    PARAMS,
    PROPOSALS,
    RESERVED_PREFIXES,
    REWARDS,
    STAKERS,
    SYSTEM_ACCOUNTS,
    TREASURY,
    UNBONDING,
    acct,
    num,
)
from meshwright.economy.errors import (
    EscrowClosed,
    EscrowExpired,
    LedgerContended,
    MintLimitExceeded,
    StakeLocked,
    StakeRequired,
    TaskAlreadyPaid,
    VotingOpen,
)
from meshwright.economy.idempotency import fingerprint, request_key
from meshwright.economy.ids import new_id
from meshwright.economy.kernel import (
    ASSETS,
    CONFLICT,
    DEFAULT_IDEMPOTENCY_TTL_S,
    IDEM_MISMATCH,
    ISSUANCE,
    NOT_FOUND,
    Absent,
    Add,
    Check,
    Committed,
    Delete,
    Entry,
    Exists,
    FieldIs,
    Idem,
    IndexAdd,
    IndexRemove,
    LedgerStore,
    Move,
    Plan,
    Put,
    Refused,
    Write,
)
from meshwright.economy.model import (
    INT64_MAX,
    INTERNAL,
    Account,
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
from meshwright.economy.params import MAX_PERIOD_S, ParameterChange, Params
from meshwright.economy.rewards import pro_rata
from meshwright.economy.tiers import BPS_ONE, TierTable
from meshwright.mesh import paging
from meshwright.mesh.context import caller
from meshwright.mesh.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    MeshError,
    NotFound,
)
from meshwright.mesh.timeutil import timestamp
from meshwright.mesh.validation import check_id, check_principal

log = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_VOTING_PERIOD_S = 10 * 366 * 86_400.0
"""Ten years: keeps voting_end_time well inside Timestamp's range."""
MAX_ATTEMPTS = 32
"""Plans of one call refused as stale before it gives up with LEDGER_CONTENDED."""
SCAN_LIMIT = 10_000
"""Entries one filtered listing call examines at most (it returns a shorter page and a token)."""
SWEEP_BATCH = 100
"""Escrows, unbonding entries or proposals one maintenance pass settles per kind."""

T = TypeVar("T")


def _raise_if(violations: list[FieldViolation]) -> None:
    if violations:
        fields = ", ".join(v.field for v in violations)
        raise InvalidArgument(f"invalid request: {fields}", violations=violations)


def _user_id(value: str, field: str, *, required: bool = True) -> list[FieldViolation]:
    """A client or agent account id: a mesh id outside the ledger's reserved prefixes."""
    found = check_id(value, field, required=required)
    if not found and value.startswith(RESERVED_PREFIXES):
        found = [
            FieldViolation(
                field,
                f"ids starting with {', '.join(repr(p) for p in RESERVED_PREFIXES)} "
                "belong to the ledger's own accounts",
            )
        ]
    return found


def _asset(value: Asset | int | None, field: str = "asset") -> tuple[Asset, list[FieldViolation]]:
    if value is None or value == 0:
        return Asset.CREDIT, []
    if value not in Asset._value2member_map_:
        return Asset.CREDIT, [FieldViolation(field, "must be CREDIT or GOV")]
    return Asset(value), []


def _caller_name() -> str:
    who = caller()
    return INTERNAL if who is None else who.name


def _idem(request_id: str, operation: str, *params: object) -> Idem | None:
    if not request_id:
        return None
    return Idem(request_key(caller(), request_id), fingerprint(operation, *params))


def _page_limit(page_size: int, violations: list[FieldViolation]) -> int:
    try:
        return paging.page_size(page_size, default=DEFAULT_PAGE_SIZE, maximum=MAX_PAGE_SIZE)
    except InvalidArgument as err:
        violations.extend(err.violations)
        return 0


def _page_after(page_token: str, violations: list[FieldViolation]) -> str:
    try:
        return paging.decode_page_token(page_token) or ""
    except InvalidArgument as err:
        violations.extend(err.violations)
        return ""


_NOUNS = {"a": "account", "c": "capture", "e": "escrow", "p": "proposal", "u": "unbonding entry"}

_MESSAGES = {
    "INSUFFICIENT_FUNDS": "account {id!r} cannot cover the amount",
    "INSUFFICIENT_STAKE": "account {id!r} has less staked than the amount",
    "ESCROW_CLOSED": "escrow {id!r} is closed",
    "ESCROW_EXHAUSTED": "escrow {id!r} holds less than the amount",
    "PROPOSAL_CLOSED": "voting on proposal {id!r} has ended",
    "STAKE_REQUIRED": "account {id!r} has no stake",
    "PAYEE_NOT_OWNED": "account {id!r} does not belong to the principal that did the work",
}


def _subject(subject: str) -> tuple[str, str]:
    """(noun, id) of a refused record or account."""
    prefix, sep, rest = subject.partition(":")
    if sep and prefix in _NOUNS:
        subject, noun = rest, _NOUNS[prefix]
    else:
        noun = "account"
    if subject.startswith("escrow:"):
        return "escrow", subject.removeprefix("escrow:")
    for owned in ("stake:", "unbonding:"):
        if subject.startswith(owned):
            return "account", subject.removeprefix(owned)
    return noun, subject


def _error(refused: Refused) -> MeshError:
    """The domain error a refused plan stands for."""
    reason = refused.reason
    if reason == IDEM_MISMATCH:
        if refused.subject.startswith("cap:"):
            return TaskAlreadyPaid(
                "this task was already paid with another payee or amount",
                metadata={"capture": refused.subject.removeprefix("cap:")},
            )
        return InvalidArgument.field(
            "request_id", "was already used for a request with different parameters"
        )
    noun, ident = _subject(refused.subject)
    metadata = {f"{noun.replace(' ', '_')}_id": ident}
    if reason == NOT_FOUND:
        return NotFound(f"{noun} {ident!r} not found", metadata=metadata)
    if reason == "ALREADY_EXISTS":
        return AlreadyExists(f"{noun} {ident!r} already exists", metadata=metadata)
    cls = MeshError.reasons().get(reason, FailedPrecondition)
    message = _MESSAGES.get(reason, f"{reason.lower().replace('_', ' ')}: {{id!r}}")
    return cls(message.format(id=ident), reason=reason, metadata=metadata)


class Economy:
    """Accounts, transfers, stakes, escrows, rewards and governance over a ledger kernel."""

    def __init__(
        self,
        store: LedgerStore,
        *,
        params: Params | None = None,
        default_voting_period_s: float = 3600.0,
        idempotency_ttl_s: float = DEFAULT_IDEMPOTENCY_TTL_S,
        maintenance_interval_s: float = 1.0,
        params_refresh_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 < default_voting_period_s <= MAX_VOTING_PERIOD_S:
            raise ValueError("default_voting_period_s must be > 0 and at most ten years")
        if not idempotency_ttl_s > 0:
            raise ValueError("idempotency_ttl_s must be > 0")
        self.store: LedgerStore = store
        self.initial_params = params or Params()
        """What a fresh ledger starts with; afterwards the ledger's stored parameters rule."""
        self.default_voting_period_s = default_voting_period_s
        self.idempotency_ttl_s = idempotency_ttl_s
        self.maintenance_interval_s = maintenance_interval_s
        self._params_refresh_s = params_refresh_s
        self._clock = clock
        self._params: Params | None = None
        self._params_read = 0.0
        self._maintainer: asyncio.Task[None] | None = None

    # The machinery -----------------------------------------------------------

    async def parameters(self, *, fresh: bool = False) -> Params:
        """The ledger's parameters (cached for ``params_refresh_s``; ``fresh`` re-reads)."""
        now = time.monotonic()
        if (
            not fresh
            and self._params is not None
            and now - self._params_read < self._params_refresh_s
        ):
            return self._params
        row = (await self.store.read([PARAMS]))[PARAMS]
        if not row:
            await self._bootstrap()
            row = (await self.store.read([PARAMS]))[PARAMS]
        self._params = Params.from_json(row["json"], int(row["version"]))
        self._params_read = now
        return self._params

    async def _bootstrap(self) -> None:
        """Write the initial parameters and the system accounts into an empty ledger."""
        now = self._clock()
        writes: list[Write] = [Put(PARAMS, {"json": self.initial_params.to_json(), "version": "1"})]
        for account_id, kind in SYSTEM_ACCOUNTS.items():
            writes += _new_account(account_id, kind, owner="", name=account_id, now=now)
        with contextlib.suppress(Refused):  # another replica bootstrapped first
            await self.store.commit(Plan(checks=[Absent(PARAMS)], writes=writes))

    def _idem(self, request_id: str, operation: str, *params: object) -> Idem | None:
        idem = _idem(request_id, operation, *params)
        if idem is None or self.idempotency_ttl_s == idem.ttl_s:
            return idem
        return Idem(idem.key, idem.fingerprint, self.idempotency_ttl_s)

    async def _run(self, build: Callable[[Params], Awaitable[Plan | None]]) -> Committed | None:
        """Plan and commit, planning again while a guarded read went stale.

        ``build`` returns None when there is nothing to commit (the caller reads
        the outcome itself).
        """
        for attempt in range(MAX_ATTEMPTS):
            params = await self.parameters(fresh=attempt > 0)
            plan = await build(params)
            if plan is None:
                return None
            try:
                return await self.store.commit(plan)
            except Refused as refused:
                if refused.reason != CONFLICT:
                    raise _error(refused) from None
                if attempt:
                    await asyncio.sleep(min(0.001 * 2**attempt, 0.05))
        raise LedgerContended(
            f"the ledger changed under this request {MAX_ATTEMPTS} times in a row; retry it"
        )

    async def _accounts(self, account_ids: Sequence[str]) -> dict[str, Account | None]:
        """Views of accounts in one read (None for unknown ones)."""
        names = [name for a in account_ids for name in _records.user_records(a)]
        rows = await self.store.read(names)
        tiers = (await self.parameters()).tiers
        return {a: _view(a, rows, tiers) if rows[acct(a)] else None for a in account_ids}

    async def _after(self, committed: Committed, account_id: str) -> Account:
        """An account's view from a commit's read-back records."""
        return _view(account_id, committed.records, (await self.parameters()).tiers)

    # Accounts ------------------------------------------------------------

    async def create_account(
        self,
        account_id: str,
        *,
        display_name: str = "",
        initial_balance: int = 0,
        initial_gov_balance: int = 0,
        request_id: str = "",
        owner: str = "",
    ) -> Account:
        """Open an account, minting ``initial_balance`` CREDIT and ``initial_gov_balance`` GOV.

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
            _user_id(account_id, "account_id")
            + violations
            + _checks.text(display_name, "display_name", _checks.MAX_NAME)
            + _checks.non_negative(initial_balance, "initial_balance")
            + _checks.non_negative(initial_gov_balance, "initial_gov_balance")
            + _checks.request_id(request_id)
        )
        now = self._clock()
        tx_id = new_id("tx")
        mints = [(Asset.CREDIT, initial_balance), (Asset.GOV, initial_gov_balance)]
        idem = self._idem(
            request_id, "CreateAccount", account_id, display_name, initial_balance,
            initial_gov_balance, owner,
        )  # fmt: skip

        async def build(params: Params) -> Plan:
            checks: list[Check] = [Absent(acct(account_id), "ALREADY_EXISTS")]
            checks += await self._supply_checks([(a, n) for a, n in mints if n > 0])
            moves = [Move(ISSUANCE, account_id, a.name, n) for a, n in mints if n > 0]
            return Plan(
                checks=checks,
                moves=moves,
                writes=_new_account(account_id, AccountKind.USER, owner, display_name, now),
                entry=self._entry(tx_id, TransactionKind.MINT, now, request_id) if moves else None,
                idem=idem,
                read_back=_records.user_records(account_id),
            )

        committed = await self._run(build)
        assert committed is not None
        return await self._after(committed, account_id)

    async def _supply_checks(self, mints: Sequence[tuple[Asset, int]]) -> list[Check]:
        """Guards keeping each asset's supply inside int64 (MINT_LIMIT_EXCEEDED past it)."""
        if not mints:
            return []
        issuance = (await self.store.read([acct(ISSUANCE)]))[acct(ISSUANCE)]
        checks: list[Check] = []
        for asset, amount in mints:
            held = num(issuance, asset.name)  # minus the supply
            if amount > INT64_MAX + held:
                raise MintLimitExceeded(
                    f"minting this would push the {asset.name} supply past int64"
                )
            checks.append(FieldIs(acct(ISSUANCE), asset.name, issuance.get(asset.name, "")))
        return checks

    def _entry(
        self,
        tx_id: str,
        kind: TransactionKind,
        now: float,
        request_id: str = "",
        *,
        memo: str = "",
        also_log: Sequence[str] = (),
        **refs: str,
    ) -> Entry:
        return Entry(
            transaction_id=tx_id,
            kind=kind.name,
            time=now,
            request_id=request_id,
            caller=_caller_name(),
            memo=memo,
            refs={k: v for k, v in refs.items() if v},
            also_log=also_log,
        )

    async def owner_of(self, account_id: str) -> str | None:
        """The owner of an account, None if there is none by that id (policy lookups)."""
        if check_id(account_id, "account_id"):
            return None
        row = (await self.store.read([acct(account_id)]))[acct(account_id)]
        return row.get("owner", "") if row else None

    async def escrow_owner(self, escrow_id: str) -> str | None:
        """The owner of an escrow's payer, None if there is no escrow by that id."""
        if check_id(escrow_id, "escrow_id"):
            return None
        row = (await self.store.read([_records.escrow_rec(escrow_id)]))[
            _records.escrow_rec(escrow_id)
        ]
        return row.get("owner", "") if row else None

    async def get_account(self, account_id: str) -> Account:
        """The account (a client's or agent's, or one of the ledger's own). NOT_FOUND if unknown."""
        _raise_if(check_id(account_id, "account_id"))
        account = (await self._accounts([account_id]))[account_id]
        if account is None:
            raise NotFound(f"account {account_id!r} not found", metadata={"account_id": account_id})
        return account

    async def list_accounts(
        self,
        *,
        owner: str = "",
        kind: AccountKind | int | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[Account]:
        """Accounts by id, optionally of one owner and kind.

        Callers other than admins and mesh services list only their own (an
        empty ``owner`` stands for the caller).
        """
        violations = check_principal(owner, "owner")
        if kind not in (None, 0) and kind not in AccountKind._value2member_map_:
            violations.append(FieldViolation("kind", "is not an account kind"))
        limit = _page_limit(page_size, violations)
        after = _page_after(page_token, violations)
        _raise_if(violations)
        who = caller()
        if not owner and who is not None and not who.is_trusted:
            owner = who.name
        want = AccountKind(kind) if kind else None
        index = _records.owner_index(owner) if owner else ACCOUNTS

        async def load(ids: list[str]) -> list[Account]:
            found = await self._accounts(ids)
            return [a for a in found.values() if a is not None and (want is None or a.kind == want)]

        return await self._lex_page(index, after, limit, load)

    async def _lex_page(
        self,
        index: str,
        after: str,
        limit: int,
        load: Callable[[list[str]], Awaitable[list[T]]],
        *,
        key: Callable[[T], str] | None = None,
        reverse: bool = False,
    ) -> Page[T]:
        """A page of ``index`` members loaded and filtered by ``load``, with a token."""
        items: list[T] = []
        seen = 0
        cursor = after
        while len(items) < limit and seen < SCAN_LIMIT:
            ids = await self.store.index_page(
                index, after=cursor, limit=min(limit - len(items), 256) + 1, reverse=reverse
            )
            if not ids:
                return Page(items)
            batch, more = (
                ids[: min(limit - len(items), 256)],
                len(ids) > min(limit - len(items), 256),
            )
            seen += len(batch)
            items += await load(batch)
            cursor = batch[-1]
            if not more:
                return Page(items[:limit])
        return Page(items[:limit], paging.encode_page_token(cursor))

    async def mint(
        self,
        account_id: str,
        amount: int,
        *,
        asset: Asset | int = Asset.CREDIT,
        memo: str = "",
        request_id: str = "",
    ) -> Minted:
        """Create ``amount`` of ``asset`` in an account (a user's, the rewards pool or the
        treasury). Policy lets only admins mint."""
        the_asset, violations = _asset(asset)
        if account_id not in (REWARDS, TREASURY):
            violations += _user_id(account_id, "account_id")
        _raise_if(
            violations
            + _checks.positive_amount(amount, "amount")
            + _checks.text(memo, "memo", _checks.MAX_MEMO)
            + _checks.request_id(request_id)
        )
        now = self._clock()
        tx_id = new_id("tx")
        idem = self._idem(request_id, "Mint", account_id, the_asset.name, amount, memo)

        async def build(params: Params) -> Plan:
            return Plan(
                checks=await self._supply_checks([(the_asset, amount)]),
                moves=[Move(ISSUANCE, account_id, the_asset.name, amount)],
                entry=self._entry(tx_id, TransactionKind.MINT, now, request_id, memo=memo),
                idem=idem,
                read_back=_records.user_records(account_id),
            )

        committed = await self._run(build)
        assert committed is not None and committed.entry is not None
        return Minted(
            await self._after(committed, account_id), _records.transaction_of(committed.entry)
        )

    async def transfer(
        self,
        from_account_id: str,
        to_account_id: str,
        amount: int,
        *,
        asset: Asset | int = Asset.CREDIT,
        memo: str = "",
        request_id: str = "",
    ) -> Transferred:
        """Move ``amount`` of ``asset`` between two accounts' balances.

        The sender also pays the ``transfer_fee_bps`` parameter's fee on CREDIT
        (rounded down) to the treasury. Anyone may pay into the rewards pool.
        """
        the_asset, violations = _asset(asset)
        violations = _user_id(from_account_id, "from_account_id") + violations
        if to_account_id != REWARDS:
            violations += _user_id(to_account_id, "to_account_id")
        if from_account_id and from_account_id == to_account_id:
            violations.append(FieldViolation("to_account_id", "must differ from from_account_id"))
        _raise_if(
            violations
            + _checks.positive_amount(amount, "amount")
            + _checks.text(memo, "memo", _checks.MAX_MEMO)
            + _checks.request_id(request_id)
        )
        now = self._clock()
        tx_id = new_id("tx")
        idem = self._idem(
            request_id, "Transfer", from_account_id, to_account_id, amount, memo, the_asset.name
        )

        async def build(params: Params) -> Plan:
            moves = [Move(from_account_id, to_account_id, the_asset.name, amount)]
            fee = amount * params.transfer_fee_bps // BPS_ONE if the_asset is Asset.CREDIT else 0
            if fee:
                moves.append(Move(from_account_id, TREASURY, the_asset.name, fee))
            return Plan(
                checks=[_version(params)],
                moves=moves,
                entry=self._entry(tx_id, TransactionKind.TRANSFER, now, request_id, memo=memo),
                idem=idem,
                read_back=[
                    *_records.user_records(from_account_id),
                    *_records.user_records(to_account_id),
                ],
            )

        committed = await self._run(build)
        assert committed is not None and committed.entry is not None
        return Transferred(
            _records.transaction_of(committed.entry),
            await self._after(committed, from_account_id),
            await self._after(committed, to_account_id),
        )

    async def list_transactions(
        self,
        account_id: str,
        *,
        asset: Asset | int | None = None,
        kind: TransactionKind | int | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> TransactionPage:
        """The account's transactions, newest first, optionally of one asset and kind."""
        violations = check_id(account_id, "account_id")
        want_asset: Asset | None = None
        if asset not in (None, 0):
            want_asset, more = _asset(asset)
            violations += more
        if kind not in (None, 0) and kind not in TransactionKind._value2member_map_:
            violations.append(FieldViolation("kind", "is not a transaction kind"))
        want_kind = TransactionKind(kind) if kind else None
        limit = _page_limit(page_size, violations)
        before: int | None = None
        try:
            before = paging.decode_position_token(page_token)
        except InvalidArgument as err:
            violations.extend(err.violations)
        _raise_if(violations)
        if not (await self.store.read([acct(account_id)]))[acct(account_id)]:
            raise NotFound(f"account {account_id!r} not found", metadata={"account_id": account_id})
        found: list[Transaction] = []
        seen = 0
        while seen < SCAN_LIMIT:
            batch = await self.store.log_page(account_id, before_seq=before, limit=limit + 1)
            for entry in batch:
                if len(found) == limit:
                    # Another entry exists past a full page: the token resumes after the page.
                    return TransactionPage(found, paging.encode_page_token(str(found[-1].seq)))
                seen += 1
                before = entry.seq
                tx = _records.transaction_of(entry)
                if want_kind is not None and tx.kind != want_kind:
                    continue
                if want_asset is not None and all(p.asset != want_asset for p in tx.postings):
                    continue
                found.append(tx)
            if len(batch) <= limit:
                return TransactionPage(found, "")
        # Examined enough for one call: a short page, and a token that resumes the scan.
        return TransactionPage(found, paging.encode_page_token(str(before)))

    # Stake ---------------------------------------------------------------

    async def stake(self, account_id: str, amount: int, *, request_id: str = "") -> StakeChanged:
        """Lock ``amount`` of the account's GOV as stake (in ``stake:<id>``)."""
        _raise_if(
            _user_id(account_id, "account_id")
            + _checks.positive_amount(amount, "amount")
            + _checks.request_id(request_id)
        )
        now = self._clock()
        tx_id = new_id("tx")
        idem = self._idem(request_id, "Stake", account_id, amount)
        stake_id = _records.stake_account(account_id)

        async def build(params: Params) -> Plan:
            rows = await self.store.read([acct(account_id), acct(stake_id)])
            checks: list[Check] = [Exists(acct(account_id), NOT_FOUND)]
            writes: list[Write] = [IndexAdd(STAKERS, account_id)]
            if not rows[acct(stake_id)]:
                owner = rows[acct(account_id)].get("owner", "")
                checks.append(Absent(acct(stake_id)))
                writes += _new_account(stake_id, AccountKind.STAKE, owner, stake_id, now)
            return Plan(
                checks=checks,
                moves=[Move(account_id, stake_id, Asset.GOV.name, amount)],
                writes=writes,
                entry=self._entry(tx_id, TransactionKind.STAKE, now, request_id),
                idem=idem,
                read_back=_records.user_records(account_id),
            )

        committed = await self._run(build)
        assert committed is not None and committed.entry is not None
        return StakeChanged(
            await self._after(committed, account_id), _records.transaction_of(committed.entry)
        )

    async def _locked_stake(self, account_id: str, now: float) -> int:
        """Stake behind the account's votes on proposals still open (the largest such vote)."""
        proposals = await self.store.index_page(
            _records.votes_index(account_id), limit=MAX_PAGE_SIZE
        )
        if not proposals:
            return 0
        names = [_records.proposal_rec(p) for p in proposals] + [
            _records.vote_rec(p, account_id) for p in proposals
        ]
        rows = await self.store.read(names)
        locked = 0
        for p in proposals:
            proposal = _records.proposal_of(p, rows[_records.proposal_rec(p)])
            if governance.as_of(proposal, now).state is ProposalState.OPEN:
                locked = max(locked, num(rows[_records.vote_rec(p, account_id)], "weight"))
        return locked

    async def unstake(self, account_id: str, amount: int, *, request_id: str = "") -> StakeChanged:
        """Return ``amount`` of stake: at once, or after the unbonding period (``unbonding:<id>``).

        Refused (STAKE_LOCKED) below the stake that backs the account's votes on
        proposals still open, so one stake cannot vote twice through two accounts.
        """
        _raise_if(
            _user_id(account_id, "account_id")
            + _checks.positive_amount(amount, "amount")
            + _checks.request_id(request_id)
        )
        now = self._clock()
        tx_id = new_id("tx")
        entry_id = new_id("unb")
        idem = self._idem(request_id, "Unstake", account_id, amount)
        stake_id = _records.stake_account(account_id)
        unbonding_id = _records.unbonding_account(account_id)
        complete = 0.0

        async def build(params: Params) -> Plan:
            nonlocal complete
            rows = await self.store.read([acct(account_id), acct(stake_id), acct(unbonding_id)])
            if not rows[acct(account_id)]:
                raise NotFound(
                    f"account {account_id!r} not found", metadata={"account_id": account_id}
                )
            staked = num(rows[acct(stake_id)], Asset.GOV.name)
            if staked < amount:
                raise _error(Refused("INSUFFICIENT_STAKE", account_id))
            locked = await self._locked_stake(account_id, now)
            if staked - amount < locked:
                raise StakeLocked(
                    f"account {account_id!r} has {locked} of its {staked} staked backing votes "
                    f"on open proposals; at most {staked - locked} can be unstaked now",
                    metadata={"account_id": account_id, "locked": str(locked)},
                )
            checks: list[Check] = [
                _version(params),
                FieldIs(acct(account_id), "vv", rows[acct(account_id)].get("vv", "")),
                FieldIs(acct(stake_id), Asset.GOV.name, rows[acct(stake_id)].get("GOV", "")),
            ]
            writes: list[Write] = []
            if params.unbonding_period_s <= 0:
                moves = [Move(stake_id, account_id, Asset.GOV.name, amount, "INSUFFICIENT_STAKE")]
            else:
                complete = now + params.unbonding_period_s
                moves = [Move(stake_id, unbonding_id, Asset.GOV.name, amount, "INSUFFICIENT_STAKE")]
                if not rows[acct(unbonding_id)]:
                    owner = rows[acct(account_id)].get("owner", "")
                    checks.append(Absent(acct(unbonding_id)))
                    writes += _new_account(
                        unbonding_id, AccountKind.UNBONDING, owner, unbonding_id, now
                    )
                writes += [
                    Put(
                        _records.unbonding_rec(entry_id),
                        {"account": account_id, "amount": str(amount), "done": repr(complete)},
                    ),
                    IndexAdd(UNBONDING, entry_id, complete),
                ]
            return Plan(
                checks=checks,
                moves=moves,
                writes=writes,
                entry=self._entry(
                    tx_id,
                    TransactionKind.UNSTAKE,
                    now,
                    request_id,
                    also_log=[account_id],
                    unbonding_id=entry_id if complete else "",
                ),
                idem=idem,
                read_back=[*_records.user_records(account_id), _records.unbonding_rec(entry_id)],
            )

        committed = await self._run(build)
        assert committed is not None and committed.entry is not None
        unbonding: UnbondingEntry | None = None
        entry_row = committed.records.get(_records.unbonding_rec(entry_id), {})
        replayed_entry = committed.entry.refs.get("unbonding_id", "")
        if replayed_entry:
            row = (
                entry_row
                or (await self.store.read([_records.unbonding_rec(replayed_entry)]))[
                    _records.unbonding_rec(replayed_entry)
                ]
            )
            unbonding = UnbondingEntry(
                replayed_entry,
                account_id,
                amount,
                float(row["done"]) if row else committed.entry.time,
            )
        return StakeChanged(
            await self._after(committed, account_id),
            _records.transaction_of(committed.entry),
            unbonding,
        )

    async def _complete_unbonding(self, entry_id: str) -> bool:
        record = _records.unbonding_rec(entry_id)
        row = (await self.store.read([record]))[record]
        if not row:
            return False
        account_id = row["account"]
        now = self._clock()
        try:
            await self.store.commit(
                Plan(
                    checks=[Exists(record)],
                    moves=[
                        Move(
                            _records.unbonding_account(account_id),
                            account_id,
                            Asset.GOV.name,
                            int(row["amount"]),
                        )
                    ],
                    writes=[Delete(record), IndexRemove(UNBONDING, entry_id)],
                    entry=self._entry(
                        new_id("tx"), TransactionKind.UNBOND_COMPLETE, now, unbonding_id=entry_id
                    ),
                )
            )
        except Refused as refused:
            if refused.reason == CONFLICT:
                return False  # another replica completed it
            raise _error(refused) from None
        return True

    # Escrow --------------------------------------------------------------

    async def open_escrow(
        self,
        payer_account_id: str,
        amount: int,
        *,
        escrow_id: str = "",
        reference: str = "",
        ttl_s: float | None = None,
        request_id: str = "",
    ) -> EscrowMoved:
        """Move ``amount`` of the payer's CREDIT into a new escrow (id generated if empty).

        The escrow stays open for ``ttl_s`` (default: the ``escrow_ttl_s``
        parameter) after its last renewal or capture; then the economy releases
        it to the payer itself.
        """
        violations = (
            check_id(escrow_id, "escrow_id", required=False)
            + _user_id(payer_account_id, "payer_account_id")
            + _checks.positive_amount(amount, "amount")
            + _checks.text(reference, "reference", _checks.MAX_MEMO)
            + _checks.request_id(request_id)
        )
        violations += _ttl(ttl_s)
        _raise_if(violations)
        the_id = escrow_id or new_id("esc")
        now = self._clock()
        tx_id = new_id("tx")
        # The requested id, not the generated one: a retry must match.
        idem = self._idem(
            request_id, "OpenEscrow", escrow_id, payer_account_id, amount, reference, ttl_s
        )
        holder = _records.escrow_account(the_id)
        record = _records.escrow_rec(the_id)

        async def build(params: Params) -> Plan:
            ttl = params.escrow_ttl_s if ttl_s is None else ttl_s
            payer = (await self.store.read([acct(payer_account_id)]))[acct(payer_account_id)]
            owner = payer.get("owner", "")
            expires = now + ttl
            writes: list[Write] = [
                Put(
                    record,
                    {
                        "payer": payer_account_id,
                        "owner": owner,
                        "amount": str(amount),
                        "state": EscrowState.OPEN.name,
                        "ref": reference,
                        "ct": repr(now),
                        "exp": repr(expires),
                        "ttl": repr(ttl),
                    },
                ),
                *_new_account(holder, AccountKind.ESCROW, "", holder, now),
                Add(acct(payer_account_id), "escrowed", amount),
                IndexAdd(ESCROWS, the_id),
                IndexAdd(_records.escrow_owner_index(owner), the_id),
                IndexAdd(OPEN_ESCROWS, the_id, expires),
            ]
            return Plan(
                checks=[
                    _version(params),
                    Exists(acct(payer_account_id), NOT_FOUND),
                    Absent(record, "ALREADY_EXISTS"),
                ],
                moves=[Move(payer_account_id, holder, Asset.CREDIT.name, amount)],
                writes=writes,
                entry=self._entry(
                    tx_id,
                    TransactionKind.ESCROW_OPEN,
                    now,
                    request_id,
                    memo=reference,
                    escrow_id=the_id,
                ),
                idem=idem,
                read_back=[record],
            )

        committed = await self._run(build)
        assert committed is not None and committed.entry is not None
        opened = committed.entry.refs.get("escrow_id", the_id)
        return EscrowMoved(
            _records.escrow_of(opened, committed.records[_records.escrow_rec(opened)]),
            _records.transaction_of(committed.entry),
        )

    async def capture_escrow(
        self,
        escrow_id: str,
        payee_account_id: str,
        amount: int,
        *,
        memo: str = "",
        task_id: str = "",
        payee_owner: str = "",
        request_id: str = "",
    ) -> EscrowMoved:
        """Pay ``amount`` out of an open escrow to the payee (the per-task hot path).

        With ``payee_owner`` the payee account must belong to that principal
        (PAYEE_NOT_OWNED otherwise, and nothing moves): the engine names the agent
        that did the work, so an account someone opened under an agent's payout id
        before the agent did cannot collect its pay.

        With a ``task_id`` the task is paid once: a repeat with the same payee
        and amount replays the first capture, another one is TASK_ALREADY_PAID.
        On top of the price the payee gets its tier bonus (price x (multiplier -
        1)) and, once its streak of paid tasks reaches the threshold, the streak
        bonus, both from the rewards pool while it has funds, in the same
        transaction. The streak is the one read when the capture is planned
        (unguarded, so an agent's concurrent captures never conflict over it:
        two of them may both see the streak before either). A capture also
        extends the escrow's expiry by its ttl.
        """
        _raise_if(
            check_id(escrow_id, "escrow_id")
            + _user_id(payee_account_id, "payee_account_id")
            + _checks.positive_amount(amount, "amount")
            + _checks.text(memo, "memo", _checks.MAX_MEMO)
            + check_id(task_id, "task_id", required=False)
            + check_principal(payee_owner, "payee_owner")
            + _checks.request_id(request_id)
        )
        now = self._clock()
        tx_id = new_id("tx")
        record = _records.escrow_rec(escrow_id)
        if task_id:
            idem: Idem | None = Idem(
                f"cap:{escrow_id}:{task_id}",
                fingerprint("CaptureEscrow", payee_account_id, amount),
                self.idempotency_ttl_s,
            )
        else:
            idem = self._idem(
                request_id, "CaptureEscrow", escrow_id, payee_account_id, amount, memo
            )

        async def build(params: Params) -> Plan:
            payee_stake = acct(_records.stake_account(payee_account_id))
            rows = await self.store.read([record, acct(payee_account_id), payee_stake])
            escrow = rows[record]
            if not escrow:
                raise NotFound(f"escrow {escrow_id!r} not found", metadata={"escrow_id": escrow_id})
            _require_open(escrow_id, escrow, now)
            payer = escrow["payer"]
            level = params.tiers.level_for(num(rows[payee_stake], Asset.GOV.name))
            bonus = amount * max(level.multiplier_bps - BPS_ONE, 0) // BPS_ONE
            streak = num(rows[acct(payee_account_id)], "streak") + 1
            if params.streak_threshold and streak >= params.streak_threshold:
                bonus += amount * params.streak_bonus_bps // BPS_ONE
            checks: list[Check] = [
                _version(params),
                FieldIs(record, "state", EscrowState.OPEN.name),
            ]
            if payee_owner:
                checks.append(
                    FieldIs(acct(payee_account_id), "owner", payee_owner, "PAYEE_NOT_OWNED")
                )
            writes: list[Write] = [
                Add(record, "captured", amount),
                Add(record, "n", 1),
                Add(acct(payer), "escrowed", -amount),
                Add(acct(payee_account_id), "streak", 1),
            ]
            ttl = float(escrow.get("ttl") or params.escrow_ttl_s)
            writes += [
                Put(record, {"exp": repr(now + ttl)}),
                IndexAdd(OPEN_ESCROWS, escrow_id, now + ttl),
            ]
            if task_id:
                marker = _records.capture_rec(escrow_id, task_id)
                checks.append(Absent(marker, "TASK_ALREADY_PAID"))
                writes.append(Put(marker, {"payee": payee_account_id, "amount": str(amount)}))
            moves = [
                Move(
                    _records.escrow_account(escrow_id),
                    payee_account_id,
                    Asset.CREDIT.name,
                    amount,
                    "ESCROW_EXHAUSTED",
                )
            ]
            if bonus:
                moves.append(Move(REWARDS, payee_account_id, Asset.CREDIT.name, bonus, cap=True))
            return Plan(
                checks=checks,
                moves=moves,
                writes=writes,
                entry=self._entry(
                    tx_id,
                    TransactionKind.ESCROW_CAPTURE,
                    now,
                    request_id,
                    memo=memo,
                    escrow_id=escrow_id,
                    task_id=task_id,
                ),
                idem=idem,
                read_back=[record],
            )

        committed = await self._run(build)
        assert committed is not None and committed.entry is not None
        tx = _records.transaction_of(committed.entry)
        bonus = sum(
            p.amount for p in tx.postings[2:] if p.account_id == payee_account_id and p.amount > 0
        )
        return EscrowMoved(_records.escrow_of(escrow_id, committed.records[record]), tx, bonus)

    async def release_escrow(self, escrow_id: str, *, request_id: str = "") -> EscrowReleased:
        """Refund what is left to the payer and close; a closed escrow comes back unchanged."""
        _raise_if(check_id(escrow_id, "escrow_id") + _checks.request_id(request_id))
        released, _ = await self._settle(escrow_id, EscrowState.CLOSED, request_id)
        return released

    async def _settle(
        self, escrow_id: str, state: EscrowState, request_id: str = ""
    ) -> tuple[EscrowReleased, bool]:
        """Close (released by its workflow) or expire (by the economy) an open escrow."""
        now = self._clock()
        tx_id = new_id("tx")
        record = _records.escrow_rec(escrow_id)
        holder = _records.escrow_account(escrow_id)
        kind = (
            TransactionKind.ESCROW_RELEASE
            if state is EscrowState.CLOSED
            else TransactionKind.ESCROW_EXPIRE
        )
        idem = self._idem(request_id, "ReleaseEscrow", escrow_id)

        async def build(params: Params) -> Plan | None:
            rows = await self.store.read([record, acct(holder)])
            escrow = rows[record]
            if not escrow:
                raise NotFound(f"escrow {escrow_id!r} not found", metadata={"escrow_id": escrow_id})
            if escrow.get("state") != EscrowState.OPEN.name:
                return None
            if state is EscrowState.EXPIRED and float(escrow.get("exp") or 0) > now:
                return None  # renewed since it was found due
            held = num(rows[acct(holder)], Asset.CREDIT.name)
            payer = escrow["payer"]
            return Plan(
                checks=[
                    FieldIs(record, "state", EscrowState.OPEN.name),
                    FieldIs(record, "exp", escrow.get("exp", "")),
                    FieldIs(acct(holder), Asset.CREDIT.name, rows[acct(holder)].get("CREDIT", "")),
                ],
                moves=[Move(holder, payer, Asset.CREDIT.name, held)] if held else [],
                writes=[
                    Put(record, {"state": state.name, "closed": repr(now), "released": str(held)}),
                    Add(acct(payer), "escrowed", -held),
                    IndexRemove(OPEN_ESCROWS, escrow_id),
                ],
                entry=self._entry(
                    tx_id, kind, now, request_id, memo=escrow.get("ref", ""), escrow_id=escrow_id
                )
                if held
                else None,
                idem=idem,
                read_back=[record],
            )

        committed = await self._run(build)
        if committed is None:
            row = (await self.store.read([record]))[record]
            return EscrowReleased(_records.escrow_of(escrow_id, row), None), False
        tx = None if committed.entry is None else _records.transaction_of(committed.entry)
        released = EscrowReleased(_records.escrow_of(escrow_id, committed.records[record]), tx)
        return released, not committed.replayed

    async def renew_escrow(self, escrow_id: str, *, ttl_s: float | None = None) -> Escrow:
        """Push an open escrow's expiry to now + ``ttl_s`` (default: its own ttl)."""
        _raise_if(check_id(escrow_id, "escrow_id") + _ttl(ttl_s))
        now = self._clock()
        record = _records.escrow_rec(escrow_id)

        async def build(params: Params) -> Plan:
            escrow = (await self.store.read([record]))[record]
            if not escrow:
                raise NotFound(f"escrow {escrow_id!r} not found", metadata={"escrow_id": escrow_id})
            _require_open(escrow_id, escrow, now)
            ttl = float(escrow.get("ttl") or params.escrow_ttl_s) if ttl_s is None else ttl_s
            return Plan(
                checks=[FieldIs(record, "state", EscrowState.OPEN.name)],
                writes=[
                    Put(record, {"exp": repr(now + ttl), "ttl": repr(ttl)}),
                    IndexAdd(OPEN_ESCROWS, escrow_id, now + ttl),
                ],
                read_back=[record],
            )

        committed = await self._run(build)
        assert committed is not None
        return _records.escrow_of(escrow_id, committed.records[record])

    async def get_escrow(self, escrow_id: str) -> Escrow:
        """The escrow. NOT_FOUND if unknown."""
        _raise_if(check_id(escrow_id, "escrow_id"))
        row = (await self.store.read([_records.escrow_rec(escrow_id)]))[
            _records.escrow_rec(escrow_id)
        ]
        if not row:
            raise NotFound(f"escrow {escrow_id!r} not found", metadata={"escrow_id": escrow_id})
        return _records.escrow_of(escrow_id, row)

    async def list_escrows(
        self,
        *,
        owner: str = "",
        state: EscrowState | int | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[Escrow]:
        """Escrows by id, optionally of one payer owner and state (own only, as accounts)."""
        violations = check_principal(owner, "owner")
        if state not in (None, 0) and state not in EscrowState._value2member_map_:
            violations.append(FieldViolation("state", "is not an escrow state"))
        limit = _page_limit(page_size, violations)
        after = _page_after(page_token, violations)
        _raise_if(violations)
        who = caller()
        if not owner and who is not None and not who.is_trusted:
            owner = who.name
        want = EscrowState(state) if state else None
        index = _records.escrow_owner_index(owner) if owner else ESCROWS

        async def load(ids: list[str]) -> list[Escrow]:
            rows = await self.store.read([_records.escrow_rec(i) for i in ids])
            found = [_records.escrow_of(i, rows[_records.escrow_rec(i)]) for i in ids]
            return [e for e in found if want is None or e.state == want]

        return await self._lex_page(index, after, limit, load)

    async def report_task_failure(
        self, payee_account_id: str, *, escrow_id: str = "", task_id: str = ""
    ) -> Account:
        """An agent failed a task: its streak of paid tasks starts again from 0."""
        _raise_if(
            _user_id(payee_account_id, "payee_account_id")
            + check_id(escrow_id, "escrow_id", required=False)
            + check_id(task_id, "task_id", required=False)
        )
        committed = await self._run(
            _const(
                Plan(
                    checks=[Exists(acct(payee_account_id), NOT_FOUND)],
                    writes=[Put(acct(payee_account_id), {"streak": "0"})],
                    read_back=_records.user_records(payee_account_id),
                )
            )
        )
        assert committed is not None
        return await self._after(committed, payee_account_id)

    # Rewards -------------------------------------------------------------

    async def distribute_rewards(
        self, amount: int, *, memo: str = "", request_id: str = ""
    ) -> Distributed:
        """Pay ``amount`` CREDIT from the rewards pool to stakers, pro rata to stake x tier
        multiplier, exact to the minor unit (largest remainders, ties by account id).

        INSUFFICIENT_FUNDS (account ``system:rewards``) if the pool holds less.
        """
        _raise_if(
            _checks.positive_amount(amount, "amount")
            + _checks.text(memo, "memo", _checks.MAX_MEMO)
            + _checks.request_id(request_id)
        )
        return await self._distribute(
            amount,
            memo=memo,
            request_id=request_id,
            idem=self._idem(request_id, "Distribute", amount, memo),
        )

    async def _distribute(
        self,
        amount: int,
        *,
        memo: str,
        request_id: str = "",
        idem: Idem | None = None,
        period: str = "",
    ) -> Distributed:
        now = self._clock()
        tx_id = new_id("tx")
        recipients = 0

        async def build(params: Params) -> Plan | None:
            nonlocal recipients
            stakers: list[str] = []
            after = ""
            while batch := await self.store.index_page(STAKERS, after=after, limit=1000):
                stakers += batch
                after = batch[-1]
            names = [acct(_records.stake_account(s)) for s in stakers]
            marker = f"d:{period}"
            rows = await self.store.read([*names, acct(REWARDS), marker])
            pay = amount
            checks: list[Check] = [_version(params)]
            if period:  # scheduled: pay what the pool has, once per period
                if rows[marker]:
                    return None  # made by another pass or replica
                pay = min(amount, num(rows[acct(REWARDS)], Asset.CREDIT.name))
                checks += [
                    Absent(marker),
                    FieldIs(
                        acct(REWARDS), Asset.CREDIT.name, rows[acct(REWARDS)].get("CREDIT", "")
                    ),
                ]
            weights = []
            for staker, name in zip(stakers, names, strict=True):
                stake = num(rows[name], Asset.GOV.name)
                checks.append(FieldIs(name, Asset.GOV.name, rows[name].get("GOV", "")))
                weights.append((staker, stake * params.tiers.level_for(stake).multiplier_bps))
            shares = pro_rata(pay, weights)
            recipients = len(shares)
            if not shares:
                return None
            return Plan(
                checks=checks,
                moves=[Move(REWARDS, s, Asset.CREDIT.name, n) for s, n in shares],
                writes=[Put(marker, {"tx": tx_id})] if period else [],
                entry=self._entry(
                    tx_id, TransactionKind.REWARD_DISTRIBUTION, now, request_id, memo=memo
                ),
                idem=idem,
            )

        committed = await self._run(build)
        if committed is None or committed.entry is None:
            return Distributed(None, 0)
        tx = _records.transaction_of(committed.entry)
        return Distributed(tx, len(tx.postings) // 2)

    # Governance ----------------------------------------------------------

    async def create_proposal(
        self,
        proposer_account_id: str,
        title: str,
        *,
        description: str = "",
        voting_period_s: float | None = None,
        quorum: int = 0,
        threshold_bps: int | None = None,
        change: ParameterChange | None = None,
        request_id: str = "",
    ) -> Proposal:
        """Open a vote lasting ``voting_period_s`` (the default when None), optionally on a
        parameter change that is applied when it passes."""
        violations = (
            _user_id(proposer_account_id, "proposer_account_id")
            + _checks.text(title, "title", _checks.MAX_NAME, required=True)
            + _checks.text(description, "description", _checks.MAX_DESCRIPTION)
        )
        period = self.default_voting_period_s if voting_period_s is None else voting_period_s
        if not (math.isfinite(period) and 0 < period <= MAX_VOTING_PERIOD_S):
            violations.append(
                FieldViolation("voting_period", "must be positive and at most ten years")
            )
        if threshold_bps is not None and not 0 <= threshold_bps < BPS_ONE:
            violations.append(FieldViolation("threshold_bps", "must be 0..9999 basis points"))
        if change is not None:
            violations += change.violations("change")
        _raise_if(
            violations + _checks.non_negative(quorum, "quorum") + _checks.request_id(request_id)
        )
        now = self._clock()
        proposal_id = new_id("prop")
        idem = self._idem(
            request_id, "CreateProposal", proposer_account_id, title, description,
            voting_period_s, quorum, threshold_bps, change.to_json() if change else "",
        )  # fmt: skip
        stake_rec = acct(_records.stake_account(proposer_account_id))

        async def build(params: Params) -> Plan:
            rows = await self.store.read([acct(proposer_account_id), stake_rec])
            if not rows[acct(proposer_account_id)]:
                raise NotFound(
                    f"account {proposer_account_id!r} not found",
                    metadata={"account_id": proposer_account_id},
                )
            if num(rows[stake_rec], Asset.GOV.name) <= 0:
                raise StakeRequired(
                    f"account {proposer_account_id!r} has no stake and cannot propose",
                    metadata={"account_id": proposer_account_id},
                )
            thr = params.pass_threshold_bps if threshold_bps is None else threshold_bps
            end = now + period
            fields = {
                "proposer": proposer_account_id,
                "title": title,
                "desc": description,
                "state": ProposalState.OPEN.name,
                "quorum": str(quorum),
                "ct": repr(now),
                "end": repr(end),
                "thr": str(thr),
                "change": change.to_json() if change else "",
            }
            return Plan(
                checks=[
                    _version(params),
                    FieldIs(stake_rec, "GOV", rows[stake_rec].get("GOV", "")),
                ],
                writes=[
                    Put(_records.proposal_rec(proposal_id), fields),
                    IndexAdd(PROPOSALS, proposal_id),
                    IndexAdd(OPEN_PROPOSALS, proposal_id, end),
                ],
                idem=idem,
                read_back=[_records.proposal_rec(proposal_id)],
            )

        committed = await self._run(build)
        assert committed is not None
        ((name, row),) = committed.records.items()
        return _records.proposal_of(name.removeprefix("p:"), row)

    async def cast_vote(
        self,
        proposal_id: str,
        voter_account_id: str,
        choice: VoteChoice | int,
        *,
        request_id: str = "",
    ) -> Proposal:
        """Record the voter's stake as the weight of ``choice``; a re-vote replaces the first."""
        violations = check_id(proposal_id, "proposal_id") + _user_id(
            voter_account_id, "voter_account_id"
        )
        if choice not in VoteChoice._value2member_map_:
            violations.append(FieldViolation("choice", "must be YES, NO or ABSTAIN"))
        _raise_if(violations + _checks.request_id(request_id))
        vote = VoteChoice(choice)
        now = self._clock()
        record = _records.proposal_rec(proposal_id)
        vote_rec = _records.vote_rec(proposal_id, voter_account_id)
        stake_rec = acct(_records.stake_account(voter_account_id))
        idem = self._idem(request_id, "CastVote", proposal_id, voter_account_id, int(vote))

        async def build(params: Params) -> Plan:
            rows = await self.store.read([record, acct(voter_account_id), stake_rec, vote_rec])
            if not rows[record]:
                raise NotFound(
                    f"proposal {proposal_id!r} not found", metadata={"proposal_id": proposal_id}
                )
            if not rows[acct(voter_account_id)]:
                raise NotFound(
                    f"account {voter_account_id!r} not found",
                    metadata={"account_id": voter_account_id},
                )
            proposal = _records.proposal_of(proposal_id, rows[record])
            if governance.as_of(proposal, now).state is not ProposalState.OPEN:
                raise _error(Refused("PROPOSAL_CLOSED", record))
            weight = num(rows[stake_rec], Asset.GOV.name)
            if weight <= 0:
                raise StakeRequired(
                    f"account {voter_account_id!r} has no stake and cannot vote",
                    metadata={"account_id": voter_account_id},
                )
            previous = rows[vote_rec]
            writes: list[Write] = [
                Add(record, vote.name, weight),
                Put(vote_rec, {"choice": vote.name, "weight": str(weight)}),
                Add(acct(voter_account_id), "vv", 1),
                IndexAdd(_records.votes_index(voter_account_id), proposal_id),
            ]
            if previous:  # a re-vote replaces the earlier one
                writes.insert(0, Add(record, previous["choice"], -num(previous, "weight")))
            else:
                writes.append(Add(record, "voters", 1))
            return Plan(
                checks=[
                    FieldIs(record, "state", ProposalState.OPEN.name, "PROPOSAL_CLOSED"),
                    FieldIs(stake_rec, Asset.GOV.name, rows[stake_rec].get("GOV", "")),
                    FieldIs(vote_rec, "weight", previous.get("weight", "")),
                    FieldIs(vote_rec, "choice", previous.get("choice", "")),
                ],
                writes=writes,
                idem=idem,
                read_back=[record],
            )

        committed = await self._run(build)
        assert committed is not None
        return _records.proposal_of(proposal_id, committed.records[record])

    async def get_proposal(self, proposal_id: str) -> Proposal:
        """The proposal as it stands now (decided once past its end). NOT_FOUND if unknown."""
        _raise_if(check_id(proposal_id, "proposal_id"))
        record = _records.proposal_rec(proposal_id)
        row = (await self.store.read([record]))[record]
        if not row:
            raise NotFound(
                f"proposal {proposal_id!r} not found", metadata={"proposal_id": proposal_id}
            )
        return governance.as_of(_records.proposal_of(proposal_id, row), self._clock())

    async def list_proposals(
        self,
        *,
        state: ProposalState | int | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> Page[Proposal]:
        """Proposals, newest first, optionally in one state (as they stand now)."""
        violations: list[FieldViolation] = []
        if state not in (None, 0) and state not in ProposalState._value2member_map_:
            violations.append(FieldViolation("state", "is not a proposal state"))
        limit = _page_limit(page_size, violations)
        after = _page_after(page_token, violations)
        _raise_if(violations)
        want = ProposalState(state) if state else None
        now = self._clock()

        async def load(ids: list[str]) -> list[Proposal]:
            rows = await self.store.read([_records.proposal_rec(i) for i in ids])
            found = [
                governance.as_of(_records.proposal_of(i, rows[_records.proposal_rec(i)]), now)
                for i in ids
            ]
            return [p for p in found if want is None or p.state == want]

        return await self._lex_page(PROPOSALS, after, limit, load, reverse=True)

    async def close_proposal(self, proposal_id: str) -> Proposal:
        """Decide a proposal whose voting window has ended; a decided one comes back unchanged.

        Only an admin (or code outside any call, which is the mesh itself) may
        close before the window ends; that close is recorded as early, with who
        did it. Anyone else gets VOTING_OPEN, so nobody can end a vote the moment
        it leans their way. A passed proposal's parameter change is applied in
        the same step, recorded as a PARAMETER_CHANGE transaction.
        """
        _raise_if(check_id(proposal_id, "proposal_id"))
        who = caller()
        early_by: str | None = None
        if who is None:
            early_by = INTERNAL
        elif who.is_admin:
            early_by = who.name
        record = _records.proposal_rec(proposal_id)
        tx_id = new_id("tx")

        async def build(params: Params) -> Plan | None:
            now = self._clock()
            row = (await self.store.read([record]))[record]
            if not row:
                raise NotFound(
                    f"proposal {proposal_id!r} not found", metadata={"proposal_id": proposal_id}
                )
            stored = _records.proposal_of(proposal_id, row)
            if stored.state is not ProposalState.OPEN:
                return None
            proposal = governance.as_of(stored, now)
            if proposal.state is ProposalState.OPEN:
                if early_by is None:
                    raise VotingOpen(
                        f"voting on proposal {proposal_id!r} is open for "
                        f"{proposal.voting_end_time - now:.0f}s more; only an admin may close it "
                        "early",
                        metadata={
                            "proposal_id": proposal_id,
                            "voting_end_time": timestamp(proposal.voting_end_time).ToJsonString(),
                        },
                    )
                proposal = governance.decided(proposal, close_time=now, closed_early_by=early_by)
            fields = {
                "state": proposal.state.name,
                "closed": repr(proposal.close_time),
                "early_by": proposal.closed_early_by,
            }
            checks: list[Check] = [
                FieldIs(record, "state", ProposalState.OPEN.name),
                *(FieldIs(record, c.name, row.get(c.name, "")) for c in VoteChoice),
            ]
            writes: list[Write] = [IndexRemove(OPEN_PROPOSALS, proposal_id)]
            entry = None
            if proposal.state is ProposalState.PASSED and proposal.change is not None:
                changed = proposal.change.apply(params)
                checks.append(_version(params))
                writes.append(
                    Put(PARAMS, {"json": changed.to_json(), "version": str(params.version + 1)})
                )
                fields["applied"] = "1"
                entry = self._entry(
                    tx_id, TransactionKind.PARAMETER_CHANGE, now,
                    memo=proposal.change.to_json(), proposal_id=proposal_id,
                )  # fmt: skip
            writes.insert(0, Put(record, fields))
            return Plan(checks=checks, writes=writes, entry=entry, read_back=[record])

        committed = await self._run(build)
        if committed is not None and committed.entry is not None:
            self._params = None  # this process applied a change: read it at once
        row = (
            committed.records[record]
            if committed is not None
            else (await self.store.read([record]))[record]
        )
        return _records.proposal_of(proposal_id, row)

    # Audit and upkeep ----------------------------------------------------

    async def audit(self) -> AuditReport:
        """Replay every posting and compare with the stored balances (O(ledger))."""
        replayed: dict[tuple[str, str], int] = {}
        unbalanced: list[str] = []
        count = 0
        after = 0
        while entries := await self.store.ledger_page(after_seq=after, limit=1000):
            for entry in entries:
                count += 1
                sums: dict[str, int] = {}
                for p in entry.postings:
                    replayed[(p.account_id, p.asset)] = (
                        replayed.get((p.account_id, p.asset), 0) + p.amount
                    )
                    sums[p.asset] = sums.get(p.asset, 0) + p.amount
                if any(sums.values()):
                    unbalanced.append(entry.transaction_id)
            after = entries[-1].seq
        accounts: list[str] = []
        cursor = ""
        while batch := await self.store.index_page(ACCOUNTS, after=cursor, limit=1000):
            accounts += batch
            cursor = batch[-1]
        rows: dict[str, dict[str, str]] = {}
        for start in range(0, len(accounts), 1000):
            rows |= await self.store.read([acct(a) for a in accounts[start : start + 1000]])
        mismatches: list[BalanceMismatch] = []
        negative: list[BalanceMismatch] = []
        held = dict.fromkeys(ASSETS, 0)
        for account_id in accounts:
            row = rows[acct(account_id)]
            for asset in ASSETS:
                stored = num(row, asset)
                again = replayed.pop((account_id, asset), 0)
                if stored != again:
                    mismatches.append(BalanceMismatch(account_id, Asset[asset], stored, again))
                if account_id != ISSUANCE:
                    held[asset] += stored
                    if stored < 0:
                        negative.append(BalanceMismatch(account_id, Asset[asset], stored, again))
        for (account_id, asset), again in sorted(replayed.items()):  # postings to unknown accounts
            mismatches.append(BalanceMismatch(account_id, Asset[asset], 0, again))
        issuance = rows.get(acct(ISSUANCE), {})
        supplies = tuple(AssetSupply(Asset[a], -num(issuance, a), held[a]) for a in ASSETS)
        ok = not (mismatches or unbalanced or negative) and all(
            s.issued == s.held for s in supplies
        )
        return AuditReport(
            ok,
            count,
            len(accounts),
            supplies,
            tuple(mismatches),
            tuple(unbalanced),
            tuple(negative),
        )

    async def maintain(self) -> Maintenance:
        """One pass of the economy's own work: expire escrows that were not renewed, complete
        unbonding, close proposals past their window (applying passed changes) and make a
        scheduled reward distribution. Safe on every replica at once."""
        now = self._clock()
        expired = unbonded = closed = distributed = 0
        for escrow_id in await self.store.index_due(OPEN_ESCROWS, max_score=now, limit=SWEEP_BATCH):
            _, settled = await self._settle(escrow_id, EscrowState.EXPIRED)
            expired += settled
        for entry_id in await self.store.index_due(UNBONDING, max_score=now, limit=SWEEP_BATCH):
            unbonded += await self._complete_unbonding(entry_id)
        for proposal_id in await self.store.index_due(
            OPEN_PROPOSALS, max_score=now, limit=SWEEP_BATCH
        ):
            with contextlib.suppress(VotingOpen):
                await self.close_proposal(proposal_id)
                closed += 1
        params = await self.parameters()
        if params.distribution_amount > 0 and params.distribution_interval_s > 0:
            # One distribution per period whichever replica gets there first: the
            # period's marker is written with it.
            interval = params.distribution_interval_s
            period = repr(math.floor(now / interval) * interval)
            with contextlib.suppress(LedgerContended):
                done = await self._distribute(
                    params.distribution_amount,
                    memo=f"scheduled distribution of the period from {period}",
                    period=period,
                )
                distributed += done.recipients > 0
        return Maintenance(expired, unbonded, closed, distributed)

    def start(self) -> None:
        """Run ``maintain`` every ``maintenance_interval_s`` until ``stop``."""
        if self._maintainer is None:
            self._maintainer = asyncio.get_running_loop().create_task(
                self._maintain_forever(), name="economy-maintenance"
            )

    async def stop(self) -> None:
        """Stop the maintenance loop (an unfinished pass is cancelled; every step is atomic)."""
        task, self._maintainer = self._maintainer, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _maintain_forever(self) -> None:
        while True:
            try:
                await self.maintain()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("economy maintenance pass failed; retrying")
            await asyncio.sleep(self.maintenance_interval_s)


def _const(plan: Plan) -> Callable[[Params], Awaitable[Plan]]:
    async def build(params: Params) -> Plan:
        return plan

    return build


def _version(params: Params) -> FieldIs:
    """Guard: the parameters this plan used are still the ledger's."""
    return FieldIs(PARAMS, "version", str(params.version))


def _ttl(ttl_s: float | None) -> list[FieldViolation]:
    if ttl_s is not None and not (math.isfinite(ttl_s) and 0 < ttl_s <= MAX_PERIOD_S):
        return [FieldViolation("ttl", "must be positive and at most ten years")]
    return []


def _require_open(escrow_id: str, escrow: dict[str, str], now: float) -> None:
    state = escrow.get("state")
    meta = {"escrow_id": escrow_id}
    if state == EscrowState.EXPIRED.name or (
        state == EscrowState.OPEN.name and float(escrow.get("exp") or "inf") <= now
    ):
        raise EscrowExpired(f"escrow {escrow_id!r} expired", metadata=meta)
    if state != EscrowState.OPEN.name:
        raise EscrowClosed(f"escrow {escrow_id!r} is closed", metadata=meta)


def _view(account_id: str, rows: Mapping[str, Mapping[str, str]], tiers: TierTable) -> Account:
    return _records.account_of(
        account_id,
        rows[acct(account_id)],
        rows.get(acct(_records.stake_account(account_id)), {}),
        rows.get(acct(_records.unbonding_account(account_id)), {}),
        tiers,
    )


def _new_account(
    account_id: str, kind: AccountKind, owner: str, name: str, now: float
) -> list[Write]:
    """The writes that create an account record and list it."""
    writes: list[Write] = [
        Put(acct(account_id), {"kind": kind.name, "owner": owner, "name": name, "ct": repr(now)}),
        IndexAdd(ACCOUNTS, account_id),
    ]
    if kind is AccountKind.USER:
        writes.append(IndexAdd(_records.owner_index(owner), account_id))
    return writes

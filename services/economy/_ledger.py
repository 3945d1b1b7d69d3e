"""The machinery every economy operation shares: plan, commit, plan again.

An operation validates the shape of its inputs (naming every bad field at
once), reads what its rule needs, and hands the kernel ONE plan
(``meshwright.economy.kernel``) that checks what it read is still true, moves
the money, writes the records, records the transaction and the idempotency
key, all or nothing. A plan whose guarded read went stale is refused with
``CONFLICT`` and planned again from a fresh read, a bounded number of times
(``_Ledger._run``). The operations live in one mixin per area (``_accounts``,
``_staking``, ``_escrows``, ``_voting``); ``Economy`` joins them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TypeVar

from meshwright.economy import _records
from meshwright.economy._records import (
    ACCOUNTS,
    PARAMS,
    RESERVED_PREFIXES,
    SYSTEM_ACCOUNTS,
    acct,
    num,
)
from meshwright.economy.errors import (
    EscrowClosed,
    EscrowExpired,
    LedgerContended,
    MintLimitExceeded,
    TaskAlreadyPaid,
)
from meshwright.economy.idempotency import fingerprint, request_key
from meshwright.economy.kernel import (
    CONFLICT,
    DEFAULT_IDEMPOTENCY_TTL_S,
    IDEM_MISMATCH,
    ISSUANCE,
    NOT_FOUND,
    Absent,
    Check,
    Committed,
    Entry,
    FieldIs,
    Idem,
    IndexAdd,
    LedgerStore,
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
    EscrowState,
    Page,
    TransactionKind,
)
from meshwright.economy.params import MAX_PERIOD_S, Params
from meshwright.economy.tiers import TierTable
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
from meshwright.mesh.policy import NotOwner
from meshwright.mesh.validation import check_id

if TYPE_CHECKING:
    from meshwright.mesh.metrics import MeshMetrics

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


def _listing_owner(owner: str) -> str:
    """Whose accounts or escrows a listing shows: callers other than admins and mesh services
    see only their own (an empty ``owner`` stands for them; the policy refuses another's
    first, this is the backstop)."""
    who = caller()
    if who is None or who.is_trusted:
        return owner
    if owner and owner != who.name:
        raise NotOwner("owner: callers list only their own", metadata={"field": "owner"})
    return who.name


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
                metadata={"capture_id": refused.subject.removeprefix("cap:")},
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


class _Ledger:
    """State and machinery the operations share (see the module docstring)."""

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
        self._stopping = False
        """Set by ``stop``: the maintenance loop ends at its next turn."""
        self.metrics: MeshMetrics | None = None
        """Set by the composition root: every transaction committed here is counted."""

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

    def _count(self, kind: str) -> None:
        """One committed transaction of ``kind`` (a ``TransactionKind`` name) in the metrics;
        escrows opened and closed here move the open-escrow gauge (summed over replicas,
        it is the mesh's count)."""
        assert self.metrics is not None
        self.metrics.transaction(kind.lower())
        if kind == TransactionKind.ESCROW_OPEN.name:
            self.metrics.escrow_opened()
        elif kind in (TransactionKind.ESCROW_RELEASE.name, TransactionKind.ESCROW_EXPIRE.name):
            self.metrics.escrow_closed()

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

    async def _run(
        self, build: Callable[[Params], Awaitable[Plan | None]], idem: Idem | None = None
    ) -> Committed | None:
        """Plan and commit, planning again while a guarded read went stale.

        ``build`` returns None when there is nothing to commit (the caller reads
        the outcome itself), or raises the refusal its read decided. Either way a
        retried request (``idem``) first replays its stored result, if any: the
        ledger may no longer allow what the first attempt did.
        """
        for attempt in range(MAX_ATTEMPTS):
            params = await self.parameters(fresh=attempt > 0)
            try:
                plan = await build(params)
            except MeshError:
                if idem is not None and (first := await self._replay(idem)) is not None:
                    return first
                raise
            if plan is None:
                return None if idem is None else await self._replay(idem)
            try:
                committed = await self.store.commit(plan)
            except Refused as refused:
                if refused.reason != CONFLICT:
                    raise _error(refused) from None
                if attempt:
                    await asyncio.sleep(min(0.001 * 2**attempt, 0.05))
                continue
            if self.metrics is not None and plan.entry is not None and not committed.replayed:
                self._count(plan.entry.kind)
            return committed
        raise LedgerContended(
            f"the ledger changed under this request {MAX_ATTEMPTS} times in a row; retry it"
        )

    async def _replay(self, idem: Idem) -> Committed | None:
        try:
            return await self.store.replay(idem)
        except Refused as refused:
            raise _error(refused) from None

    async def _accounts(self, account_ids: Sequence[str]) -> dict[str, Account | None]:
        """Views of accounts in one read (None for unknown ones)."""
        tiers = (await self.parameters()).tiers  # first: it bootstraps an empty ledger
        names = [name for a in account_ids for name in _records.user_records(a)]
        rows = await self.store.read(names)
        return {a: _view(a, rows, tiers) if rows[acct(a)] else None for a in account_ids}

    async def _after(self, committed: Committed, account_id: str) -> Account:
        """An account's view from a commit's read-back records."""
        return _view(account_id, committed.records, (await self.parameters()).tiers)

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

"""The ledger kernel: the one atomic operation every economy backend implements.

The economy's rules (who pays whom, how much, under which conditions) live once,
in Python (``meshwright.economy.rules`` and ``Economy``). A rule reads what it
needs, then hands the kernel a ``Plan``: checks, moves of money, record writes,
index updates, the transaction entry and an idempotency key. A backend applies
a plan all or nothing, evaluating it in this fixed order:

1. **Idempotency.** If ``plan.idem`` names a key already stored: the same
   fingerprint returns the stored result (``replayed=True``) and applies
   nothing; another fingerprint refuses with ``IDEM_MISMATCH``.
2. **Checks**, in order (``Exists``, ``Absent``, ``FieldIs``). The first that
   fails refuses the plan with its ``fail`` reason and its record as subject.
3. **Moves**, in order, against balances as changed by the moves before them:
   both accounts must exist (``a:<id>`` records, or ones this plan ``Put``s),
   else ``NOT_FOUND`` with the missing account as subject. A capped move
   moves ``min(amount, debit balance)`` (nothing if that is 0); any other move
   that would take the debit account below zero refuses with its ``short``
   reason, the debit account as subject. A move of 0 or less moves nothing
   (rules never plan one). Only ``ISSUANCE`` may go negative (its balance is
   minus the supply of each asset). ``Add`` on a field that is not an integer
   raises ``ValueError`` here too, before anything is written.
4. **Writes**, only when nothing was refused: ``Put`` fields, final balances,
   ``Add`` increments, ``Delete``, ``IndexAdd``/``IndexRemove``; then the
   entry (if any) gets the next sequence number, its postings (two per
   effective move, in move order: debit ``-amount`` then credit ``+amount``),
   and is appended to the global ledger and to the log ``l:<account>`` of every
   account it posts to and every account in ``entry.also_log`` (once each, in
   that order); then the idempotency key is stored with the result for
   ``idem.ttl_s``.
5. **Result**: the entry as stored and the ``read_back`` records as they are
   after the writes.

So the two backends share no rule and cannot drift: they interpret the same
small vocabulary, which one conformance suite pins
(``tests/economy/test_kernel_conformance.py``).

Names are plain strings. Records are string-to-string maps (``a:<account>``
holds an account's balances as fields named by asset). Indexes are either
lexicographic (every member scored 0, paged by member) or scored (read up to a
score). Account logs ``l:<account>`` are written by the kernel only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

ISSUANCE = "system:issuance"
"""The account minted money comes from: its balances are minus each asset's supply."""

ASSETS = ("CREDIT", "GOV")
"""The ledger's assets; an account record keeps each as a field of that name."""

CONFLICT = "CONFLICT"
"""Fail reason of a check that guards a read: the rule re-reads and plans again."""
IDEM_MISMATCH = "IDEM_MISMATCH"
"""The idempotency key was stored for a request with other parameters."""
NOT_FOUND = "NOT_FOUND"
"""A move names an account that does not exist."""

DEFAULT_IDEMPOTENCY_TTL_S = 86_400.0
"""How long a request id is remembered (24 h); a retry after that applies again."""


def account_record(account_id: str) -> str:
    """The record of an account (its balances and attributes)."""
    return f"a:{account_id}"


def account_log(account_id: str) -> str:
    """The index of an account's ledger entries (written by the kernel)."""
    return f"l:{account_id}"


# Checks ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Exists:
    """``record`` must exist (have at least one field)."""

    record: str
    fail: str = CONFLICT


@dataclass(frozen=True, slots=True)
class Absent:
    """``record`` must not exist."""

    record: str
    fail: str = CONFLICT


@dataclass(frozen=True, slots=True)
class FieldIs:
    """``record``'s ``field`` must equal ``value`` (a missing field or record reads ``""``)."""

    record: str
    field: str
    value: str
    fail: str = CONFLICT


Check = Exists | Absent | FieldIs


# Money ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Move:
    """``amount`` of ``asset`` from ``debit``'s balance to ``credit``'s: two postings."""

    debit: str
    credit: str
    asset: str
    amount: int
    short: str = "INSUFFICIENT_FUNDS"
    """Fail reason when ``debit`` would go below zero (not used when ``cap``)."""
    cap: bool = False
    """Move at most what ``debit`` holds (pay from a pool while it has funds)."""


# Writes ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Put:
    """Set fields of ``record`` (creating it)."""

    record: str
    fields: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Add:
    """Add ``delta`` to an integer field of ``record`` (a missing field counts as 0)."""

    record: str
    field: str
    delta: int


@dataclass(frozen=True, slots=True)
class Delete:
    """Remove ``record``."""

    record: str


@dataclass(frozen=True, slots=True)
class IndexAdd:
    """Add (or re-score) ``member`` in ``index``; score 0 for lexicographic indexes."""

    index: str
    member: str
    score: float = 0.0


@dataclass(frozen=True, slots=True)
class IndexRemove:
    """Remove ``member`` from ``index``."""

    index: str
    member: str


Write = Put | Add | Delete | IndexAdd | IndexRemove


# The plan -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """The transaction a plan records (its postings come from its moves)."""

    transaction_id: str
    kind: str
    """A ``TransactionKind`` name, e.g. ``TRANSFER``."""
    time: float
    request_id: str = ""
    caller: str = ""
    memo: str = ""
    refs: Mapping[str, str] = field(default_factory=dict)
    """What it is about (``escrow_id``, ``task_id``, ``proposal_id``...)."""
    also_log: Sequence[str] = ()
    """Accounts whose logs list the entry besides those it posts to (an account's
    history shows the moves between its stake and unbonding accounts)."""


@dataclass(frozen=True, slots=True)
class Idem:
    """Deduplicates a retried request."""

    key: str
    """Scoped by the rule (caller and request id), never the bare request id."""
    fingerprint: str
    ttl_s: float = DEFAULT_IDEMPOTENCY_TTL_S


@dataclass(frozen=True, slots=True)
class Plan:
    """Everything one atomic step checks and writes."""

    checks: Sequence[Check] = ()
    moves: Sequence[Move] = ()
    writes: Sequence[Write] = ()
    entry: Entry | None = None
    idem: Idem | None = None
    read_back: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class Posting:
    """One side of a move: ``amount`` is negative for the debit."""

    account_id: str
    asset: str
    amount: int


@dataclass(frozen=True, slots=True)
class StoredEntry:
    """A transaction as the ledger keeps it."""

    seq: int
    transaction_id: str
    kind: str
    time: float
    request_id: str
    caller: str
    memo: str
    refs: Mapping[str, str]
    postings: tuple[Posting, ...]


@dataclass(frozen=True, slots=True)
class Committed:
    """What a plan did (or, replayed, what its first application did)."""

    entry: StoredEntry | None
    records: Mapping[str, Mapping[str, str]]
    """The ``read_back`` records after the writes (``{}`` for a missing one)."""
    replayed: bool = False


class Refused(Exception):
    """The kernel applied nothing: ``reason`` (a check's ``fail``, a move's ``short``,
    ``NOT_FOUND`` or ``IDEM_MISMATCH``) about ``subject`` (a record or account id)."""

    def __init__(self, reason: str, subject: str = "") -> None:
        super().__init__(f"{reason} {subject}".strip())
        self.reason = reason
        self.subject = subject


class LedgerStore(Protocol):
    """A ledger backend: one atomic ``commit`` and a few reads."""

    async def commit(self, plan: Plan) -> Committed:
        """Apply ``plan`` all or nothing (module docstring); ``Refused`` if a rule refused it.

        ``Unavailable`` if the backend cannot be reached (nothing is known to
        have been applied; a retry with the same idempotency key is safe)."""
        ...

    async def replay(self, idem: Idem) -> Committed | None:
        """The stored result of ``idem`` (``replayed=True``), None if the key is not stored;
        ``Refused(IDEM_MISMATCH)`` if it was stored for another fingerprint. Applies nothing.

        A rule that would now refuse a retried request (the escrow it released is
        closed, the stake it unstaked is gone) asks this first, so a retry replays
        the first result instead of failing."""
        ...

    async def read(self, records: Sequence[str]) -> dict[str, dict[str, str]]:
        """The records at one moment (one round trip); ``{}`` for a missing one."""
        ...

    async def index_page(
        self, index: str, *, after: str = "", limit: int, reverse: bool = False
    ) -> list[str]:
        """Up to ``limit`` members of a lexicographic index after ``after`` (before it when
        ``reverse``), in member order (descending when ``reverse``)."""
        ...

    async def index_due(self, index: str, *, max_score: float, limit: int) -> list[str]:
        """Up to ``limit`` members of a scored index with score <= ``max_score``, lowest first."""
        ...

    async def log_page(
        self, account_id: str, *, before_seq: int | None, limit: int
    ) -> list[StoredEntry]:
        """Up to ``limit`` entries posting to the account with seq < ``before_seq``, newest
        first."""
        ...

    async def ledger_page(self, *, after_seq: int, limit: int) -> list[StoredEntry]:
        """Up to ``limit`` entries of the whole ledger with seq > ``after_seq``, oldest first."""
        ...

    async def close(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...


__all__ = [
    "ASSETS",
    "CONFLICT",
    "DEFAULT_IDEMPOTENCY_TTL_S",
    "IDEM_MISMATCH",
    "ISSUANCE",
    "NOT_FOUND",
    "Absent",
    "Add",
    "Check",
    "Committed",
    "Delete",
    "Entry",
    "Exists",
    "FieldIs",
    "Idem",
    "IndexAdd",
    "IndexRemove",
    "LedgerStore",
    "Move",
    "Plan",
    "Posting",
    "Put",
    "Refused",
    "StoredEntry",
    "Write",
    "account_log",
    "account_record",
]

"""The ledger kernel in process memory: the embedded default and the reference backend.

Atomicity comes from the event loop: ``commit`` checks and applies with no
``await`` in between. It evaluates a plan exactly as ``kernel``'s docstring
orders it, and ``RedisLedgerStore`` must agree with it case by case (the
kernel conformance suite runs both).
"""

from __future__ import annotations

import bisect
import heapq
import time
from collections.abc import Callable, Sequence

from meshwright.economy.kernel import (
    IDEM_MISMATCH,
    ISSUANCE,
    NOT_FOUND,
    Absent,
    Add,
    Committed,
    Delete,
    Exists,
    Idem,
    IndexAdd,
    IndexRemove,
    Plan,
    Posting,
    Put,
    Refused,
    StoredEntry,
    account_log,
    account_record,
)


class MemoryLedgerStore:
    """Records, indexes and the ledger in dicts; lost when the process exits."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._records: dict[str, dict[str, str]] = {}
        self._members: dict[str, list[str]] = {}
        """Each index's members, sorted (``index_page``)."""
        self._scores: dict[str, dict[str, float]] = {}
        """Each index's member -> score (``index_due`` sorts them: sweeps are small)."""
        self._ledger: list[StoredEntry] = []
        """Every entry, ascending by seq (seq n is at position n - 1)."""
        self._logs: dict[str, list[int]] = {}
        self._idem: dict[str, tuple[str, Committed, float]] = {}
        self._idem_expiry: list[tuple[float, str]] = []
        self._clock = clock

    # The kernel --------------------------------------------------------------

    async def replay(self, idem: Idem) -> Committed | None:
        self._expire_idempotency()
        stored = self._idem.get(idem.key)
        if stored is None:
            return None
        if stored[0] != idem.fingerprint:
            raise Refused(IDEM_MISMATCH, idem.key)
        first = stored[1]
        return Committed(first.entry, first.records, replayed=True)

    async def commit(self, plan: Plan) -> Committed:
        if plan.idem is not None and (replayed := await self.replay(plan.idem)) is not None:
            return replayed
        self._expire_idempotency()
        for check in plan.checks:
            record = self._records.get(check.record)
            if isinstance(check, Exists):
                ok = bool(record)
            elif isinstance(check, Absent):
                ok = not record
            else:
                ok = (record or {}).get(check.field, "") == check.value
            if not ok:
                raise Refused(check.fail, check.record)
        created = {w.record for w in plan.writes if isinstance(w, Put)}
        balances: dict[tuple[str, str], int] = {}
        postings: list[Posting] = []
        for move in plan.moves:
            for account in (move.debit, move.credit):
                name = account_record(account)
                if not self._records.get(name) and name not in created:
                    raise Refused(NOT_FOUND, account)
            debit = (move.debit, move.asset)
            credit = (move.credit, move.asset)
            have = balances.get(debit, self._balance(*debit))
            amount = min(move.amount, max(have, 0)) if move.cap else move.amount
            if amount <= 0:
                continue
            if have - amount < 0 and move.debit != ISSUANCE:
                raise Refused(move.short, move.debit)
            balances[debit] = have - amount
            balances[credit] = balances.get(credit, self._balance(*credit)) + amount
            postings.append(Posting(move.debit, move.asset, -amount))
            postings.append(Posting(move.credit, move.asset, amount))
        self._check_adds(plan, balances)
        # Nothing can refuse from here on.
        for write in plan.writes:
            if isinstance(write, Put):
                self._records.setdefault(write.record, {}).update(write.fields)
        for (account, asset), value in balances.items():
            self._records.setdefault(account_record(account), {})[asset] = str(value)
        for write in plan.writes:
            if isinstance(write, Add):
                row = self._records.setdefault(write.record, {})
                row[write.field] = str(int(row.get(write.field) or 0) + write.delta)
            elif isinstance(write, Delete):
                self._records.pop(write.record, None)
            elif isinstance(write, IndexAdd):
                self._index_add(write)
            elif isinstance(write, IndexRemove):
                self._index_remove(write)
        entry: StoredEntry | None = None
        if plan.entry is not None:
            e = plan.entry
            entry = StoredEntry(
                seq=len(self._ledger) + 1,
                transaction_id=e.transaction_id,
                kind=e.kind,
                time=e.time,
                request_id=e.request_id,
                caller=e.caller,
                memo=e.memo,
                refs=dict(e.refs),
                postings=tuple(postings),
            )
            self._ledger.append(entry)
            for account in dict.fromkeys([*(p.account_id for p in postings), *e.also_log]):
                self._logs.setdefault(account_log(account), []).append(entry.seq)
        result = Committed(
            entry, {name: dict(self._records.get(name, {})) for name in plan.read_back}
        )
        if plan.idem is not None:
            expires = self._clock() + plan.idem.ttl_s
            self._idem[plan.idem.key] = (plan.idem.fingerprint, result, expires)
            heapq.heappush(self._idem_expiry, (expires, plan.idem.key))
        return result

    def _check_adds(self, plan: Plan, balances: dict[tuple[str, str], int]) -> None:
        """Raise ValueError, before anything is written, if an Add meets a non-integer field.

        A dry run of the write phase over the fields as the Puts and moves leave them.
        """
        staged: dict[tuple[str, str], str] = {}
        for write in plan.writes:
            if isinstance(write, Put):
                staged.update({(write.record, f): v for f, v in write.fields.items()})
        for (account, asset), balance in balances.items():
            staged[(account_record(account), asset)] = str(balance)
        deleted: set[str] = set()
        for write in plan.writes:
            if isinstance(write, Add):
                key = (write.record, write.field)
                value: str
                if key in staged:
                    value = staged[key]
                elif write.record in deleted:
                    value = ""
                else:
                    value = self._records.get(write.record, {}).get(write.field, "")
                staged[key] = str(int(value or 0) + write.delta)
            elif isinstance(write, Delete):
                deleted.add(write.record)
                staged = {k: v for k, v in staged.items() if k[0] != write.record}

    def _balance(self, account: str, asset: str) -> int:
        return int(self._records.get(account_record(account), {}).get(asset) or 0)

    def _index_add(self, write: IndexAdd) -> None:
        scores = self._scores.setdefault(write.index, {})
        if write.member not in scores:
            bisect.insort(self._members.setdefault(write.index, []), write.member)
        scores[write.member] = write.score

    def _index_remove(self, write: IndexRemove) -> None:
        scores = self._scores.get(write.index, {})
        if scores.pop(write.member, None) is not None:
            members = self._members[write.index]
            del members[bisect.bisect_left(members, write.member)]

    def _expire_idempotency(self) -> None:
        now = self._clock()
        while self._idem_expiry and self._idem_expiry[0][0] <= now:
            _, key = heapq.heappop(self._idem_expiry)
            stored = self._idem.get(key)
            if stored is not None and stored[2] <= now:
                del self._idem[key]

    # Reads -------------------------------------------------------------------

    async def read(self, records: Sequence[str]) -> dict[str, dict[str, str]]:
        return {name: dict(self._records.get(name, {})) for name in records}

    async def index_page(
        self, index: str, *, after: str = "", limit: int, reverse: bool = False
    ) -> list[str]:
        members = self._members.get(index, [])
        if reverse:
            end = bisect.bisect_left(members, after) if after else len(members)
            return members[max(0, end - limit) : end][::-1]
        start = bisect.bisect_right(members, after) if after else 0
        return members[start : start + limit]

    async def index_due(self, index: str, *, max_score: float, limit: int) -> list[str]:
        due = sorted((s, m) for m, s in self._scores.get(index, {}).items() if s <= max_score)
        return [m for _, m in due[:limit]]

    async def log_page(
        self, account_id: str, *, before_seq: int | None, limit: int
    ) -> list[StoredEntry]:
        seqs = self._logs.get(account_log(account_id), [])
        end = len(seqs) if before_seq is None else bisect.bisect_left(seqs, before_seq)
        return [self._ledger[s - 1] for s in reversed(seqs[max(0, end - limit) : end])]

    async def ledger_page(self, *, after_seq: int, limit: int) -> list[StoredEntry]:
        start = max(after_seq, 0)
        return self._ledger[start : start + limit]

    async def close(self) -> None:
        return None


__all__ = ["MemoryLedgerStore"]

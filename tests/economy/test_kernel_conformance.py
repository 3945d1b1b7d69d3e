"""The ledger kernel (``meshwright.economy.kernel``), one suite for every backend.

Each test runs once per store (params "memory" and "redis": a real redis-server,
flushed, a prefix of its own per test). The memory store's idempotency keys
expire on a fake clock (measured exactly); Redis's on the server's clock (``SET
... PX``), so its expiry test waits a short TTL out. "Nothing written" is pinned
on each backend's raw state (the memory store's dicts, every Redis key's
``DUMP``), beside what the reads show. Limits are tested at exactly the limit
and one past.
"""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import pytest

from meshwright.economy.kernel import (
    CONFLICT,
    IDEM_MISMATCH,
    ISSUANCE,
    NOT_FOUND,
    Absent,
    Add,
    Committed,
    Delete,
    Entry,
    Exists,
    FieldIs,
    Idem,
    IndexAdd,
    IndexRemove,
    Move,
    Plan,
    Posting,
    Put,
    Refused,
    StoredEntry,
    account_record,
)
from meshwright.economy.memory_store import MemoryLedgerStore
from meshwright.mesh.errors import Unavailable
from tests.conftest import eventually, free_port

pytestmark = pytest.mark.timeout(30)

CREDIT, GOV = "CREDIT", "GOV"
BIG = 2**62
"""Beyond 2^53: a backend computing in doubles would round it."""


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Harness:
    """One store under test, how time passes for it, and its raw state."""

    kind: str
    store: Any
    clock: FakeClock | None
    prefix: str = ""

    async def elapse(self, seconds: float) -> None:
        if self.clock is not None:
            self.clock.now += seconds
        else:
            await asyncio.sleep(seconds)

    async def raw(self) -> Any:
        """Everything the backend holds (to pin that a refused plan wrote nothing)."""
        if self.kind == "memory":
            s = self.store
            return copy.deepcopy(
                (s._records, s._members, s._scores, s._ledger, s._logs, dict(s._idem))
            )
        r = self.store._r
        keys = sorted([k async for k in r.scan_iter(match="*")])
        return [(k, await r.dump(k)) for k in keys]


@pytest.fixture(params=["memory", "redis"])
async def h(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "memory":
        clock = FakeClock()
        yield Harness("memory", MemoryLedgerStore(clock=clock), clock)
        return
    from meshwright.economy.redis_store import RedisLedgerStore

    url = request.getfixturevalue("redis_url")
    prefix = f"t{uuid.uuid4().hex[:8]}:eco"
    store = RedisLedgerStore.from_url(url, prefix=prefix)
    try:
        yield Harness("redis", store, None, prefix)
    finally:
        await store.close()


# -- helpers ----------------------------------------------------------------------


async def accounts(h: Harness, **balances: int | Mapping[str, int]) -> None:
    """Create accounts (records ``a:<id>``) holding the given CREDIT (or per-asset) balances."""
    writes = []
    for account, bal in balances.items():
        per_asset = {CREDIT: bal} if isinstance(bal, int) else dict(bal)
        fields = {"kind": "USER", **{a: str(v) for a, v in per_asset.items()}}
        writes.append(Put(account_record(account), fields))
    await h.store.commit(Plan(writes=writes))


async def balance(h: Harness, account: str, asset: str = CREDIT) -> int:
    rows = await h.store.read([account_record(account)])
    return int(rows[account_record(account)].get(asset) or 0)


async def refused(h: Harness, plan: Plan) -> Refused:
    """Commit ``plan``, expect ``Refused``, and check it wrote nothing at all."""
    before = await h.raw()
    with pytest.raises(Refused) as info:
        await h.store.commit(plan)
    assert await h.raw() == before, "a refused plan wrote something"
    return info.value


def entry(tx: str = "tx", kind: str = "TRANSFER", **kw: Any) -> Entry:
    return Entry(transaction_id=tx, kind=kind, time=kw.pop("time", 1_700_000_000.25), **kw)


async def last_seq(h: Harness) -> int:
    page = await h.store.ledger_page(after_seq=0, limit=10_000)
    return page[-1].seq if page else 0


# -- checks -----------------------------------------------------------------------


async def test_exists_passes_on_a_record_and_fails_on_a_missing_one(h: Harness) -> None:
    await accounts(h, alice=1)
    await h.store.commit(Plan(checks=[Exists("a:alice")]))
    err = await refused(h, Plan(checks=[Exists("a:nobody")]))
    assert (err.reason, err.subject) == (CONFLICT, "a:nobody")


async def test_absent_passes_on_a_missing_record_and_fails_on_one(h: Harness) -> None:
    await accounts(h, alice=1)
    await h.store.commit(Plan(checks=[Absent("a:nobody")]))
    err = await refused(h, Plan(checks=[Absent("a:alice", fail="ACCOUNT_EXISTS")]))
    assert (err.reason, err.subject) == ("ACCOUNT_EXISTS", "a:alice")


async def test_field_is_compares_the_value_and_reads_missing_as_empty(h: Harness) -> None:
    await h.store.commit(Plan(writes=[Put("params", {"version": "3"})]))
    await h.store.commit(Plan(checks=[FieldIs("params", "version", "3")]))
    err = await refused(h, Plan(checks=[FieldIs("params", "version", "2")]))
    assert (err.reason, err.subject) == (CONFLICT, "params")
    # A missing field, and a missing record, read "".
    await h.store.commit(Plan(checks=[FieldIs("params", "other", "")]))
    await h.store.commit(Plan(checks=[FieldIs("nothing", "version", "")]))
    err = await refused(h, Plan(checks=[FieldIs("nothing", "version", "0", fail="STALE")]))
    assert (err.reason, err.subject) == ("STALE", "nothing")


async def test_the_first_failing_check_wins(h: Harness) -> None:
    await accounts(h, alice=1)
    err = await refused(
        h,
        Plan(
            checks=[
                Exists("a:alice", fail="FIRST_PASSES"),
                Absent("a:alice", fail="SECOND"),
                Exists("a:nobody", fail="THIRD"),
            ]
        ),
    )
    assert (err.reason, err.subject) == ("SECOND", "a:alice")
    assert str(err) == "SECOND a:alice"


async def test_checks_come_before_moves(h: Harness) -> None:
    err = await refused(
        h, Plan(checks=[Exists("a:nobody", fail="CHECK")], moves=[Move("x", "y", CREDIT, 1)])
    )
    assert (err.reason, err.subject) == ("CHECK", "a:nobody")


# -- moves ------------------------------------------------------------------------


async def test_a_move_to_or_from_a_missing_account_is_not_found(h: Harness) -> None:
    await accounts(h, alice=10)
    err = await refused(h, Plan(moves=[Move("alice", "nobody", CREDIT, 1)]))
    assert (err.reason, err.subject) == (NOT_FOUND, "nobody")
    err = await refused(h, Plan(moves=[Move("nobody", "alice", CREDIT, 1)]))
    assert (err.reason, err.subject) == (NOT_FOUND, "nobody")
    err = await refused(h, Plan(moves=[Move("ghost", "nobody", CREDIT, 1)]))
    assert (err.reason, err.subject) == (NOT_FOUND, "ghost")  # the debit is looked at first
    # Existence comes before funds, and holds for a move that would move nothing.
    err = await refused(h, Plan(moves=[Move("alice", "nobody", CREDIT, 100)]))
    assert (err.reason, err.subject) == (NOT_FOUND, "nobody")
    err = await refused(h, Plan(moves=[Move("alice", "nobody", CREDIT, 0, cap=True)]))
    assert (err.reason, err.subject) == (NOT_FOUND, "nobody")


async def test_an_account_created_in_the_same_plan_can_be_moved_to(h: Harness) -> None:
    await accounts(h, alice=10)
    got = await h.store.commit(
        Plan(
            moves=[Move("alice", "new", CREDIT, 4)],
            # The Put counts wherever it stands among the writes.
            writes=[IndexAdd("ix:accounts", "new"), Put("a:new", {"kind": "USER"})],
            read_back=["a:alice", "a:new"],
        )
    )
    assert got.records == {
        "a:alice": {"kind": "USER", CREDIT: "6"},
        "a:new": {"kind": "USER", CREDIT: "4"},
    }


async def test_a_move_beyond_the_balance_is_refused_with_its_short_reason(h: Harness) -> None:
    await accounts(h, alice=10, bob=0)
    err = await refused(h, Plan(moves=[Move("alice", "bob", CREDIT, 11)]))
    assert (err.reason, err.subject) == ("INSUFFICIENT_FUNDS", "alice")
    err = await refused(h, Plan(moves=[Move("alice", "bob", CREDIT, 11, short="ESCROW_SHORT")]))
    assert (err.reason, err.subject) == ("ESCROW_SHORT", "alice")
    assert str(err) == "ESCROW_SHORT alice"
    # Another asset is another balance.
    err = await refused(h, Plan(moves=[Move("alice", "bob", GOV, 1, short="GOV_SHORT")]))
    assert (err.reason, err.subject) == ("GOV_SHORT", "alice")
    # Exactly the balance is fine, and leaves zero.
    got = await h.store.commit(
        Plan(moves=[Move("alice", "bob", CREDIT, 10)], read_back=["a:alice", "a:bob"])
    )
    assert got.records["a:alice"][CREDIT] == "0"
    assert got.records["a:bob"][CREDIT] == "10"


async def test_a_capped_move_moves_at_most_the_balance(h: Harness) -> None:
    await accounts(h, pool=10, bob=0)

    async def capped(amount: int) -> Committed:
        return await h.store.commit(
            Plan(
                moves=[Move("pool", "bob", CREDIT, amount, cap=True)],
                entry=entry(f"tx-{amount}"),
                read_back=["a:pool", "a:bob"],
            )
        )

    less = await capped(3)
    assert less.entry is not None
    assert less.entry.postings == (Posting("pool", CREDIT, -3), Posting("bob", CREDIT, 3))
    exactly = await capped(7)
    assert exactly.entry is not None
    assert exactly.entry.postings == (Posting("pool", CREDIT, -7), Posting("bob", CREDIT, 7))
    assert exactly.records["a:pool"][CREDIT] == "0"
    await h.store.commit(Plan(writes=[Put("a:pool", {CREDIT: "5"})]))
    more = await capped(8)
    assert more.entry is not None
    assert more.entry.postings == (Posting("pool", CREDIT, -5), Posting("bob", CREDIT, 5))
    assert more.records == {
        "a:pool": {"kind": "USER", CREDIT: "0"},
        "a:bob": {"kind": "USER", CREDIT: "15"},
    }
    # An empty pool moves nothing: no postings, no log, but the entry is recorded.
    empty = await capped(4)
    assert empty.entry is not None
    assert empty.entry.postings == ()
    assert empty.records == more.records
    assert [e.seq for e in await h.store.log_page("pool", before_seq=None, limit=10)] == [3, 2, 1]
    assert (await h.store.ledger_page(after_seq=3, limit=10))[0] == empty.entry


async def test_a_zero_move_posts_nothing_and_touches_no_balance(h: Harness) -> None:
    await accounts(h, alice=5, bob=0)
    before = await h.store.read(["a:alice", "a:bob"])
    got = await h.store.commit(
        Plan(
            moves=[Move("alice", "bob", CREDIT, 0), Move("bob", "alice", CREDIT, 0, cap=True)],
            entry=entry(),
            read_back=["a:alice", "a:bob"],
        )
    )
    assert got.entry is not None and got.entry.postings == ()
    assert got.records == before
    assert await h.store.log_page("alice", before_seq=None, limit=10) == []


async def test_only_issuance_may_go_negative(h: Harness) -> None:
    await accounts(h, alice=0, treasury=0)
    await h.store.commit(Plan(writes=[Put(account_record(ISSUANCE), {"kind": "ISSUANCE"})]))
    got = await h.store.commit(
        Plan(
            moves=[Move(ISSUANCE, "alice", CREDIT, 70), Move(ISSUANCE, "alice", GOV, 5)],
            entry=entry(kind="MINT"),
            read_back=[account_record(ISSUANCE)],
        )
    )
    assert got.records[account_record(ISSUANCE)] == {"kind": "ISSUANCE", CREDIT: "-70", GOV: "-5"}
    got = await h.store.commit(
        Plan(moves=[Move(ISSUANCE, "alice", CREDIT, BIG)], read_back=[account_record(ISSUANCE)])
    )
    assert got.records[account_record(ISSUANCE)][CREDIT] == str(-70 - BIG)
    err = await refused(h, Plan(moves=[Move("treasury", "alice", CREDIT, 1)]))
    assert (err.reason, err.subject) == ("INSUFFICIENT_FUNDS", "treasury")


async def test_moves_see_the_moves_before_them(h: Harness) -> None:
    await accounts(h, a=10, b=5, c=0)
    # b holds 5 but receives 10 first: it can pay 15.
    got = await h.store.commit(
        Plan(
            moves=[Move("a", "b", CREDIT, 10), Move("b", "c", CREDIT, 15)],
            read_back=["a:a", "a:b", "a:c"],
        )
    )
    assert [int(got.records[f"a:{x}"][CREDIT]) for x in "abc"] == [0, 0, 15]
    # The other order refuses at the second move: nothing of the first lands.
    await h.store.commit(Plan(writes=[Put("a:a", {CREDIT: "10"}), Put("a:b", {CREDIT: "5"})]))
    err = await refused(
        h, Plan(moves=[Move("b", "c", CREDIT, 15, short="B_SHORT"), Move("a", "b", CREDIT, 10)])
    )
    assert (err.reason, err.subject) == ("B_SHORT", "b")
    # A debit spent by an earlier move: the second sees what is left.
    err = await refused(
        h, Plan(moves=[Move("a", "c", CREDIT, 6), Move("a", "b", CREDIT, 6, short="SECOND")])
    )
    assert (err.reason, err.subject) == ("SECOND", "a")
    capped = await h.store.commit(
        Plan(
            moves=[Move("a", "c", CREDIT, 6), Move("a", "b", CREDIT, 6, cap=True)],
            entry=entry(),
            read_back=["a:a"],
        )
    )
    assert capped.entry is not None
    assert capped.entry.postings[2:] == (Posting("a", CREDIT, -4), Posting("b", CREDIT, 4))
    assert capped.records["a:a"][CREDIT] == "0"


async def test_a_move_to_itself_posts_twice_and_keeps_the_balance(h: Harness) -> None:
    await accounts(h, a=10)
    got = await h.store.commit(
        Plan(moves=[Move("a", "a", CREDIT, 10)], entry=entry(), read_back=["a:a"])
    )
    assert got.entry is not None
    assert got.entry.postings == (Posting("a", CREDIT, -10), Posting("a", CREDIT, 10))
    assert got.records["a:a"][CREDIT] == "10"
    err = await refused(h, Plan(moves=[Move("a", "a", CREDIT, 11)]))
    assert (err.reason, err.subject) == ("INSUFFICIENT_FUNDS", "a")


async def test_amounts_beyond_2_pow_53_are_exact(h: Harness) -> None:
    await accounts(h, a=BIG + 1, b=BIG)
    got = await h.store.commit(
        Plan(
            moves=[Move("a", "b", CREDIT, BIG - 1), Move("a", "b", CREDIT, BIG, cap=True)],
            writes=[Add("a:b", "other", -(2**70))],
            entry=entry(),
            read_back=["a:a", "a:b"],
        )
    )
    assert got.records == {
        "a:a": {"kind": "USER", CREDIT: "0"},
        "a:b": {"kind": "USER", CREDIT: str(2 * BIG + 1), "other": str(-(2**70))},
    }
    assert got.entry is not None
    assert [p.amount for p in got.entry.postings] == [-(BIG - 1), BIG - 1, -2, 2]
    err = await refused(h, Plan(moves=[Move("b", "a", CREDIT, 2 * BIG + 2)]))
    assert err.reason == "INSUFFICIENT_FUNDS"
    assert (await h.store.ledger_page(after_seq=0, limit=5))[-1] == got.entry


@pytest.mark.parametrize("start", [2**52 - 2, 2**53 - 2, 10**15 - 1, 10**16 - 1])
async def test_balances_crossing_2_pow_52_and_2_pow_53_stay_exact(h: Harness, start: int) -> None:
    await accounts(h, a=start, b=start)
    await h.store.commit(Plan(writes=[Put(account_record(ISSUANCE), {CREDIT: str(-start)})]))
    got = await h.store.commit(
        Plan(
            moves=[
                Move(ISSUANCE, "a", CREDIT, 1),
                Move(ISSUANCE, "a", CREDIT, 2),
                Move("b", "a", CREDIT, start),
                Move("a", "b", CREDIT, 1, cap=True),
            ],
            writes=[Add("a:b", "n", start), Add("a:b", "n", start), Add("a:b", "n", -1)],
            read_back=["a:a", "a:b", account_record(ISSUANCE)],
        )
    )
    assert got.records == {
        "a:a": {"kind": "USER", CREDIT: str(2 * start + 2)},
        "a:b": {"kind": "USER", CREDIT: "1", "n": str(2 * start - 1)},
        account_record(ISSUANCE): {CREDIT: str(-start - 3)},
    }
    err = await refused(h, Plan(moves=[Move("a", "b", CREDIT, 2 * start + 3)]))
    assert err.reason == "INSUFFICIENT_FUNDS"


async def test_stored_integers_are_read_as_integers(h: Harness) -> None:
    """A balance Put as "007", "-0" or "" reads 7, 0, 0; a move writes it back canonical."""
    await h.store.commit(
        Plan(
            writes=[
                Put("a:a", {CREDIT: "007", GOV: ""}),
                Put("a:b", {CREDIT: "-0"}),
                Put("c", {"n": "0012"}),
            ]
        )
    )
    got = await h.store.commit(
        Plan(
            moves=[Move("a", "b", CREDIT, 1), Move("b", "a", GOV, 0, cap=True)],
            writes=[Add("c", "n", 1)],
            read_back=["a:a", "a:b", "c"],
        )
    )
    assert got.records == {"a:a": {CREDIT: "6", GOV: ""}, "a:b": {CREDIT: "1"}, "c": {"n": "13"}}
    err = await refused(h, Plan(moves=[Move("a", "b", GOV, 1)]))
    assert (err.reason, err.subject) == ("INSUFFICIENT_FUNDS", "a")


async def test_a_balance_that_is_no_integer_is_an_error_and_writes_nothing(h: Harness) -> None:
    await accounts(h, a=5, b=0)
    await h.store.commit(Plan(writes=[Put("a:a", {GOV: "lots"})]))
    before = await h.raw()
    with pytest.raises(ValueError):
        await h.store.commit(
            Plan(
                moves=[Move("a", "b", CREDIT, 1), Move("a", "b", GOV, 1)],
                writes=[Put("a:c", {"kind": "USER"})],
                entry=entry(),
                idem=Idem("k", "fp"),
            )
        )
    assert await h.raw() == before


# -- nothing written when refused -------------------------------------------------


def _busy_plan(**kw: Any) -> Plan:
    """A plan that writes everything a plan can write."""
    base = Plan(
        checks=[Exists("a:alice")],
        moves=[Move("alice", "bob", CREDIT, 3)],
        writes=[
            Put("a:carol", {"kind": "USER", CREDIT: "0"}),
            Add("a:bob", "streak", 1),
            Delete("a:dave"),
            IndexAdd("ix:accounts", "carol"),
            IndexAdd("ix:due", "carol", 5.0),
            IndexRemove("ix:accounts", "dave"),
        ],
        entry=entry("busy"),
        idem=Idem("caller:req-1", "fp-1"),
        read_back=["a:alice", "a:bob"],
    )
    return replace(base, **kw)


async def _setup_busy(h: Harness) -> None:
    await accounts(h, alice=10, bob=0, dave=1)
    await h.store.commit(
        Plan(
            writes=[IndexAdd("ix:accounts", "dave"), IndexAdd("ix:due", "dave", 1.0)],
            moves=[Move("dave", "alice", CREDIT, 1)],
            entry=entry("first"),
        )
    )


@pytest.mark.parametrize(
    "spoil",
    ["check", "missing-debit", "missing-credit", "short-second-move", "idem-mismatch"],
)
async def test_a_refused_plan_writes_nothing(h: Harness, spoil: str) -> None:
    await _setup_busy(h)
    plan = _busy_plan()
    if spoil == "check":
        plan = replace(plan, checks=[Exists("a:alice"), FieldIs("a:alice", "kind", "ADMIN")])
    elif spoil == "missing-debit":
        plan = replace(plan, moves=[*plan.moves, Move("erin", "bob", CREDIT, 1)])
    elif spoil == "missing-credit":
        plan = replace(plan, moves=[*plan.moves, Move("bob", "erin", CREDIT, 1)])
    elif spoil == "short-second-move":
        plan = replace(plan, moves=[*plan.moves, Move("alice", "bob", CREDIT, 9)])
    else:
        await h.store.commit(Plan(idem=Idem("caller:req-1", "other")))
    before_reads = (
        await h.store.read(["a:alice", "a:bob", "a:carol", "a:dave"]),
        await h.store.index_page("ix:accounts", limit=10),
        await h.store.index_due("ix:due", max_score=100, limit=10),
        await h.store.ledger_page(after_seq=0, limit=10),
        await h.store.log_page("alice", before_seq=None, limit=10),
    )
    err = await refused(h, plan)
    assert err.reason in (CONFLICT, NOT_FOUND, "INSUFFICIENT_FUNDS", IDEM_MISMATCH)
    assert before_reads == (
        await h.store.read(["a:alice", "a:bob", "a:carol", "a:dave"]),
        await h.store.index_page("ix:accounts", limit=10),
        await h.store.index_due("ix:due", max_score=100, limit=10),
        await h.store.ledger_page(after_seq=0, limit=10),
        await h.store.log_page("alice", before_seq=None, limit=10),
    )
    if spoil != "idem-mismatch":
        # The key was not remembered: the plan with the same key applies now, seq 2.
        done = await h.store.commit(_busy_plan())
        assert not done.replayed
        assert done.entry is not None and done.entry.seq == 2


async def test_a_committed_busy_plan_writes_everything(h: Harness) -> None:
    await _setup_busy(h)
    got = await h.store.commit(_busy_plan())
    assert got.records == {
        "a:alice": {"kind": "USER", CREDIT: "8"},
        "a:bob": {"kind": "USER", CREDIT: "3", "streak": "1"},
    }
    assert await h.store.read(["a:carol", "a:dave"]) == {
        "a:carol": {"kind": "USER", CREDIT: "0"},
        "a:dave": {},
    }
    assert await h.store.index_page("ix:accounts", limit=10) == ["carol"]
    assert await h.store.index_due("ix:due", max_score=10, limit=10) == ["dave", "carol"]


# -- idempotency ------------------------------------------------------------------


async def test_a_replay_returns_the_first_result_and_writes_nothing(h: Harness) -> None:
    await accounts(h, alice=10, bob=0)
    plan = Plan(
        moves=[Move("alice", "bob", CREDIT, 4)],
        writes=[Add("a:bob", "streak", 1)],
        entry=entry("tx-1", request_id="req-1", caller="alice"),
        idem=Idem("alice:req-1", "fp"),
        read_back=["a:alice", "a:bob"],
    )
    first = await h.store.commit(plan)
    assert not first.replayed
    await h.store.commit(Plan(writes=[Put("a:bob", {"changed": "later"})]))
    before = await h.raw()
    # The same key and fingerprint: the first result, even for another plan, one that
    # would be refused now (idempotency is looked at first), or a later read_back.
    for again in (
        plan,
        replace(plan, moves=[Move("alice", "bob", CREDIT, 1000)], read_back=["a:other"]),
        replace(plan, checks=[Exists("a:nobody")], entry=None),
    ):
        got = await h.store.commit(again)
        assert got == Committed(first.entry, first.records, replayed=True)
        assert await h.raw() == before
    assert await balance(h, "alice") == 6
    assert await last_seq(h) == 1


async def test_a_replay_of_a_plan_without_entry(h: Harness) -> None:
    await accounts(h, alice=10)
    plan = Plan(writes=[Add("a:alice", "n", 1)], idem=Idem("k", "fp"), read_back=["a:alice"])
    first = await h.store.commit(plan)
    assert first.entry is None
    got = await h.store.commit(plan)
    assert got == Committed(None, {"a:alice": {"kind": "USER", CREDIT: "10", "n": "1"}}, True)
    assert (await h.store.read(["a:alice"]))["a:alice"]["n"] == "1"


async def test_another_fingerprint_under_a_key_is_idem_mismatch(h: Harness) -> None:
    await accounts(h, alice=10, bob=0)
    await h.store.commit(
        Plan(moves=[Move("alice", "bob", CREDIT, 1)], idem=Idem("alice:req", "fp-a"))
    )
    err = await refused(
        h,
        Plan(
            checks=[Exists("a:nobody")],  # idempotency comes first
            moves=[Move("alice", "bob", CREDIT, 1)],
            idem=Idem("alice:req", "fp-b"),
        ),
    )
    assert (err.reason, err.subject) == (IDEM_MISMATCH, "alice:req")
    assert str(err) == f"{IDEM_MISMATCH} alice:req"


async def test_an_idempotency_key_expires_after_its_ttl(h: Harness) -> None:
    await accounts(h, alice=10, bob=0)
    ttl = 0.5 if h.kind == "redis" else 64.0

    def plan(tx: str) -> Plan:
        return Plan(
            moves=[Move("alice", "bob", CREDIT, 1)],
            entry=entry(tx),
            idem=Idem("alice:req", "fp", ttl_s=ttl),
        )

    first = await h.store.commit(plan("tx-1"))
    assert first.entry is not None and first.entry.seq == 1
    if h.clock is not None:
        await h.elapse(ttl - 0.5)
    replayed = await h.store.commit(plan("tx-2"))
    assert replayed.replayed and replayed.entry == first.entry
    if h.clock is not None:
        await h.elapse(0.5)  # exactly the TTL: expired
        again = await h.store.commit(plan("tx-3"))
    else:

        async def applied() -> Committed | None:
            got = await h.store.commit(plan("tx-3"))
            return None if got.replayed else got

        again = await eventually(applied, timeout=5, interval=0.05)
    assert again is not None and not again.replayed
    assert again.entry is not None and again.entry.seq == 2
    assert again.entry.transaction_id == "tx-3"
    assert await balance(h, "alice") == 8


async def test_replay_reads_a_stored_result_and_applies_nothing(h: Harness) -> None:
    await accounts(h, alice=10, bob=0)
    idem = Idem("alice:req", "fp")
    assert await h.store.replay(idem) is None
    first = await h.store.commit(
        Plan(
            moves=[Move("alice", "bob", CREDIT, 3)],
            entry=entry("tx-1", refs={"escrow_id": "e"}),
            idem=idem,
            read_back=["a:alice"],
        )
    )
    await h.store.commit(Plan(writes=[Put("a:alice", {"later": "1"})]))
    before = await h.raw()
    assert await h.store.replay(idem) == Committed(first.entry, first.records, replayed=True)
    assert await h.store.replay(Idem("alice:req", "fp", ttl_s=1.0)) is not None  # ttl: no part
    with pytest.raises(Refused) as info:
        await h.store.replay(Idem("alice:req", "other"))
    assert (info.value.reason, info.value.subject) == (IDEM_MISMATCH, "alice:req")
    assert await h.store.replay(Idem("bob:req", "fp")) is None
    assert await h.raw() == before
    # A stored result without an entry.
    no_entry = await h.store.commit(Plan(idem=Idem("k2", "fp2"), read_back=["a:bob"]))
    assert await h.store.replay(Idem("k2", "fp2")) == replace(no_entry, replayed=True)


async def test_replay_forgets_an_expired_key(h: Harness) -> None:
    ttl = 0.3 if h.kind == "redis" else 8.0
    await h.store.commit(Plan(idem=Idem("k", "fp", ttl_s=ttl)))
    assert await h.store.replay(Idem("k", "fp")) is not None
    if h.clock is not None:
        await h.elapse(ttl)
        assert await h.store.replay(Idem("k", "fp")) is None
    else:

        async def forgotten() -> bool:
            return await h.store.replay(Idem("k", "fp")) is None

        await eventually(forgotten, timeout=5, interval=0.05)


async def test_a_ttl_of_zero_keeps_no_key(h: Harness) -> None:
    await accounts(h, alice=10, bob=0)
    plan = Plan(moves=[Move("alice", "bob", CREDIT, 1)], idem=Idem("k", "fp", ttl_s=0))
    await h.store.commit(plan)
    assert not (await h.store.commit(plan)).replayed
    assert await balance(h, "alice") == 8


# -- writes -----------------------------------------------------------------------


async def test_add_counts_a_missing_field_or_record_as_zero(h: Harness) -> None:
    await accounts(h, alice=10)
    got = await h.store.commit(
        Plan(
            writes=[
                Add("a:alice", "streak", 3),
                Add("a:alice", "streak", -1),
                Add("a:alice", CREDIT, -4),
                Add("counters", "n", -2),
            ],
            read_back=["a:alice", "counters"],
        )
    )
    assert got.records == {
        "a:alice": {"kind": "USER", CREDIT: "6", "streak": "2"},
        "counters": {"n": "-2"},
    }


async def test_writes_apply_in_the_kernel_order(h: Harness) -> None:
    """Puts, then final balances, then Add/Delete/Index in plan order."""
    await accounts(h, alice=10, bob=0)
    got = await h.store.commit(
        Plan(
            moves=[Move("alice", "bob", CREDIT, 4)],
            writes=[
                Add("a:bob", CREDIT, 1),  # after the balance: 4 + 1
                Put("a:bob", {CREDIT: "100", "name": "Bob"}),  # its CREDIT loses to the move
                Add("a:bob", "name2", 1),
                Put("a:alice", {"name": "Alice", "x": "7", CREDIT: "999"}),  # the move wins
                Add("a:alice", "x", 1),  # sees the Put: 8
                Delete("tmp"),
                Add("tmp", "n", 5),  # after the Delete: a fresh record
                Put("tmp", {"old": "yes"}),  # Puts come first, the Delete removes them
                Put("gone", {"a": "1"}),
                Delete("gone"),
            ],
            read_back=["a:alice", "a:bob", "tmp", "gone"],
        )
    )
    assert got.records == {
        "a:alice": {"kind": "USER", CREDIT: "6", "name": "Alice", "x": "8"},
        "a:bob": {"kind": "USER", CREDIT: "5", "name": "Bob", "name2": "1"},
        "tmp": {"n": "5"},
        "gone": {},
    }
    assert await h.store.read(["a:alice", "a:bob", "tmp", "gone"]) == got.records


async def test_put_sets_fields_and_keeps_the_others(h: Harness) -> None:
    await h.store.commit(Plan(writes=[Put("r", {"a": "1", "b": "2"})]))
    await h.store.commit(Plan(writes=[Put("r", {"b": "3", "c": ""})]))
    assert await h.store.read(["r"]) == {"r": {"a": "1", "b": "3", "c": ""}}


async def test_delete_removes_a_record(h: Harness) -> None:
    await accounts(h, alice=10)
    got = await h.store.commit(
        Plan(writes=[Delete("a:alice"), Delete("never")], read_back=["a:alice"])
    )
    assert got.records == {"a:alice": {}}
    assert await h.store.read(["a:alice"]) == {"a:alice": {}}
    err = await refused(h, Plan(checks=[Exists("a:alice")]))
    assert err.subject == "a:alice"
    err = await refused(h, Plan(moves=[Move(ISSUANCE, "alice", CREDIT, 1)]))
    assert err.reason == NOT_FOUND


async def test_add_to_a_field_that_is_no_integer_is_an_error(h: Harness) -> None:
    await h.store.commit(Plan(writes=[Put("r", {"name": "x"})]))
    with pytest.raises(ValueError):
        await h.store.commit(Plan(writes=[Add("r", "name", 1)]))
    assert await h.store.read(["r"]) == {"r": {"name": "x"}}


async def test_a_failing_add_writes_nothing(h: Harness) -> None:
    await accounts(h, alice=10, bob=0)
    await h.store.commit(Plan(writes=[Put("r", {"name": "x"})]))
    before = await h.raw()
    with pytest.raises(ValueError):
        await h.store.commit(
            Plan(
                moves=[Move("alice", "bob", CREDIT, 1)],
                writes=[Put("a:carol", {"kind": "USER"}), Add("r", "name", 1)],
                entry=entry(),
            )
        )
    assert await h.raw() == before


# -- indexes ----------------------------------------------------------------------


async def test_index_add_remove_and_rescore(h: Harness) -> None:
    await h.store.commit(
        Plan(
            writes=[
                IndexAdd("ix:due", "a", 30.0),
                IndexAdd("ix:due", "b", 10.0),
                IndexAdd("ix:due", "c", 20.0),
                IndexAdd("ix:lex", "x"),
                IndexAdd("ix:lex", "x"),  # twice: once
            ]
        )
    )
    assert await h.store.index_due("ix:due", max_score=100, limit=10) == ["b", "c", "a"]
    assert await h.store.index_page("ix:lex", limit=10) == ["x"]
    await h.store.commit(
        Plan(
            writes=[
                IndexAdd("ix:due", "a", 5.0),  # re-scored, not added twice
                IndexRemove("ix:due", "c"),
                IndexRemove("ix:due", "never"),
                IndexRemove("ix:lex", "x"),
            ]
        )
    )
    assert await h.store.index_due("ix:due", max_score=100, limit=10) == ["a", "b"]
    assert await h.store.index_page("ix:lex", limit=10) == []
    # Removed and added again in one plan, in order: present; added then removed: absent.
    await h.store.commit(
        Plan(
            writes=[
                IndexRemove("ix:due", "b"),
                IndexAdd("ix:due", "b", 1.0),
                IndexAdd("ix:due", "z", 1.0),
                IndexRemove("ix:due", "z"),
            ]
        )
    )
    assert await h.store.index_due("ix:due", max_score=100, limit=10) == ["b", "a"]


async def test_index_page_forward_reverse_after_and_limit(h: Harness) -> None:
    members = ["m1", "m2", "m3", "m4", "m5"]
    await h.store.commit(Plan(writes=[IndexAdd("ix", m) for m in reversed(members)]))
    page = h.store.index_page
    assert await page("ix", limit=5) == members
    assert await page("ix", limit=6) == members
    assert await page("ix", limit=4) == members[:4]
    assert await page("ix", after="m2", limit=2) == ["m3", "m4"]
    assert await page("ix", after="m2", limit=3) == ["m3", "m4", "m5"]
    assert await page("ix", after="m2", limit=4) == ["m3", "m4", "m5"]
    assert await page("ix", after="m2a", limit=10) == ["m3", "m4", "m5"]  # not a member
    assert await page("ix", after="m5", limit=10) == []
    assert await page("ix", after="a", limit=1) == ["m1"]
    assert await page("ix", limit=5, reverse=True) == members[::-1]
    assert await page("ix", limit=6, reverse=True) == members[::-1]
    assert await page("ix", after="m4", limit=3, reverse=True) == ["m3", "m2", "m1"]
    assert await page("ix", after="m4", limit=4, reverse=True) == ["m3", "m2", "m1"]
    assert await page("ix", after="m4", limit=2, reverse=True) == ["m3", "m2"]
    assert await page("ix", after="m1", limit=2, reverse=True) == []
    assert await page("ix", after="z", limit=1, reverse=True) == ["m5"]
    assert await page("ix", limit=0) == []
    assert await page("missing", limit=10) == []
    # Member order is code point order, for any text.
    await h.store.commit(Plan(writes=[IndexAdd("u", m) for m in ("é", "z", "Z", "😀", "a:b")]))
    assert await page("u", limit=10) == sorted(["é", "z", "Z", "😀", "a:b"])


async def test_index_page_walks_a_whole_index(h: Harness) -> None:
    members = sorted(f"acct-{i:03d}" for i in range(23))
    await h.store.commit(Plan(writes=[IndexAdd("ix", m) for m in members]))
    for reverse in (False, True):
        seen: list[str] = []
        after = ""
        while True:
            got = await h.store.index_page("ix", after=after, limit=5, reverse=reverse)
            if not got:
                break
            seen += got
            after = got[-1]
        assert seen == (members[::-1] if reverse else members)


async def test_index_due_orders_by_score_and_includes_max_score(h: Harness) -> None:
    await h.store.commit(
        Plan(
            writes=[
                IndexAdd("due", "late", 1_700_000_100.5),
                IndexAdd("due", "b-tie", 1_700_000_000.25),
                IndexAdd("due", "a-tie", 1_700_000_000.25),
                IndexAdd("due", "early", 1_699_999_999.0),
                IndexAdd("due", "never", float("inf")),
            ]
        )
    )
    due = h.store.index_due
    all_but_never = ["early", "a-tie", "b-tie", "late"]
    assert await due("due", max_score=1_700_000_100.5, limit=10) == all_but_never
    assert await due("due", max_score=1_700_000_100.4999, limit=10) == all_but_never[:3]
    assert await due("due", max_score=1_700_000_000.25, limit=10) == all_but_never[:3]
    assert await due("due", max_score=1_700_000_000.2499, limit=10) == ["early"]
    assert await due("due", max_score=1_600_000_000, limit=10) == []
    assert await due("due", max_score=float("inf"), limit=10) == [*all_but_never, "never"]
    assert await due("due", max_score=2e9, limit=3) == all_but_never[:3]
    assert await due("due", max_score=2e9, limit=4) == all_but_never
    assert await due("due", max_score=2e9, limit=5) == all_but_never
    assert await due("due", max_score=2e9, limit=0) == []
    assert await due("missing", max_score=2e9, limit=5) == []


# -- the ledger -------------------------------------------------------------------


async def test_entries_get_consecutive_seqs_and_postings_in_move_order(h: Harness) -> None:
    await accounts(h, alice=100, bob=0, treasury=0)
    first = await h.store.commit(
        Plan(
            checks=[FieldIs("params", "version", "")],
            moves=[Move("alice", "bob", CREDIT, 10), Move("alice", "treasury", CREDIT, 1)],
            entry=Entry(
                "tx-1",
                "TRANSFER",
                1_700_000_000.123456,
                request_id="req-1",
                caller="client:alice",
                memo="lunch é 😀",
                refs={"escrow_id": "e-1", "task_id": "t/1"},
            ),
            read_back=["a:alice"],
        )
    )
    assert first.entry == StoredEntry(
        seq=1,
        transaction_id="tx-1",
        kind="TRANSFER",
        time=1_700_000_000.123456,
        request_id="req-1",
        caller="client:alice",
        memo="lunch é 😀",
        refs={"escrow_id": "e-1", "task_id": "t/1"},
        postings=(
            Posting("alice", CREDIT, -10),
            Posting("bob", CREDIT, 10),
            Posting("alice", CREDIT, -1),
            Posting("treasury", CREDIT, 1),
        ),
    )
    assert isinstance(first.entry.time, float)
    # A plan without an entry takes no seq; one without moves still does.
    await h.store.commit(Plan(moves=[Move("alice", "bob", CREDIT, 1)]))
    second = await h.store.commit(Plan(entry=entry("tx-2", kind="PARAMETER_CHANGE", time=5.0)))
    assert second.entry == StoredEntry(2, "tx-2", "PARAMETER_CHANGE", 5.0, "", "", "", {}, ())
    third = await h.store.commit(Plan(moves=[Move("bob", "alice", CREDIT, 2)], entry=entry("tx-3")))
    assert third.entry is not None and third.entry.seq == 3
    ledger = await h.store.ledger_page(after_seq=0, limit=10)
    assert ledger == [first.entry, second.entry, third.entry]
    assert isinstance(ledger[0].time, float)
    assert isinstance(ledger[0].refs, dict)


async def test_ledger_page_after_seq(h: Harness) -> None:
    await accounts(h, a=100, b=0)
    made = []
    for i in range(7):
        got = await h.store.commit(
            Plan(moves=[Move("a", "b", CREDIT, i + 1)], entry=entry(f"tx-{i}"))
        )
        made.append(got.entry)
    page = h.store.ledger_page
    assert await page(after_seq=0, limit=7) == made
    assert await page(after_seq=0, limit=8) == made
    assert await page(after_seq=0, limit=3) == made[:3]
    assert await page(after_seq=3, limit=3) == made[3:6]
    assert await page(after_seq=6, limit=3) == made[6:]
    assert await page(after_seq=7, limit=3) == []
    assert await page(after_seq=-5, limit=2) == made[:2]
    assert await page(after_seq=0, limit=0) == []


async def test_log_page_pages_an_account_newest_first(h: Harness) -> None:
    await accounts(h, a=100, b=0, c=0)
    mine = []
    for i in range(6):
        other = "b" if i % 2 == 0 else "c"
        got = await h.store.commit(
            Plan(moves=[Move("a", other, CREDIT, 1)], entry=entry(f"tx-{i}"))
        )
        mine.append(got.entry)
    log = h.store.log_page
    newest = mine[::-1]
    assert await log("a", before_seq=None, limit=6) == newest
    assert await log("a", before_seq=None, limit=7) == newest
    assert await log("a", before_seq=None, limit=2) == newest[:2]
    assert await log("a", before_seq=5, limit=2) == [mine[3], mine[2]]
    assert await log("a", before_seq=2, limit=5) == [mine[0]]
    assert await log("a", before_seq=1, limit=5) == []
    assert await log("b", before_seq=None, limit=10) == [mine[4], mine[2], mine[0]]
    assert await log("c", before_seq=5, limit=10) == [mine[3], mine[1]]
    assert await log("nobody", before_seq=None, limit=10) == []
    assert await log("a", before_seq=None, limit=0) == []
    # Paging by the last seq of each page walks the whole log.
    seen: list[StoredEntry] = []
    before: int | None = None
    while page := await log("a", before_seq=before, limit=4):
        seen += page
        before = page[-1].seq
    assert seen == newest


async def test_an_entry_is_logged_once_per_account(h: Harness) -> None:
    await accounts(h, a=10, b=0)
    got = await h.store.commit(
        Plan(
            moves=[Move("a", "b", CREDIT, 1), Move("a", "b", CREDIT, 2), Move("b", "a", CREDIT, 1)],
            entry=entry(),
        )
    )
    assert await h.store.log_page("a", before_seq=None, limit=10) == [got.entry]
    assert await h.store.log_page("b", before_seq=None, limit=10) == [got.entry]


async def test_also_log_lists_the_entry_in_more_logs_once(h: Harness) -> None:
    await accounts(h, a=10, b=0)
    moved = await h.store.commit(
        Plan(
            moves=[Move("a", "b", CREDIT, 1)],
            entry=entry("tx-1", also_log=["watcher", "b", "watcher", "a"]),
        )
    )
    # Also an entry that posts nothing (its only logs are also_log's).
    quiet = await h.store.commit(
        Plan(moves=[Move("b", "a", CREDIT, 0)], entry=entry("tx-2", also_log=["watcher", "c"]))
    )
    log = h.store.log_page
    assert await log("a", before_seq=None, limit=10) == [moved.entry]
    assert await log("b", before_seq=None, limit=10) == [moved.entry]
    assert await log("watcher", before_seq=None, limit=10) == [quiet.entry, moved.entry]
    assert await log("c", before_seq=None, limit=10) == [quiet.entry]
    assert quiet.entry is not None and quiet.entry.postings == ()
    # A plan without an entry logs nothing; a refused one neither.
    await refused(
        h, Plan(moves=[Move("b", "a", CREDIT, 99)], entry=entry("tx-3", also_log=["late"]))
    )
    assert await log("late", before_seq=None, limit=10) == []


# -- reads ------------------------------------------------------------------------


async def test_read_and_read_back_of_missing_records_are_empty(h: Harness) -> None:
    await accounts(h, alice=3)
    assert await h.store.read([]) == {}
    assert await h.store.read(["a:nobody"]) == {"a:nobody": {}}
    assert await h.store.read(["a:alice", "a:nobody", "params"]) == {
        "a:alice": {"kind": "USER", CREDIT: "3"},
        "a:nobody": {},
        "params": {},
    }
    got = await h.store.commit(Plan(read_back=["a:nobody", "a:alice"]))
    assert got == Committed(None, {"a:nobody": {}, "a:alice": {"kind": "USER", CREDIT: "3"}})
    assert (await h.store.commit(Plan())) == Committed(None, {})


async def test_text_round_trips_exactly(h: Harness) -> None:
    odd = 'é 😀 "quoted" \\ / \n\t \x00 {tag}'
    await accounts(h, **{"ünï": 5})
    await h.store.commit(
        Plan(
            writes=[Put(f"r:{odd}", {odd: odd, "empty": ""}), IndexAdd(f"ix:{odd}", odd)],
            moves=[Move("ünï", "ünï", CREDIT, 1)],
            entry=entry(odd, kind=odd, memo=odd, refs={odd: odd}),
        )
    )
    assert await h.store.read([f"r:{odd}"]) == {f"r:{odd}": {odd: odd, "empty": ""}}
    assert await h.store.index_page(f"ix:{odd}", limit=5) == [odd]
    [stored] = await h.store.log_page("ünï", before_seq=None, limit=5)
    assert (stored.transaction_id, stored.kind, stored.memo) == (odd, odd, odd)
    assert stored.refs == {odd: odd}
    assert stored.postings == (Posting("ünï", CREDIT, -1), Posting("ünï", CREDIT, 1))


# -- Redis only -------------------------------------------------------------------


async def test_redis_keys_share_one_hash_tag_and_idem_keys_expire(redis_url: str) -> None:
    from meshwright.economy.redis_store import RedisLedgerStore

    store = RedisLedgerStore.from_url(redis_url, prefix="eco-keys")
    try:
        await store.commit(
            Plan(writes=[Put("a:alice", {CREDIT: "5"}), Put("a:bob", {CREDIT: "0"})])
        )
        await store.commit(
            Plan(
                moves=[Move("alice", "bob", CREDIT, 2)],
                writes=[IndexAdd("ix:accounts", "alice")],
                entry=entry(),
                idem=Idem("alice:req", "fp"),
            )
        )
        r = store._r
        keys = sorted([k.decode() async for k in r.scan_iter(match="*")])
        assert keys == [
            "{eco-keys}:i:ix:accounts",
            "{eco-keys}:k:alice:req",
            "{eco-keys}:l:alice",
            "{eco-keys}:l:bob",
            "{eco-keys}:ledger",
            "{eco-keys}:r:a:alice",
            "{eco-keys}:r:a:bob",
            "{eco-keys}:seq",
        ]
        ttl_ms = await r.pttl("{eco-keys}:k:alice:req")
        assert 86_000_000 < ttl_ms <= 86_400_000
        assert await r.type("{eco-keys}:ledger") == b"stream"
        assert [sid for sid, _ in await r.xrange("{eco-keys}:ledger")] == [b"1-0"]
        for other in keys[1:]:
            assert await r.ttl(other) == -1 or other.startswith("{eco-keys}:k:")
    finally:
        await store.close()


def test_a_prefix_holding_a_brace_is_refused() -> None:
    from meshwright.economy.redis_store import RedisLedgerStore

    for bad in ("", "a{b", "a}b"):
        with pytest.raises(ValueError):
            RedisLedgerStore.from_url("redis://127.0.0.1:1/0", prefix=bad)


async def test_unreachable_redis_is_unavailable() -> None:
    from meshwright.economy.redis_store import RedisLedgerStore

    store = RedisLedgerStore.from_url(f"redis://127.0.0.1:{free_port()}/0")
    try:
        calls: list[Callable[[], Awaitable[object]]] = [
            lambda: store.commit(Plan(moves=[Move("a", "b", CREDIT, 1)])),
            lambda: store.read(["a:a"]),
            lambda: store.read(["a:a", "a:b"]),
            lambda: store.index_page("ix", limit=5),
            lambda: store.index_due("ix", max_score=1.0, limit=5),
            lambda: store.log_page("a", before_seq=None, limit=5),
            lambda: store.ledger_page(after_seq=0, limit=5),
        ]
        for call in calls:
            with pytest.raises(Unavailable):
                await call()
    finally:
        await store.close()

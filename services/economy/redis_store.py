"""The ledger kernel on Redis: the economy shared by replicas and kept across restarts.

Same kernel as ``MemoryLedgerStore`` (the reference), evaluated by one Lua script
(``lua/commit.lua``) in the kernel's order: idempotency, checks, moves against a
balance overlay, and only then the writes. Lua has no rollback, so everything
that can refuse or fail is settled before the first write.

Keys (``B`` = ``{<prefix>}``, default ``{mw:eco}``):

- ``B:r:<record>``: hash, a record (``a:<account>`` holds its balances in fields
  named by asset, decimal strings of any size).
- ``B:i:<index>``: sorted set, an index (lexicographic ones score every member 0:
  ``index_page`` is ``ZRANGEBYLEX``; scored ones: ``index_due`` is
  ``ZRANGEBYSCORE``).
- ``B:l:<account>``: sorted set, the account's log (entries posting to it or naming it
  in ``also_log``), member and score = entry seq.
- ``B:ledger``: stream, every entry under the explicit id ``<seq>-0``, field
  ``e`` = the entry as JSON (``transaction_id``, ``kind``, ``time``,
  ``request_id``, ``caller``, ``memo``, ``refs``, ``postings`` as
  ``[account, asset, amount]``).
- ``B:seq``: the last entry seq (consecutive from 1).
- ``B:k:<idempotency key>``: the first application's result (fingerprint, seq,
  effective amounts, read_back records as JSON), ``SET ... PX`` the key's TTL;
  ``replay`` reads it (and the entry by its stream id) without a script.

Every key carries the one hash tag ``B``, so one script may touch any of them:
the commit script derives the keys of a plan's records, indexes and logs from
``B`` (passed as ``KEYS[1]``) instead of being told each (a ledger transaction
touches a data-dependent set of accounts). The whole ledger therefore lives in
one slot: safe on Redis Cluster, not sharded by it.

Integers are exact at any size: the script computes in Lua numbers below 2^52 and
in decimal strings beyond. A stored integer field reads as an optional ``-`` and
digits (what the kernel writes; ``""`` or a missing field is 0); anything else
(``" 5"``, ``"+5"``, which Python's ``int`` would take) is a ``ValueError``, raised
before anything is written.

The server must not evict (``maxmemory-policy noeviction``): an evicted
balance or ``B:seq`` is money or history lost. Commands are not retried by this
store's own client (``from_url``): a retried script whose first try ran would
apply twice without an idempotency key, so a lost connection is ``Unavailable``
and the caller retries with its key. A client passed in should not retry either.

Only this module imports ``redis``; nothing imports it unless a ``redis://``
economy store is chosen.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from itertools import chain
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from meshwright.economy.kernel import (
    IDEM_MISMATCH,
    ISSUANCE,
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
)
from meshwright.mesh import telemetry
from meshwright.mesh.redis_io import unavailable_on_redis_errors

P = ParamSpec("P")
R = TypeVar("R")

_DUMPS = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
"""Plans to the script (non-ASCII text as UTF-8: cjson passes it through)."""
_HEAD = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
"""Entries (``time`` may be any float)."""
_JSON_STR: Callable[[str], str] = json.encoder.encode_basestring
"""A JSON string literal, non-ASCII kept (``json.dumps(ensure_ascii=False)``'s own)."""
_LIMIT = 2**52
"""Integers below this in magnitude travel as JSON numbers (commit.lua: Lua numbers)."""


_io = unavailable_on_redis_errors("ledger store")
"""Redis connection failures become ``Unavailable`` (a gRPC UNAVAILABLE, retryable)."""


@functools.cache
def _script_source(name: str) -> str:
    return (Path(__file__).with_name("lua") / f"{name}.lua").read_text(encoding="utf-8")


def _check_prefix(prefix: str) -> None:
    if not prefix or "{" in prefix or "}" in prefix:
        raise ValueError("prefix must be non-empty and hold no '{' or '}' (it is the hash tag)")


_DB = {"db.system": "redis"}
"""The attributes of this backend's spans (OpenTelemetry's database conventions)."""


class RedisLedgerStore:
    """``LedgerStore`` on one Redis server (or a cluster: the ledger is one slot)."""

    def __init__(self, client: aioredis.Redis, *, prefix: str = "mw:eco") -> None:
        """``client`` is the caller's (closed by the caller), made with
        ``decode_responses`` off and without command retries (see the module
        docstring)."""
        _check_prefix(prefix)
        self._r = client
        self._owned: list[aioredis.Redis] = []
        base = f"{{{prefix}}}"
        self._base = base
        self._rec = f"{base}:r:"
        self._ix = f"{base}:i:"
        self._ledger = f"{base}:ledger"
        self._idem = f"{base}:k:"
        self._commit = self._script("commit")
        self._log_page = self._script("log_page")

    @classmethod
    def from_url(
        cls, url: str, *, max_connections: int = 64, prefix: str = "mw:eco"
    ) -> RedisLedgerStore:
        """A store on ``redis://host:port/db`` (or ``rediss://``) with a pool of its own
        of ``max_connections`` (callers wait for a free one); ``close()`` closes it."""
        _check_prefix(prefix)
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=20, socket_connect_timeout=5
        )
        client = aioredis.Redis.from_pool(pool)  # from_pool: closing the client closes the pool
        store = cls(client, prefix=prefix)
        store._owned = [client]
        return store

    def _script(self, name: str) -> AsyncScript:
        return self._r.register_script(_script_source(name))

    async def _run(self, script: AsyncScript, *args: str | int) -> Any:
        """EVALSHA with the prefix as the one key (loading the script if the server lost
        it); what ``AsyncScript.__call__`` does, minus its per-call overhead."""
        try:
            return await self._r.evalsha(script.sha, 1, self._base, *args)
        except NoScriptError:
            script.sha = await self._r.script_load(script.script)
            return await self._r.evalsha(script.sha, 1, self._base, *args)

    # The kernel --------------------------------------------------------------

    @_io
    @telemetry.traced("redis commit", **_DB)
    async def commit(self, plan: Plan) -> Committed:
        entry = plan.entry
        head = "" if entry is None else _entry_head(entry)
        reply = await self._run(self._commit, _encode(plan), head, ISSUANCE)
        status = reply[0]
        if status == 1:
            _, seq, amounts, records = json.loads(reply[1])
            stored = None if entry is None else _new_entry(entry, int(seq), plan.moves, amounts)
            return Committed(stored, _records(records))
        if status == 0:
            raise Refused(reply[1].decode(), reply[2].decode())
        if status == 2:
            assert plan.idem is not None
            return self._replayed(plan.idem, json.loads(reply[1]), reply[2])
        raise ValueError(reply[1].decode())

    @_io
    @telemetry.traced("redis replay", **_DB)
    async def replay(self, idem: Idem) -> Committed | None:
        stored = await self._r.get(self._idem + idem.key)
        if stored is None:
            return None
        result = json.loads(stored)
        seq = result[1]
        data = None
        if seq != "0" and result[0] == idem.fingerprint:
            got = _stream(await self._r.xrange(self._ledger, f"{seq}-0", f"{seq}-0"))
            data = got[0][1][b"e"] if got else None
        return self._replayed(idem, result, data)

    def _replayed(self, idem: Idem, result: list[Any], data: bytes | None) -> Committed:
        """The Committed a stored idempotency result stands for (``data``: its entry)."""
        fingerprint, seq, _, records = result
        if fingerprint != idem.fingerprint:
            raise Refused(IDEM_MISMATCH, idem.key)
        if seq == "0":
            return Committed(None, _records(records), replayed=True)
        if data is None:
            raise RuntimeError(f"ledger entry {seq} is missing from {self._ledger}")
        return Committed(_parse_entry(int(seq), data), _records(records), replayed=True)

    # Reads -------------------------------------------------------------------

    @_io
    @telemetry.traced("redis read", **_DB)
    async def read(self, records: Sequence[str]) -> dict[str, dict[str, str]]:
        if not records:
            return {}
        if len(records) == 1:
            rows = [await self._r.hgetall(self._rec + records[0])]
        else:
            async with self._r.pipeline(transaction=True) as pipe:  # one moment
                for name in records:
                    pipe.hgetall(self._rec + name)
                rows = await pipe.execute()
        return {name: _row(row) for name, row in zip(records, cast(list[Any], rows), strict=True)}

    @_io
    @telemetry.traced("redis index_page", **_DB)
    async def index_page(
        self, index: str, *, after: str = "", limit: int, reverse: bool = False
    ) -> list[str]:
        if limit <= 0:
            return []
        key = self._ix + index
        if reverse:
            got = await self._r.zrevrangebylex(
                key, f"({after}" if after else "+", "-", start=0, num=limit
            )
        else:
            got = await self._r.zrangebylex(
                key, f"({after}" if after else "-", "+", start=0, num=limit
            )
        return [_bytes(m).decode() for m in got]

    @_io
    @telemetry.traced("redis index_due", **_DB)
    async def index_due(self, index: str, *, max_score: float, limit: int) -> list[str]:
        if limit <= 0 or math.isnan(max_score):
            return []
        got = await self._r.zrangebyscore(
            self._ix + index, "-inf", _score(max_score), start=0, num=limit
        )
        return [_bytes(m).decode() for m in got]

    @_io
    @telemetry.traced("redis log_page", **_DB)
    async def log_page(
        self, account_id: str, *, before_seq: int | None, limit: int
    ) -> list[StoredEntry]:
        if limit <= 0:
            return []
        top = "+inf" if before_seq is None else f"({int(before_seq)}"
        flat = await self._run(self._log_page, account_id, top, limit)
        out = []
        for i in range(0, len(flat), 2):
            seq, data = int(flat[i]), flat[i + 1]
            if data is None:
                raise RuntimeError(f"ledger entry {seq} is missing from {self._ledger}")
            out.append(_parse_entry(seq, data))
        return out

    @_io
    @telemetry.traced("redis ledger_page", **_DB)
    async def ledger_page(self, *, after_seq: int, limit: int) -> list[StoredEntry]:
        if limit <= 0:
            return []
        start = max(int(after_seq), 0) + 1
        got = _stream(await self._r.xrange(self._ledger, f"{start}-0", "+", count=limit))
        return [_parse_entry(int(sid.split(b"-", 1)[0]), fields[b"e"]) for sid, fields in got]

    async def close(self) -> None:
        for client in self._owned:
            await client.aclose()
        self._owned = []


# -- encoding ---------------------------------------------------------------------


def _encode(plan: Plan) -> str:
    """The plan as commit.lua's ARGV[1] (see its header)."""
    checks: list[str] = []
    for c in plan.checks:
        if isinstance(c, FieldIs):
            checks += ("F", c.record, c.field, c.value, c.fail)
        elif isinstance(c, Exists):
            checks += ("E", c.record, "", "", c.fail)
        elif isinstance(c, Absent):
            checks += ("A", c.record, "", "", c.fail)
        else:
            raise TypeError(f"not a check: {c!r}")
    moves: list[str | int] = []
    for m in plan.moves:
        moves += (m.debit, m.credit, m.asset, _int(m.amount), m.short, 1 if m.cap else 0)
    puts: list[str | list[str]] = []
    ops: list[str | int] = []
    for w in plan.writes:
        if isinstance(w, Put):
            puts += (w.record, list(chain.from_iterable(w.fields.items())))
        elif isinstance(w, Add):
            ops += ("A", w.record, w.field, _int(w.delta))
        elif isinstance(w, Delete):
            ops += ("D", w.record)
        elif isinstance(w, IndexAdd):
            ops += ("I", w.index, w.member, _score(w.score))
        elif isinstance(w, IndexRemove):
            ops += ("R", w.index, w.member)
        else:
            raise TypeError(f"not a write: {w!r}")
    idem = plan.idem
    if idem is None:
        key, fingerprint, ttl = "", "", "0"
    else:
        key, fingerprint = idem.key, idem.fingerprint
        ttl = str(max(1, math.ceil(idem.ttl_s * 1000 - 1e-6))) if idem.ttl_s > 0 else "0"
    also_log = [] if plan.entry is None else list(plan.entry.also_log)
    return _DUMPS([key, fingerprint, ttl, checks, moves, puts, ops, list(plan.read_back), also_log])


def _int(n: int) -> int | str:
    """An integer for the script: a JSON number below 2^52 (a Lua number, exact), else
    its decimal string (exact at any size)."""
    if -_LIMIT < n < _LIMIT:
        return int(n)
    return f"{n:d}"


def _score(score: float) -> str:
    """A score as Redis reads it back exactly (``repr`` round-trips a float)."""
    value = float(score)
    if math.isnan(value):
        raise ValueError("an index score must not be NaN")
    return repr(value)


def _entry_head(e: Entry) -> str:
    """The entry's JSON without its postings and closing brace (the script adds them):
    what ``json.dumps`` writes, put together by hand (this is on every commit's path)."""
    t = float(e.time)
    s = _JSON_STR
    return (
        f'{{"transaction_id":{s(e.transaction_id)},"kind":{s(e.kind)},'
        f'"time":{repr(t) if math.isfinite(t) else _HEAD(t)},'
        f'"request_id":{s(e.request_id)},"caller":{s(e.caller)},"memo":{s(e.memo)},'
        f'"refs":{_HEAD(dict(e.refs)) if e.refs else "{}"}'
    )


def _new_entry(e: Entry, seq: int, moves: Sequence[Move], amounts: object) -> StoredEntry:
    """The entry as the script stored it: postings from the moves' effective amounts."""
    postings: list[Posting] = []
    if isinstance(amounts, list):  # cjson writes an empty list as {}
        for m, a in zip(moves, amounts, strict=True):
            if a != "0":
                n = int(a)
                postings += (Posting(m.debit, m.asset, -n), Posting(m.credit, m.asset, n))
    return StoredEntry(
        seq=seq,
        transaction_id=e.transaction_id,
        kind=e.kind,
        time=float(e.time),
        request_id=e.request_id,
        caller=e.caller,
        memo=e.memo,
        refs=dict(e.refs),
        postings=tuple(postings),
    )


def _parse_entry(seq: int, data: bytes) -> StoredEntry:
    d = json.loads(data)
    return StoredEntry(
        seq=seq,
        transaction_id=d["transaction_id"],
        kind=d["kind"],
        time=float(d["time"]),
        request_id=d["request_id"],
        caller=d["caller"],
        memo=d["memo"],
        refs=d["refs"] if isinstance(d["refs"], dict) else {},
        postings=tuple(Posting(a, s, int(n)) for a, s, n in d["postings"]),
    )


def _pairs(flat: object) -> dict[str, str]:
    """A record from the script's flat ``[field, value, ...]`` (cjson: ``{}`` when empty)."""
    if not isinstance(flat, list):
        return {}
    it = iter(flat)
    return dict(zip(it, it, strict=True))


def _records(flat: object) -> dict[str, Mapping[str, str]]:
    if not isinstance(flat, list):
        return {}
    return {flat[i]: _pairs(flat[i + 1]) for i in range(0, len(flat), 2)}


def _row(row: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in row.items()}


def _bytes(value: object) -> bytes:
    """A reply of this store's clients (decode_responses off: always bytes)."""
    assert isinstance(value, bytes), f"expected bytes from redis, got {type(value).__name__}"
    return value


def _stream(reply: object) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """An XRANGE reply (decode_responses off: ids and fields are bytes)."""
    return cast(list[tuple[bytes, dict[bytes, bytes]]], reply or [])


__all__ = ["RedisLedgerStore"]

"""The Redis workflow store: workflows survive restarts and are shared by replicas.

Same records and rules as ``MemoryWorkflowStore`` (the reference), kept in
per-workflow keys that share one hash tag, so a workflow's keys stay on one
shard:

- ``<p>:wf:{<id>}``: hash. ``header`` (the Workflow message without tasks and
  status), the status fields ``state``, ``spent``, ``error``, ``end``
  (Timestamp bytes, empty when unset), the last event sequence ``seq``, the
  lease (``replica``, fencing ``token``, ``until_ms`` on the server's clock),
  ``cancel`` (the first reason, present only when requested), ``owner`` and
  ``request`` (the CreateWorkflow request id).
- ``<p>:wf:{<id>}:t``: hash, task id -> TaskRun bytes (read back in definition
  order).
- ``<p>:wf:{<id>}:e``: stream, entry id ``<seq>-0``, field ``e`` = the
  WorkflowEvent bytes with its sequence.
- ``<p>:req:<owner>:<request id>``: hash ``wf``, ``fp`` (fingerprint); ``:`` and
  ``%`` in the owner are percent-encoded, so owners holding ``:`` cannot collide.
- ``<p>:created`` (creation counter), ``<p>:index`` (zset, creation number ->
  id: listing, newest first), ``<p>:live`` (zset, id scored by lease expiry
  ms: orphans), ``<p>:tpl`` (hash, name -> Template bytes), and the pub/sub
  channel ``<p>:cancel`` (ids of workflows with a new cancel request).

Every transition (create, apply, discard, claim, renew, release,
request_cancel) is one Lua script (``lua/*.lua``, each saying its KEYS, ARGV
and guarantees) that checks the fencing token where there is one, so a write
is all or nothing. Leases are measured on the Redis server's clock (``TIME``),
the one clock every replica shares. A finished workflow's keys and its request
id get a TTL of ``retention_s``; listing drops index entries whose workflow
expired as it meets them.

Blocking reads (``read_events``: ``XREAD BLOCK``) and ``cancel_signals``
(a pub/sub subscription each) hold a connection while they wait, so
``from_url`` gives them a pool of their own: a crowd of watchers cannot take
the connections transitions need.

Only this module imports ``redis``; nothing imports it unless a ``redis://``
store is chosen.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar, cast

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from meshwright.mesh import telemetry
from meshwright.mesh.redis_io import unavailable_on_redis_errors
from meshwright.workflow.errors import TemplateExists, WorkflowExists, WorkflowNotFound
from meshwright.workflow.store import (
    DEFAULT_RETENTION_S,
    TERMINAL_STATES,
    Change,
    LeaseLost,
    Renewal,
    RequestExists,
    RequestRecord,
    page_item_bytes,
)
from meshwright.workflow.v1 import workflow_pb2

W = workflow_pb2

_TASKS_TAG = b"\x2a"  # Workflow.tasks: field 5, length-delimited
_SEQ_FIELD = W.WorkflowEvent.DESCRIPTOR.fields_by_name["sequence"]
assert _SEQ_FIELD.number == 1, "the scripts put the sequence first: canonical only as field 1"
_SEQ_TAG = bytes([_SEQ_FIELD.number << 3])  # varint wire type
assert W.Workflow.DESCRIPTOR.fields_by_name["tasks"].number == 5

_STATUS_FIELDS = (b"header", b"state", b"spent", b"error", b"end")
_SCAN_BATCH = 256
"""Index entries read per round trip while listing."""
_FETCH_BATCH = 32
"""Workflows (header and tasks) fetched per round trip while listing."""
_WAIT_SLICE_S = 5.0
"""A blocking read waits at most this long before checking the workflow still exists
(a workflow that expires does not wake its readers)."""

P = ParamSpec("P")
R = TypeVar("R")


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_io = unavailable_on_redis_errors("workflow store")
"""Redis connection failures become ``Unavailable`` (a gRPC UNAVAILABLE, retryable)."""


@functools.cache
def _script_source(name: str) -> str:
    lua = Path(__file__).with_name("lua")
    lib = (lua / "_lib.lua").read_text(encoding="utf-8")
    return lib + "\n" + (lua / f"{name}.lua").read_text(encoding="utf-8")


def _owner_key_part(owner: str) -> str:
    return owner.replace("%", "%25").replace(":", "%3A")


_DB = {"db.system": "redis"}
"""The attributes of this backend's spans (OpenTelemetry's database conventions)."""


class RedisWorkflowStore:
    """``WorkflowStore`` on one Redis server (not Redis Cluster: a creation also touches
    the shared keys, which live on other slots than the workflow's hash tag)."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "mw",
        retention_s: float = DEFAULT_RETENTION_S,
        blocking_client: aioredis.Redis | None = None,
    ) -> None:
        """``client`` is the caller's (closed by the caller); ``blocking_client``, when
        given, serves the blocking reads and cancel subscriptions (default: ``client``)."""
        if retention_s <= 0:
            raise ValueError("retention_s must be positive")
        self.retention_s = retention_s
        self._retention_ms = max(1, round(retention_s * 1000))
        self._r = client
        self._blocking = blocking_client if blocking_client is not None else client
        self._owned: list[aioredis.Redis] = []
        self._p = prefix
        self._created_key = f"{prefix}:created"
        self._index_key = f"{prefix}:index"
        self._live_key = f"{prefix}:live"
        self._tpl_key = f"{prefix}:tpl"
        self._cancel_channel = f"{prefix}:cancel"
        self._req_keys: dict[str, str] = {}  # workflow id -> its request id key
        self._closed = asyncio.Event()
        self._signal_iterators: set[asyncio.Event] = set()
        self._create = self._script("create")
        self._apply = self._script("apply")
        self._discard = self._script("discard")
        self._claim = self._script("claim")
        self._renew = self._script("renew")
        self._release = self._script("release")
        self._request_cancel = self._script("request_cancel")
        self._orphans = self._script("orphans")
        self._prune = self._script("prune")

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        retention_s: float = DEFAULT_RETENTION_S,
        max_connections: int = 64,
        prefix: str = "mw",
    ) -> RedisWorkflowStore:
        """A store on ``redis://host:port/db`` (or ``rediss://``) with pools of its own:
        ``max_connections`` for commands (callers wait for a free one), and one without a
        bound for blocking reads and subscriptions. ``close()`` closes both."""
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=20, socket_connect_timeout=5
        )
        blocking_pool = aioredis.ConnectionPool.from_url(url, socket_connect_timeout=5)
        client = aioredis.Redis.from_pool(pool)  # from_pool: closing the client closes the pool
        blocking = aioredis.Redis.from_pool(blocking_pool)
        store = cls(client, prefix=prefix, retention_s=retention_s, blocking_client=blocking)
        store._owned = [client, blocking]
        return store

    def _script(self, name: str) -> AsyncScript:
        return self._r.register_script(_script_source(name))

    # -- keys ---------------------------------------------------------------------

    def _wf_key(self, workflow_id: str) -> str:
        return f"{self._p}:wf:{{{workflow_id}}}"

    def _wf_keys(self, workflow_id: str) -> tuple[str, str, str]:
        h = self._wf_key(workflow_id)
        return h, h + ":t", h + ":e"

    def _req_key(self, owner: str, request_id: str) -> str:
        return f"{self._p}:req:{_owner_key_part(owner)}:{request_id}"

    async def _req_key_of(self, workflow_id: str) -> str:
        """The request id key of a workflow, for its last write (terminal or discard).

        A workflow this store object created has it remembered (one round trip less
        per workflow); taken over from another replica, it is read."""
        key = self._req_keys.pop(workflow_id, None)
        if key is None:
            owner, request_id = await self._r.hmget(self._wf_key(workflow_id), ["owner", "request"])
            key = self._req_key(_text(owner), _text(request_id))
        return key

    def _remember_req_key(self, workflow_id: str, key: str) -> str:
        self._req_keys[workflow_id] = key
        if len(self._req_keys) > _REQ_KEYS_KEPT:
            self._req_keys.pop(next(iter(self._req_keys)))
        return key

    # -- creation ---------------------------------------------------------------

    @_io
    @telemetry.traced("redis create", **_DB)
    async def create(
        self,
        workflow: workflow_pb2.Workflow,
        *,
        request_id: str,
        fingerprint: str,
        events: Sequence[workflow_pb2.WorkflowEvent],
        replica: str,
        lease_ttl_s: float,
    ) -> int:
        wf_id = workflow.workflow_id
        header = W.Workflow()
        header.CopyFrom(workflow)
        for name in ("tasks", "state", "spent", "error", "end_time"):
            header.ClearField(name)
        end = workflow.end_time.SerializeToString() if workflow.HasField("end_time") else b""
        tasks = _task_pairs(workflow.tasks)
        blobs = _event_blobs(events)
        h, t, e = self._wf_keys(wf_id)
        args: list[bytes | str | int] = [
            wf_id,
            header.SerializeToString(),
            int(workflow.state),
            workflow.spent,
            workflow.error,
            end,
            replica,
            _ms(lease_ttl_s),
            workflow.owner,
            request_id,
            fingerprint,
            self._retention_ms,
            _SEQ_TAG,
            len(blobs),
            len(tasks) // 2,
            *blobs,
            *tasks,
        ]
        keys = [
            h,
            t,
            e,
            self._req_key(workflow.owner, request_id),
            self._created_key,
            self._index_key,
            self._live_key,
        ]
        reply = await self._create(keys=keys, args=args)
        status = int(reply[0])
        if status == -1:
            raise WorkflowExists(f"workflow {wf_id!r} exists already")
        if status == -2:
            raise RequestExists(RequestRecord(reply[1].decode(), reply[2].decode()))
        _number_events(events, int(reply[2]))
        self._remember_req_key(wf_id, self._req_key(workflow.owner, request_id))
        return int(reply[1])

    @_io
    @telemetry.traced("redis find_request", **_DB)
    async def find_request(self, request_id: str, *, owner: str) -> RequestRecord | None:
        wf, fp = await self._r.hmget(self._req_key(owner, request_id), ["wf", "fp"])
        if wf is None:
            return None
        return RequestRecord(_text(wf), _text(fp))

    @_io
    @telemetry.traced("redis discard", **_DB)
    async def discard(self, workflow_id: str, token: int) -> None:
        h, t, e = self._wf_keys(workflow_id)
        keys = [h, t, e, await self._req_key_of(workflow_id), self._index_key, self._live_key]
        status = int(await self._discard(keys=keys, args=[workflow_id, token]))
        if status == -1:
            raise WorkflowNotFound(f"workflow {workflow_id!r} not found")
        if status == -2:
            raise LeaseLost(f"workflow {workflow_id!r} is not owned under fencing token {token}")

    # -- transitions ------------------------------------------------------------

    @_io
    @telemetry.traced("redis apply", **_DB)
    async def apply(self, workflow_id: str, token: int, change: Change) -> int:
        h, t, e = self._wf_keys(workflow_id)
        terminal = change.state in TERMINAL_STATES
        # Only a terminal state touches the request id (its TTL); the key is read first
        # (it never changes) so the script is told every key it touches.
        req = await self._req_key_of(workflow_id) if terminal else self._req_key("", "")
        tasks = _task_pairs(change.tasks)
        blobs = _event_blobs(change.events)
        end = change.end_time.SerializeToString() if change.end_time is not None else b""
        args: list[bytes | str | int] = [
            workflow_id,
            token,
            int(change.state),
            change.spent_delta,
            0 if change.error is None else 1,
            change.error or "",
            0 if change.end_time is None else 1,
            end,
            self._retention_ms,
            _SEQ_TAG,
            len(blobs),
            len(tasks) // 2,
            change.write_id,
            *blobs,
            *tasks,
        ]
        reply = await self._apply(keys=[h, t, e, self._live_key, req], args=args)
        status = int(reply[0])
        if status == -1:
            raise WorkflowNotFound(f"workflow {workflow_id!r} not found")
        if status == -2:
            raise LeaseLost(
                f"workflow {workflow_id!r} is owned under fencing token {int(reply[1])}, "
                f"not {token} (or finished)"
            )
        last = int(reply[1])
        _number_events(change.events, last)
        return last

    # -- reads --------------------------------------------------------------------

    @_io
    @telemetry.traced("redis get", **_DB)
    async def get(self, workflow_id: str) -> workflow_pb2.Workflow:
        h, t, _ = self._wf_keys(workflow_id)
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.hmget(h, _STATUS_FIELDS)
            pipe.hgetall(t)
            fields, tasks = await pipe.execute()
        if fields[0] is None:
            raise WorkflowNotFound(f"workflow {workflow_id!r} not found")
        return _assemble(fields, tasks)

    @_io
    @telemetry.traced("redis state_of", **_DB)
    async def state_of(self, workflow_id: str) -> int:
        state = await self._r.hget(self._wf_key(workflow_id), "state")
        if state is None:
            raise WorkflowNotFound(f"workflow {workflow_id!r} not found")
        return int(state)

    @_io
    async def lease_holder(self, workflow_id: str) -> str:
        fields = await self._r.hmget(self._wf_key(workflow_id), ["state", "replica"])
        if fields[0] is None:
            raise WorkflowNotFound(f"workflow {workflow_id!r} not found")
        holder = fields[1] or b""
        return holder.decode() if isinstance(holder, bytes) else str(holder)

    @_io
    @telemetry.traced("redis list_workflows", **_DB)
    async def list_workflows(
        self,
        *,
        state: int,
        after_key: str | None,
        limit: int,
        owner: str | None = None,
        max_bytes: int | None = None,
    ) -> tuple[list[workflow_pb2.Workflow], str | None]:
        # Key = creation number, so pages stay stable as new workflows arrive.
        upper = f"({int(after_key)}" if after_key is not None else "+inf"
        want_state = str(state).encode() if state != 0 else None
        want_owner = owner.encode() if owner is not None else None
        out: list[workflow_pb2.Workflow] = []
        last_number = 0
        size = 0
        stale: list[tuple[str, int]] = []
        try:
            while True:
                batch = await self._r.zrange(
                    self._index_key,
                    upper,
                    "-inf",
                    desc=True,
                    byscore=True,
                    offset=0,
                    num=_SCAN_BATCH,
                    withscores=True,
                )
                if not batch:
                    return out, None
                upper = f"({int(batch[-1][1])}"
                scored = cast(list[tuple[bytes, float]], batch)
                entries = [(member.decode(), int(score)) for member, score in scored]
                async with self._r.pipeline(transaction=False) as pipe:
                    for wf_id, _ in entries:
                        pipe.hmget(self._wf_key(wf_id), ["state", "owner"])
                    heads = await pipe.execute()
                matches: list[tuple[str, int]] = []
                for (wf_id, number), (st, own) in zip(entries, heads, strict=True):
                    if st is None:
                        stale.append((wf_id, number))
                    elif (want_state is None or st == want_state) and (
                        want_owner is None or own == want_owner
                    ):
                        matches.append((wf_id, number))
                fetched: dict[str, workflow_pb2.Workflow | None] = {}
                for i, (wf_id, number) in enumerate(matches):
                    if len(out) == limit:
                        return out, str(last_number)
                    if wf_id not in fetched:
                        chunk = matches[i : i + min(_FETCH_BATCH, max(limit - len(out), 1))]
                        fetched.update(await self._fetch([w for w, _ in chunk]))
                    wf = fetched[wf_id]
                    if wf is None:  # expired since the scan
                        stale.append((wf_id, number))
                        continue
                    if max_bytes is not None:
                        size += page_item_bytes(wf)
                        if out and size > max_bytes:
                            return out, str(last_number)
                    out.append(wf)
                    last_number = number
        finally:
            if stale:
                await self._prune(keys=[self._index_key], args=[x for pair in stale for x in pair])

    async def _fetch(self, ids: Sequence[str]) -> dict[str, workflow_pb2.Workflow | None]:
        async with self._r.pipeline(transaction=False) as pipe:
            for wf_id in ids:
                h, t, _ = self._wf_keys(wf_id)
                pipe.hmget(h, _STATUS_FIELDS)
                pipe.hgetall(t)
            replies = await pipe.execute()
        out: dict[str, workflow_pb2.Workflow | None] = {}
        for i, wf_id in enumerate(ids):
            fields, tasks = replies[2 * i], replies[2 * i + 1]
            out[wf_id] = None if fields[0] is None else _assemble(fields, tasks)
        return out

    @_io
    @telemetry.traced("redis events_after", **_DB)
    async def events_after(
        self, workflow_id: str, after_sequence: int, *, limit: int = 1000
    ) -> Sequence[workflow_pb2.WorkflowEvent]:
        h, _, e = self._wf_keys(workflow_id)
        start = max(after_sequence, 0) + 1
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.exists(h)
            pipe.xrange(e, f"{start}-0", "+", count=max(limit, 1))
            exists, entries = await pipe.execute()
        if not exists:
            raise WorkflowNotFound(f"workflow {workflow_id!r} not found")
        if limit <= 0:
            return []
        return [W.WorkflowEvent.FromString(fields[b"e"]) for _, fields in entries]

    @_io
    async def read_events(
        self, workflow_id: str, after_sequence: int, *, wait_s: float, limit: int = 1000
    ) -> tuple[Sequence[workflow_pb2.WorkflowEvent], bool]:
        h, _, e = self._wf_keys(workflow_id)
        after = max(after_sequence, 0)
        async with self._r.pipeline(transaction=True) as pipe:
            pipe.hget(h, "state")
            pipe.xrange(e, f"{after + 1}-0", "+", count=max(limit, 1))
            state, entries = await pipe.execute()
        if state is None:
            raise WorkflowNotFound(f"workflow {workflow_id!r} not found")
        if limit <= 0:
            return [], False
        if entries:
            return _parse_events(entries), False
        if int(state) in TERMINAL_STATES:
            return [], True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(wait_s, 0.0)
        while True:
            left = deadline - loop.time()
            if left <= 0:
                return [], False
            block_ms = max(1, round(min(left, _WAIT_SLICE_S) * 1000))
            reply = await self._blocking.xread({e: f"{after}-0"}, count=limit, block=block_ms)
            if reply:
                streams = reply.values() if isinstance(reply, dict) else [r[1] for r in reply]
                got = [entry for stream in streams for entry in _stream_entries(stream)]
                if any(b"e" not in fields for _, fields in got):  # discard's tombstone
                    raise WorkflowNotFound(f"workflow {workflow_id!r} not found")
                if got:
                    return _parse_events(got), False
            # Nothing yet: a workflow that expired or was discarded wakes no blocked read.
            if not await self._r.exists(h):
                raise WorkflowNotFound(f"workflow {workflow_id!r} not found")

    # -- ownership ----------------------------------------------------------------

    @_io
    @telemetry.traced("redis claim", **_DB)
    async def claim(self, workflow_id: str, replica: str, ttl_s: float) -> int | None:
        token = await self._claim(
            keys=[self._wf_key(workflow_id), self._live_key],
            args=[workflow_id, replica, _ms(ttl_s)],
        )
        return None if token is None else int(token)

    @_io
    @telemetry.traced("redis renew", **_DB)
    async def renew(self, replica: str, leases: Mapping[str, int], ttl_s: float) -> Renewal:
        if not leases:
            return Renewal(frozenset(), {})
        ids = list(leases)
        args: list[str | int] = [replica, _ms(ttl_s)]
        for wf_id in ids:
            args += [wf_id, leases[wf_id]]
        reply = await self._renew(
            keys=[self._live_key, *(self._wf_key(wf_id) for wf_id in ids)], args=args
        )
        lost: set[str] = set()
        cancels: dict[str, str] = {}
        for wf_id, status in zip(ids, reply, strict=True):
            if isinstance(status, bytes):
                cancels[wf_id] = status.decode()
            elif int(status) == 0:
                lost.add(wf_id)
        return Renewal(frozenset(lost), cancels)

    @_io
    @telemetry.traced("redis release", **_DB)
    async def release(self, workflow_id: str, token: int) -> None:
        await self._release(
            keys=[self._wf_key(workflow_id), self._live_key], args=[workflow_id, token]
        )

    @_io
    @telemetry.traced("redis orphans", **_DB)
    async def orphans(self, limit: int) -> list[str]:
        if limit <= 0:
            return []
        ids = await self._orphans(keys=[self._live_key], args=[limit])
        return [wf_id.decode() for wf_id in ids]

    # -- cancellation -------------------------------------------------------------

    @_io
    @telemetry.traced("redis request_cancel", **_DB)
    async def request_cancel(self, workflow_id: str, reason: str) -> bool:
        status = int(
            await self._request_cancel(
                keys=[self._wf_key(workflow_id)],
                args=[workflow_id, reason, self._cancel_channel],
            )
        )
        if status == -1:
            raise WorkflowNotFound(f"workflow {workflow_id!r} not found")
        return status == 1

    async def cancel_signals(self) -> AsyncIterator[str]:
        done = asyncio.Event()
        self._signal_iterators.add(done)
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            while not self._closed.is_set():
                pubsub = self._blocking.pubsub(ignore_subscribe_messages=True)
                try:
                    await pubsub.subscribe(self._cancel_channel)
                    while True:
                        get = asyncio.ensure_future(pubsub.get_message(timeout=None))
                        # Retrieved whatever happens: the iterator may be cancelled while
                        # it waits, and the read then fails as the connection closes.
                        get.add_done_callback(_retrieved)
                        try:
                            await asyncio.wait({get, closed}, return_when=asyncio.FIRST_COMPLETED)
                        except asyncio.CancelledError:
                            get.cancel()
                            raise
                        if not get.done():
                            get.cancel()
                            await asyncio.gather(get, return_exceptions=True)
                            return
                        message = get.result()
                        if message is not None and message["type"] == "message":
                            yield message["data"].decode()
                except (RedisConnectionError, RedisTimeoutError):
                    # Best effort: subscribe again after a pause (renew is the guarantee).
                    await asyncio.wait({closed}, timeout=0.5)
                finally:
                    await pubsub.aclose()
        finally:
            closed.cancel()
            self._signal_iterators.discard(done)
            done.set()

    # -- templates ----------------------------------------------------------------

    @_io
    @telemetry.traced("redis put_template", **_DB)
    async def put_template(self, template: workflow_pb2.Template) -> None:
        if not await self._r.hsetnx(self._tpl_key, template.name, template.SerializeToString()):
            raise TemplateExists(f"template {template.name!r} exists already")

    @_io
    @telemetry.traced("redis get_template", **_DB)
    async def get_template(self, name: str) -> workflow_pb2.Template | None:
        data = await self._r.hget(self._tpl_key, name)
        return None if data is None else W.Template.FromString(_bytes(data))

    @_io
    @telemetry.traced("redis list_templates", **_DB)
    async def list_templates(
        self, *, after_name: str | None, limit: int
    ) -> list[workflow_pb2.Template]:
        if limit <= 0:
            return []
        names = sorted(
            n
            for n in (_text(k) for k in await self._r.hkeys(self._tpl_key))
            if after_name is None or n > after_name
        )[:limit]
        if not names:
            return []
        blobs = await self._r.hmget(self._tpl_key, names)
        return [W.Template.FromString(_bytes(b)) for b in blobs if b is not None]

    async def close(self) -> None:
        self._closed.set()
        if self._signal_iterators:
            waits = [asyncio.ensure_future(d.wait()) for d in self._signal_iterators]
            _, pending = await asyncio.wait(waits, timeout=1.0)
            for w in pending:
                w.cancel()
        for client in self._owned:
            await client.aclose()
        self._owned = []


# -- encoding ---------------------------------------------------------------------


_REQ_KEYS_KEPT = 100_000
"""Request id keys remembered per store object for the workflows it created, until their
last write (those another replica finished: the oldest are forgotten past this)."""


def _stream_entries(stream: Any) -> list[Any]:
    """The entries of one stream in an XREAD reply (RESP2 and RESP3 shapes)."""
    if isinstance(stream, list) and len(stream) == 1 and isinstance(stream[0], list):
        return list(stream[0])  # RESP3: {key: [[(id, fields), ...]]}
    return list(stream)


def _parse_events(entries: Any) -> list[workflow_pb2.WorkflowEvent]:
    return [W.WorkflowEvent.FromString(fields[b"e"]) for _, fields in entries]


def _retrieved(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


def _bytes(value: object) -> bytes:
    """A reply of this store's clients (decode_responses off: always bytes)."""
    assert isinstance(value, bytes), f"expected bytes from redis, got {type(value).__name__}"
    return value


def _text(value: object) -> str:
    """A UTF-8 reply, "" for a missing one."""
    return "" if value is None else _bytes(value).decode()


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _task_pairs(tasks: Sequence[workflow_pb2.TaskRun]) -> list[bytes | str | int]:
    """Flat task id, TaskRun bytes pairs; a task named twice: the last wins."""
    last = {tr.task_id: tr for tr in tasks}
    out: list[bytes | str | int] = []
    for task_id, tr in last.items():
        out += [task_id, tr.SerializeToString()]
    return out


def _event_blobs(events: Sequence[workflow_pb2.WorkflowEvent]) -> list[bytes | str | int]:
    """Each event without its sequence (the script puts the sequence in front)."""
    out: list[bytes | str | int] = []
    for ev in events:
        seq = ev.sequence
        ev.sequence = 0
        out.append(ev.SerializeToString())
        ev.sequence = seq
    return out


def _number_events(events: Sequence[workflow_pb2.WorkflowEvent], last: int) -> None:
    for i, ev in enumerate(events):
        ev.sequence = last - len(events) + 1 + i


def _assemble(fields: Sequence[bytes | None], tasks: dict[bytes, bytes]) -> workflow_pb2.Workflow:
    """A Workflow from its hash fields (``_STATUS_FIELDS``) and task records, the tasks in
    definition order (records of tasks not in the definition follow, by id)."""
    header, state, spent, error, end = fields
    wf = W.Workflow.FromString(header or b"")
    wf.state = cast(Any, int(state or 0))
    wf.spent = int(spent or 0)
    wf.error = (error or b"").decode()
    if end:
        wf.end_time.ParseFromString(end)
    parts: list[bytes] = []
    for spec in wf.definition.tasks:
        blob = tasks.pop(spec.id.encode(), None)
        if blob is not None:
            parts += [_TASKS_TAG, _varint(len(blob)), blob]
    for task_id in sorted(tasks):
        blob = tasks[task_id]
        parts += [_TASKS_TAG, _varint(len(blob)), blob]
    if parts:
        wf.MergeFromString(b"".join(parts))
    return wf


__all__ = ["RedisWorkflowStore"]

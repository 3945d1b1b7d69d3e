"""The embedded workflow store: one process, nothing survives a restart.

Same records and the same rules as the Redis store (fencing tokens, leases,
store-enforced uniqueness, per-task records), so the engine runs one code
path on both. Finished workflows are kept up to ``max_finished`` and
``retention_s`` (oldest evicted first, with their events and request ids);
live workflows are never evicted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field

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


@dataclass(slots=True)
class _Entry:
    header: workflow_pb2.Workflow
    """The workflow without tasks; its status fields change in place."""
    tasks: dict[str, workflow_pb2.TaskRun]
    """Task records in definition order."""
    number: int
    events: list[workflow_pb2.WorkflowEvent] = field(default_factory=list)
    signal: asyncio.Event = field(default_factory=asyncio.Event)
    replica: str = ""
    token: int = 0
    lease_until: float = 0.0
    cancel: str | None = None
    request: tuple[str, str] | None = None
    ended_at: float = 0.0
    last_write: str = ""


class MemoryWorkflowStore:
    """In-process ``WorkflowStore``."""

    def __init__(
        self,
        *,
        max_finished: int = 10_000,
        retention_s: float = DEFAULT_RETENTION_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_finished < 1:
            raise ValueError("max_finished must be at least 1")
        if retention_s <= 0:
            raise ValueError("retention_s must be positive")
        self.max_finished = max_finished
        self.retention_s = retention_s
        self._clock = clock
        self._entries: dict[str, _Entry] = {}  # in creation order
        self._created = 0
        self._finished: dict[str, None] = {}  # ordered set, oldest finish first
        self._requests: dict[tuple[str, str], RequestRecord] = {}  # (owner, request id)
        self._templates: dict[str, workflow_pb2.Template] = {}
        self._cancel_queues: set[asyncio.Queue[str | None]] = set()

    # -- creation ---------------------------------------------------------------

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
        self._expire()
        wf_id = workflow.workflow_id
        if wf_id in self._entries:
            raise WorkflowExists(f"workflow {wf_id!r} exists already")
        scoped = (workflow.owner, request_id)
        if request_id and scoped in self._requests:
            raise RequestExists(self._requests[scoped])
        header = workflow_pb2.Workflow()
        header.CopyFrom(workflow)
        del header.tasks[:]
        tasks: dict[str, workflow_pb2.TaskRun] = {}
        for tr in workflow.tasks:
            copy = workflow_pb2.TaskRun()
            copy.CopyFrom(tr)
            tasks[tr.task_id] = copy
        self._created += 1
        entry = _Entry(header=header, tasks=tasks, number=self._created)
        entry.replica, entry.token = replica, 1
        entry.lease_until = self._clock() + lease_ttl_s
        if request_id:
            self._requests[scoped] = RequestRecord(wf_id, fingerprint)
            entry.request = scoped
        self._entries[wf_id] = entry
        self._append(entry, events)
        if header.state in TERMINAL_STATES:
            self._ended(wf_id, entry)
        return entry.token

    async def find_request(self, request_id: str, *, owner: str) -> RequestRecord | None:
        self._expire()
        return self._requests.get((owner, request_id))

    async def discard(self, workflow_id: str, token: int) -> None:
        entry = self._owned(workflow_id, token)
        self._drop(workflow_id, entry)

    # -- transitions ------------------------------------------------------------

    async def apply(self, workflow_id: str, token: int, change: Change) -> int:
        entry = self._owned(workflow_id, token)
        if change.write_id:
            if change.write_id == entry.last_write:
                return len(entry.events)  # a retry of the last write
            entry.last_write = change.write_id
        for tr in change.tasks:  # the change's objects are the store's now (no copy)
            entry.tasks[tr.task_id] = tr
        header = entry.header
        if change.state:
            header.state = change.state  # type: ignore[assignment]
        header.spent += change.spent_delta
        if change.error is not None:
            header.error = change.error
        if change.end_time is not None:
            header.end_time.CopyFrom(change.end_time)
        self._append(entry, change.events)
        if change.state in TERMINAL_STATES:
            self._ended(workflow_id, entry)
        return len(entry.events)

    def _owned(self, workflow_id: str, token: int) -> _Entry:
        entry = self._entry(workflow_id)
        if entry.token != token or entry.header.state in TERMINAL_STATES:
            raise LeaseLost(
                f"workflow {workflow_id!r} is owned under fencing token {entry.token}, not {token}"
            )
        return entry

    def _append(self, entry: _Entry, events: Sequence[workflow_pb2.WorkflowEvent]) -> None:
        if not events:
            return
        for event in events:
            event.sequence = len(entry.events) + 1
            entry.events.append(event)
        old, entry.signal = entry.signal, asyncio.Event()
        old.set()

    def _ended(self, workflow_id: str, entry: _Entry) -> None:
        entry.replica, entry.lease_until, entry.cancel = "", 0.0, None
        entry.ended_at = self._clock()
        self._finished[workflow_id] = None
        while len(self._finished) > self.max_finished:
            self._evict(next(iter(self._finished)))

    def _expire(self) -> None:
        horizon = self._clock() - self.retention_s
        while self._finished:
            oldest = next(iter(self._finished))
            if self._entries[oldest].ended_at > horizon:
                return
            self._evict(oldest)

    def _evict(self, workflow_id: str) -> None:
        del self._finished[workflow_id]
        self._drop(workflow_id, self._entries[workflow_id])

    def _drop(self, workflow_id: str, entry: _Entry) -> None:
        del self._entries[workflow_id]
        self._finished.pop(workflow_id, None)
        entry.signal.set()  # a watcher still waiting learns it is gone
        if entry.request is not None:
            self._requests.pop(entry.request, None)

    # -- reads --------------------------------------------------------------------

    def _entry(self, workflow_id: str) -> _Entry:
        entry = self._entries.get(workflow_id)
        if entry is None:
            raise WorkflowNotFound(f"workflow {workflow_id!r} not found")
        return entry

    @staticmethod
    def _assemble(entry: _Entry) -> workflow_pb2.Workflow:
        out = workflow_pb2.Workflow()
        out.CopyFrom(entry.header)
        out.tasks.extend(entry.tasks.values())
        return out

    async def get(self, workflow_id: str) -> workflow_pb2.Workflow:
        self._expire()
        return self._assemble(self._entry(workflow_id))

    async def state_of(self, workflow_id: str) -> int:
        self._expire()
        return int(self._entry(workflow_id).header.state)

    async def lease_holder(self, workflow_id: str) -> str:
        return self._entry(workflow_id).replica

    async def list_workflows(
        self,
        *,
        state: int,
        after_key: str | None,
        limit: int,
        owner: str | None = None,
        max_bytes: int | None = None,
    ) -> tuple[list[workflow_pb2.Workflow], str | None]:
        self._expire()
        # Key = creation number, so pages stay stable as new workflows arrive.
        before = int(after_key) if after_key is not None else self._created + 1
        out: list[workflow_pb2.Workflow] = []
        last_number = 0
        size = 0
        for entry in reversed(self._entries.values()):
            if entry.number >= before:
                continue
            header = entry.header
            if state != 0 and header.state != state:
                continue
            if owner is not None and header.owner != owner:
                continue
            if len(out) == limit:
                return out, str(last_number)
            wf = self._assemble(entry)
            if max_bytes is not None:
                size += page_item_bytes(wf)
                if out and size > max_bytes:
                    return out, str(last_number)
            out.append(wf)
            last_number = entry.number
        return out, None

    async def events_after(
        self, workflow_id: str, after_sequence: int, *, limit: int = 1000
    ) -> Sequence[workflow_pb2.WorkflowEvent]:
        self._expire()
        start = max(after_sequence, 0)
        return self._entry(workflow_id).events[start : start + limit]

    async def read_events(
        self, workflow_id: str, after_sequence: int, *, wait_s: float, limit: int = 1000
    ) -> tuple[Sequence[workflow_pb2.WorkflowEvent], bool]:
        start = max(after_sequence, 0)
        events = await self.events_after(workflow_id, start, limit=limit)
        if events or not limit:
            return events, False
        if self._entry(workflow_id).header.state in TERMINAL_STATES:
            return [], True
        await self._wait(workflow_id, start, wait_s)
        return await self.events_after(workflow_id, start, limit=limit), False

    async def _wait(self, workflow_id: str, after_sequence: int, timeout: float) -> None:
        """Until the log holds an event after ``after_sequence``, the workflow is gone, or
        ``timeout`` passed."""
        entry = self._entries.get(workflow_id)
        if entry is None or len(entry.events) > after_sequence:
            return
        try:
            await asyncio.wait_for(entry.signal.wait(), timeout)
        except TimeoutError:
            return

    # -- ownership ----------------------------------------------------------------

    async def claim(self, workflow_id: str, replica: str, ttl_s: float) -> int | None:
        entry = self._entries.get(workflow_id)
        now = self._clock()
        if entry is None or entry.header.state in TERMINAL_STATES or entry.lease_until > now:
            return None
        entry.replica = replica
        entry.token += 1
        entry.lease_until = now + ttl_s
        return entry.token

    async def renew(self, replica: str, leases: Mapping[str, int], ttl_s: float) -> Renewal:
        now = self._clock()
        lost: set[str] = set()
        cancels: dict[str, str] = {}
        for wf_id, token in leases.items():
            entry = self._entries.get(wf_id)
            if (
                entry is None
                or entry.token != token
                or entry.replica != replica
                or entry.header.state in TERMINAL_STATES
            ):
                lost.add(wf_id)
                continue
            entry.lease_until = now + ttl_s
            if entry.cancel is not None:
                cancels[wf_id] = entry.cancel
        return Renewal(frozenset(lost), cancels)

    async def release(self, workflow_id: str, token: int) -> None:
        entry = self._entries.get(workflow_id)
        if entry is not None and entry.token == token:
            entry.replica, entry.lease_until = "", 0.0

    async def orphans(self, limit: int) -> list[str]:
        now = self._clock()
        lapsed = [
            (entry.lease_until, wf_id)
            for wf_id, entry in self._entries.items()
            if entry.header.state not in TERMINAL_STATES and entry.lease_until <= now
        ]
        lapsed.sort()
        return [wf_id for _, wf_id in lapsed[:limit]]

    # -- cancellation -------------------------------------------------------------

    async def request_cancel(self, workflow_id: str, reason: str) -> bool:
        entry = self._entry(workflow_id)
        if entry.header.state in TERMINAL_STATES:
            return False
        if entry.cancel is None:
            entry.cancel = reason
        for q in self._cancel_queues:
            q.put_nowait(workflow_id)
        return True

    async def cancel_signals(self) -> AsyncIterator[str]:
        q: asyncio.Queue[str | None] = asyncio.Queue()
        self._cancel_queues.add(q)
        try:
            while (wf_id := await q.get()) is not None:
                yield wf_id
        finally:
            self._cancel_queues.discard(q)

    # -- templates ----------------------------------------------------------------

    async def put_template(self, template: workflow_pb2.Template) -> None:
        if template.name in self._templates:
            raise TemplateExists(f"template {template.name!r} exists already")
        self._templates[template.name] = template

    async def get_template(self, name: str) -> workflow_pb2.Template | None:
        return self._templates.get(name)

    async def list_templates(
        self, *, after_name: str | None, limit: int
    ) -> list[workflow_pb2.Template]:
        names = sorted(n for n in self._templates if after_name is None or n > after_name)
        return [self._templates[n] for n in names[:limit]]

    async def close(self) -> None:
        for q in self._cancel_queues:
            q.put_nowait(None)


__all__ = ["MemoryWorkflowStore"]

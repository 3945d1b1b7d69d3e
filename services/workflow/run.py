"""One live workflow owned by this replica: its scheduling state and its writer.

A ``Run`` is rebuilt from stored records whenever a replica takes a workflow
(at creation, or by claiming an orphan): tasks that succeeded stay succeeded,
the rest are scheduled again once their dependencies have succeeded. Its
in-memory fields (reservations, attempt tasks, in-flight slots) are caches of
work under way, never the truth.

Writes go through ``commit``: a group commit that merges every change
submitted in the same loop turn (and while the previous write is in flight,
plus ``linger_s`` when that happened: the run is busy) into one
``store.apply``, so a burst of task transitions costs one store round trip,
in order, each checked against the fencing token.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from meshwright.workflow.dispatch import Slot
from meshwright.workflow.errors import WorkflowNotFound
from meshwright.workflow.store import Change, LeaseLost, WorkflowStore
from meshwright.workflow.v1 import workflow_pb2

W = workflow_pb2
log = logging.getLogger(__name__)

MAX_WORKFLOW_BYTES = 7 * 1024 * 1024
"""A stored workflow; outputs that would take it past this fail their task."""
_TASK_RUN_RESERVE = 512
"""Bytes set aside per task for what its record holds besides the output (agent id,
error, attempts, times), so the outputs' share is known when the workflow starts."""


class Committer:
    """Group commit of one workflow's changes under one fencing token."""

    def __init__(
        self,
        store: WorkflowStore,
        workflow_id: str,
        token: int,
        on_lost: Callable[[], None],
        *,
        linger_s: float = 0.0,
    ) -> None:
        self._store = store
        self._linger_s = linger_s
        self._workflow_id = workflow_id
        self.token = token
        self._on_lost = on_lost
        self._pending: Change | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._flushing: asyncio.Task[None] | None = None
        self._writes = 0
        self.lost = False

    def submit(self, change: Change) -> asyncio.Future[None]:
        """Queue ``change``; the future is done once it is durable (LeaseLost if refused)."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.lost:
            fut.set_exception(LeaseLost(f"workflow {self._workflow_id!r}: lease lost"))
            return fut
        if self._pending is None:
            self._pending = Change()
        self._pending.merge(change)
        self._waiters.append(fut)
        if self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._flush())
        return fut

    async def _flush(self) -> None:
        backoff = 0.05
        try:
            # Let the rest of this loop turn add to the batch: a task's outcome and what
            # it triggers (its workflow's ending, dependants starting) are one write.
            await asyncio.sleep(0)
            retry: tuple[Change, list[asyncio.Future[None]]] | None = None
            while retry is not None or self._pending is not None:
                if retry is not None:
                    (batch, waiters), retry = retry, None
                else:
                    assert self._pending is not None
                    batch, waiters = self._pending, self._waiters
                    self._pending, self._waiters = None, []
                if not batch.write_id:
                    self._writes += 1
                    batch.write_id = f"{self.token}.{self._writes}"
                try:
                    await self._store.apply(self._workflow_id, self.token, batch)
                except (LeaseLost, WorkflowNotFound) as err:  # another's, or gone
                    self.lost = True
                    for fut in [*waiters, *self._waiters]:
                        if not fut.done():
                            fut.set_exception(err)
                            fut.exception()  # retrieved: a caller that went need not see it
                    self._pending, self._waiters = None, []
                    self._on_lost()
                    return
                except asyncio.CancelledError:
                    for fut in [*waiters, *self._waiters]:
                        fut.cancel()
                    raise
                except Exception as err:  # the store unreachable: retry the same write
                    log.warning(
                        "writing workflow %s failed (%s); retrying in %.1fs",
                        self._workflow_id,
                        err,
                        backoff,
                    )
                    # The same write again, alone (its write_id makes a retry of a write
                    # that did land harmless); what came since follows it.
                    retry = (batch, waiters)
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 2.0)
                    continue
                backoff = 0.05
                for fut in waiters:
                    if not fut.done():
                        fut.set_result(None)
                if self._pending is not None and self._linger_s > 0:
                    # Changes arrived while that write was on its way: the run is busy.
                    # Gather a little longer, so a burst costs a few large writes rather
                    # than one small write per round trip. An idle run writes at once.
                    await asyncio.sleep(self._linger_s)
        finally:
            self._flushing = None

    async def drain(self) -> None:
        """Wait until everything submitted so far is written (or refused)."""
        while self._flushing is not None:
            await asyncio.shield(self._flushing)


@dataclass
class Run:
    """Scheduling state of one workflow this replica owns."""

    wf: workflow_pb2.Workflow
    """Header (no tasks) as this replica knows it: definition, state, spent."""
    committer: Committer
    specs: dict[str, workflow_pb2.TaskSpec]
    records: dict[str, workflow_pb2.TaskRun]
    """The working copy of each task record (what is committed is a copy)."""
    waiting_on: dict[str, int]
    dependants: dict[str, list[str]]
    finished_tasks: int = 0
    reserved: int = 0
    output_room: int = 0
    """Bytes the outputs still to be stored may take (of MAX_WORKFLOW_BYTES)."""
    attempts: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    in_flight: dict[str, tuple[Slot, str]] = field(default_factory=dict)
    """Task id -> (slot, the agent-side task id) of attempts running on agents."""
    done: asyncio.Event = field(default_factory=asyncio.Event)
    """Set when this replica stops running it (ended, handed off or lost)."""
    finishing: asyncio.Task[None] | None = None
    """The ending under way (or done); set once, by the first caller of finish."""
    deadline: asyncio.TimerHandle | None = None
    cancel_reason: str | None = None
    opening: asyncio.Future[bool] | None = None
    """Set while its creator opens the escrow; True once opened, False if refused (the
    workflow is then discarded). An ending waits for it."""
    trace_context: Any = None
    """The OpenTelemetry context of ``wf.traceparent``, parsed once (the parent of every
    attempt span); None until first asked for."""

    @property
    def workflow_id(self) -> str:
        return self.wf.workflow_id

    @property
    def closing(self) -> bool:
        return self.finishing is not None or self.committer.lost

    def available(self) -> int:
        """Budget neither spent nor reserved by attempts under way."""
        return self.wf.definition.budget - self.wf.spent - self.reserved

    def commit(self, change: Change) -> asyncio.Future[None]:
        """Write ``change`` (snapshot the task records it names first)."""
        return self.committer.submit(change)

    def snapshot(self, task_id: str) -> workflow_pb2.TaskRun:
        """A copy of a task's working record, to hand to the store."""
        out = workflow_pb2.TaskRun()
        out.CopyFrom(self.records[task_id])
        return out

    def view(self) -> workflow_pb2.Workflow:
        """The workflow as this replica sees it now (a copy)."""
        out = workflow_pb2.Workflow()
        out.CopyFrom(self.wf)
        out.tasks.extend(self.records[s.id] for s in self.wf.definition.tasks)
        return out

    @classmethod
    def rebuild(cls, stored: workflow_pb2.Workflow, committer: Committer) -> Run:
        """The run of a stored workflow: what succeeded stays, the rest waits on its deps."""
        header = workflow_pb2.Workflow()
        header.CopyFrom(stored)
        del header.tasks[:]
        specs = {s.id: s for s in header.definition.tasks}
        records = {tr.task_id: tr for tr in stored.tasks}
        for spec in header.definition.tasks:  # a record missing is a task never started
            if spec.id not in records:
                records[spec.id] = W.TaskRun(
                    task_id=spec.id, skill=spec.skill, state=W.TASK_RUN_STATE_PENDING
                )
        done = {t for t, tr in records.items() if tr.state == W.TASK_RUN_STATE_SUCCEEDED}
        dependants: dict[str, list[str]] = {s: [] for s in specs}
        for spec in header.definition.tasks:
            for dep in spec.depends_on:
                dependants[dep].append(spec.id)
        waiting = {
            s.id: sum(1 for d in s.depends_on if d not in done) for s in header.definition.tasks
        }
        unfinished = len(specs) - len(done)
        room = MAX_WORKFLOW_BYTES - stored.ByteSize() - _TASK_RUN_RESERVE * unfinished
        return cls(
            wf=header,
            committer=committer,
            specs=specs,
            records=records,
            waiting_on=waiting,
            dependants=dependants,
            finished_tasks=len(done),
            output_room=max(0, room),
        )

    def runnable(self) -> list[str]:
        """Tasks not yet succeeded whose dependencies all have (definition order)."""
        return [
            s.id
            for s in self.wf.definition.tasks
            if self.waiting_on[s.id] == 0
            and self.records[s.id].state
            in (W.TASK_RUN_STATE_PENDING, W.TASK_RUN_STATE_READY, W.TASK_RUN_STATE_RUNNING)
        ]

    def failed_task(self) -> str | None:
        """A task recorded FAILED (the run must end FAILED), if any."""
        for s in self.wf.definition.tasks:
            if self.records[s.id].state == W.TASK_RUN_STATE_FAILED:
                return s.id
        return None


__all__ = ["MAX_WORKFLOW_BYTES", "Committer", "Run"]

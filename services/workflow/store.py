"""Where workflows, their event logs and templates live.

``WorkflowStore`` is the seam a Redis store (hashes for workflows, a stream
per event log, a lease for ownership) slots into. Each method is one atomic
change; the engine never needs a read-modify-write across calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from meshwright.workflow.errors import TemplateExists, WorkflowExists, WorkflowNotFound
from meshwright.workflow.v1 import workflow_pb2


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """What one CreateWorkflow request_id created, and the request it came with."""

    workflow_id: str
    fingerprint: str
    """Digest of the request minus its request_id: a reuse with other content is refused."""


class WorkflowStore(Protocol):
    """Durable state of the workflow service."""

    async def create(
        self, workflow: workflow_pb2.Workflow, request_id: str, fingerprint: str = ""
    ) -> None:
        """Store a new workflow with its request_id (scoped to ``workflow.owner``) and the
        request's fingerprint, in one step; WorkflowExists if the id is taken."""
        ...

    async def find_request(self, request_id: str, *, owner: str) -> RequestRecord | None:
        """What ``owner``'s CreateWorkflow ``request_id`` created, if anything.

        Request ids are scoped per owner: one caller can neither replay nor probe
        another's (and two callers choosing the same id do not collide).
        """
        ...

    async def save(self, workflow: workflow_pb2.Workflow) -> None:
        """Replace a workflow's stored state."""
        ...

    async def get(self, workflow_id: str) -> workflow_pb2.Workflow:
        """The workflow; WorkflowNotFound if unknown. Callers must not mutate it."""
        ...

    async def list_workflows(
        self,
        *,
        state: int,
        after_key: str | None,
        limit: int,
        owner: str | None = None,
        max_bytes: int | None = None,
    ) -> tuple[list[workflow_pb2.Workflow], str | None]:
        """Workflows newest first from after ``after_key``, and the key to resume at.

        Only ``owner``'s when given (the filter is applied while scanning, so a page
        is full whenever more matches exist). A page stops before the workflow that
        would take its serialized size past ``max_bytes`` (the first always fits).
        """
        ...

    async def append_event(self, event: workflow_pb2.WorkflowEvent) -> int:
        """Append to the event's workflow log, assigning and returning its sequence."""
        ...

    async def events_after(
        self, workflow_id: str, after_sequence: int
    ) -> Sequence[workflow_pb2.WorkflowEvent]:
        """Events with a larger sequence, in order."""
        ...

    async def wait_events(self, workflow_id: str, after_sequence: int, timeout: float) -> None:
        """Return once the log holds an event after ``after_sequence`` or ``timeout`` passed."""
        ...

    async def put_template(self, template: workflow_pb2.Template) -> None:
        """Store a new template; TemplateExists if the name is taken."""
        ...

    async def get_template(self, name: str) -> workflow_pb2.Template | None:
        """The template, or None."""
        ...

    async def list_templates(
        self, *, after_name: str | None, limit: int
    ) -> list[workflow_pb2.Template]:
        """Templates ordered by name, after ``after_name``."""
        ...


@dataclass
class _Log:
    events: list[workflow_pb2.WorkflowEvent] = field(default_factory=list)
    signal: asyncio.Event = field(default_factory=asyncio.Event)


TERMINAL_STATES = frozenset(
    {
        workflow_pb2.WORKFLOW_STATE_SUCCEEDED,
        workflow_pb2.WORKFLOW_STATE_FAILED,
        workflow_pb2.WORKFLOW_STATE_CANCELLED,
    }
)


class MemoryWorkflowStore:
    """In-process store: one process, nothing survives a restart.

    Finished workflows are kept up to ``max_finished`` (oldest evicted first,
    with their event logs and request ids), so a long-running mesh does not
    grow without bound; live workflows are never evicted.
    """

    def __init__(self, *, max_finished: int = 10_000) -> None:
        if max_finished < 1:
            raise ValueError("max_finished must be at least 1")
        self.max_finished = max_finished
        self._workflows: dict[str, workflow_pb2.Workflow] = {}  # in creation order
        self._number: dict[str, int] = {}  # creation number, the listing key
        self._created = 0
        self._finished: dict[str, None] = {}  # ordered set, oldest finish first
        self._requests: dict[tuple[str, str], RequestRecord] = {}  # (owner, request id)
        self._request_of: dict[str, tuple[str, str]] = {}
        self._logs: dict[str, _Log] = {}
        self._templates: dict[str, workflow_pb2.Template] = {}

    async def create(
        self, workflow: workflow_pb2.Workflow, request_id: str, fingerprint: str = ""
    ) -> None:
        wf_id = workflow.workflow_id
        if wf_id in self._workflows:
            raise WorkflowExists(f"workflow {wf_id!r} exists already")
        self._created += 1
        self._workflows[wf_id] = workflow
        self._number[wf_id] = self._created
        self._logs[wf_id] = _Log()
        if request_id:
            scoped = (workflow.owner, request_id)
            self._requests[scoped] = RequestRecord(wf_id, fingerprint)
            self._request_of[wf_id] = scoped
        self._note_finished(workflow)

    async def find_request(self, request_id: str, *, owner: str) -> RequestRecord | None:
        return self._requests.get((owner, request_id))

    async def save(self, workflow: workflow_pb2.Workflow) -> None:
        # The engine mutates the stored object in place; nothing to copy.
        self._workflows[workflow.workflow_id] = workflow
        self._note_finished(workflow)

    def _note_finished(self, workflow: workflow_pb2.Workflow) -> None:
        if workflow.state not in TERMINAL_STATES or workflow.workflow_id in self._finished:
            return
        self._finished[workflow.workflow_id] = None
        while len(self._finished) > self.max_finished:
            oldest = next(iter(self._finished))
            del self._finished[oldest]
            del self._workflows[oldest]
            del self._number[oldest]
            log = self._logs.pop(oldest)
            log.signal.set()  # a watcher still waiting learns it is gone
            rid = self._request_of.pop(oldest, None)
            if rid is not None:
                self._requests.pop(rid, None)

    async def get(self, workflow_id: str) -> workflow_pb2.Workflow:
        wf = self._workflows.get(workflow_id)
        if wf is None:
            raise WorkflowNotFound(f"workflow {workflow_id!r} not found")
        return wf

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
        before = int(after_key) if after_key is not None else self._created + 1
        out: list[workflow_pb2.Workflow] = []
        size = 0
        for wf_id in reversed(self._workflows):
            if self._number[wf_id] >= before:
                continue
            wf = self._workflows[wf_id]
            if state != 0 and wf.state != state:
                continue
            if owner is not None and wf.owner != owner:
                continue
            if len(out) == limit:
                return out, str(self._number[out[-1].workflow_id])
            if max_bytes is not None:
                # What the item adds to a repeated field: tag, length, body.
                size += wf.ByteSize() + 8
                if out and size > max_bytes:
                    return out, str(self._number[out[-1].workflow_id])
            out.append(wf)
        return out, None

    async def append_event(self, event: workflow_pb2.WorkflowEvent) -> int:
        log = self._logs[event.workflow_id]
        event.sequence = len(log.events) + 1
        log.events.append(event)
        old, log.signal = log.signal, asyncio.Event()
        old.set()
        return event.sequence

    async def events_after(
        self, workflow_id: str, after_sequence: int
    ) -> Sequence[workflow_pb2.WorkflowEvent]:
        log = self._logs.get(workflow_id)
        if log is None:
            raise WorkflowNotFound(f"workflow {workflow_id!r} not found")
        return log.events[max(after_sequence, 0) :]

    async def wait_events(self, workflow_id: str, after_sequence: int, timeout: float) -> None:
        log = self._logs.get(workflow_id)
        if log is None:
            raise WorkflowNotFound(f"workflow {workflow_id!r} not found")
        if len(log.events) > after_sequence:
            return
        try:
            await asyncio.wait_for(log.signal.wait(), timeout)
        except TimeoutError:
            return

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

"""Where workflows live: the source of truth of the workflow service.

A workflow is stored as records, never as one blob: a *header* (the Workflow
message without its tasks, written once at creation, plus a few small status
fields: state, spent, error, end time), one *task record* (``TaskRun``) per
task, and an *event log*. Every transition is one atomic ``apply`` that writes
the changed task records, the status fields and the new events together, and
checks the writer's fencing token first.

Ownership: each live workflow has an owner replica holding a *lease*
(``claim`` / ``renew`` / ``release`` / ``orphans``). A claim returns a new,
larger fencing token; a write with an older token is refused with
``LeaseLost``, so a replica that lost its lease (a GC pause, a partition)
cannot overwrite the new owner's work. Cancellation goes through the store
too: any replica records a request (``request_cancel``); the owner learns it
from ``renew`` (always) or ``cancel_signals`` (at once, best effort).

Uniqueness of workflow ids and of each owner's CreateWorkflow ``request_id``
is the store's: two replicas creating the same id cannot both succeed.

Retention: a finished workflow, its tasks, events and request id expire
``retention_s`` after it ended (default 7 days).

Implementations: ``MemoryWorkflowStore`` (one process, the default) and
``RedisWorkflowStore`` (``redis://``); one conformance suite runs against both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from google.protobuf import timestamp_pb2

from meshwright.mesh.errors import AlreadyExists, FailedPrecondition
from meshwright.workflow.v1 import workflow_pb2

W = workflow_pb2

DEFAULT_RETENTION_S = 7 * 24 * 3600.0
"""How long a finished workflow (and its events and request id) is kept."""

TERMINAL_STATES = frozenset(
    {
        W.WORKFLOW_STATE_SUCCEEDED,
        W.WORKFLOW_STATE_FAILED,
        W.WORKFLOW_STATE_CANCELLED,
    }
)


class LeaseLost(FailedPrecondition):
    """The writer's fencing token is not the workflow's current one: another replica owns it."""

    reason = "WORKFLOW_LEASE_LOST"


class RequestExists(AlreadyExists):
    """The owner's request_id created another workflow already (``record`` says which)."""

    reason = "WORKFLOW_REQUEST_EXISTS"

    def __init__(self, record: RequestRecord) -> None:
        super().__init__(f"request_id created workflow {record.workflow_id!r} already")
        self.record = record


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """What one CreateWorkflow request_id created, and the request it came with."""

    workflow_id: str
    fingerprint: str
    """Digest of the request minus its request_id: a reuse with other content is refused."""


@dataclass(slots=True)
class Change:
    """One transition of one workflow, written atomically by ``apply``.

    The store may keep the objects of a change (the memory store does): do not
    modify them once passed to ``apply`` or ``create``.
    """

    tasks: list[workflow_pb2.TaskRun] = field(default_factory=list)
    """Full records of the tasks that changed (a task named twice: the last wins)."""
    events: list[workflow_pb2.WorkflowEvent] = field(default_factory=list)
    """Appended in order; the store assigns their sequences (and sets them on these objects)."""
    state: int = 0
    """The workflow's new state; 0 leaves it. A terminal state ends the lease and starts
    retention."""
    spent_delta: int = 0
    """Added to the workflow's ``spent``."""
    error: str | None = None
    """The workflow's new error text; None leaves it."""
    end_time: timestamp_pb2.Timestamp | None = None
    """The workflow's end time; None leaves it."""
    write_id: str = ""
    """Names this write: an ``apply`` whose write_id equals the last one applied to the
    workflow is a retry (its reply was lost) and returns without writing again."""

    def merge(self, other: Change) -> None:
        """Fold ``other`` (a later change) into this one."""
        self.tasks.extend(other.tasks)
        self.events.extend(other.events)
        if other.state:
            self.state = other.state
        self.spent_delta += other.spent_delta
        if other.error is not None:
            self.error = other.error
        if other.end_time is not None:
            self.end_time = other.end_time
        if other.write_id:
            self.write_id = other.write_id

    @property
    def empty(self) -> bool:
        return not (
            self.tasks
            or self.events
            or self.state
            or self.spent_delta
            or self.error is not None
            or self.end_time is not None
        )


@dataclass(frozen=True, slots=True)
class Renewal:
    """What ``renew`` found."""

    lost: frozenset[str]
    """Workflows whose lease this replica no longer holds (stop working on them)."""
    cancels: Mapping[str, str]
    """Held workflows with a cancel request, and its reason."""


class WorkflowStore(Protocol):
    """Durable state of the workflow service; each method is one atomic step."""

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
        """Store a new workflow (header, one record per task, its first events), owned by
        ``replica`` under a fresh lease; returns the lease's fencing token.

        WorkflowExists if the id is taken; RequestExists if ``workflow.owner``'s
        ``request_id`` (when not empty) created a workflow already. Nothing is written then.
        """
        ...

    async def find_request(self, request_id: str, *, owner: str) -> RequestRecord | None:
        """What ``owner``'s CreateWorkflow ``request_id`` created, if anything.

        Request ids are scoped per owner: one caller can neither replay nor probe
        another's (and two callers choosing the same id do not collide).
        """
        ...

    async def discard(self, workflow_id: str, token: int) -> None:
        """Delete a workflow that never started (its escrow could not be opened), with its
        request id, so the id and the request id can be used again. LeaseLost if stale."""
        ...

    # -- transitions ------------------------------------------------------------

    async def apply(self, workflow_id: str, token: int, change: Change) -> int:
        """Write ``change`` atomically if ``token`` is the workflow's current fencing token;
        returns the workflow's last event sequence. LeaseLost otherwise (nothing written),
        WorkflowNotFound if unknown."""
        ...

    # -- reads --------------------------------------------------------------------

    async def get(self, workflow_id: str) -> workflow_pb2.Workflow:
        """A fresh copy of the workflow, its tasks in definition order; WorkflowNotFound
        if unknown."""
        ...

    async def state_of(self, workflow_id: str) -> int:
        """The workflow's state alone (cheap); WorkflowNotFound if unknown."""
        ...

    async def lease_holder(self, workflow_id: str) -> str:
        """The replica whose lease the workflow is under ("" if released or finished; a
        lapsed lease still names its last holder until claimed). WorkflowNotFound if unknown."""
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

    async def events_after(
        self, workflow_id: str, after_sequence: int, *, limit: int = 1000
    ) -> Sequence[workflow_pb2.WorkflowEvent]:
        """Up to ``limit`` events with a larger sequence, in order; WorkflowNotFound if
        the workflow is unknown."""
        ...

    async def read_events(
        self, workflow_id: str, after_sequence: int, *, wait_s: float, limit: int = 1000
    ) -> tuple[Sequence[workflow_pb2.WorkflowEvent], bool]:
        """Up to ``limit`` events after ``after_sequence``, waiting up to ``wait_s`` for one
        when there is none yet (across replicas); and whether the workflow had ended
        when none was found (then none will come). ``([], False)`` after ``wait_s``.
        WorkflowNotFound if the workflow is unknown, or goes away while waiting. What a
        watch loops on: one round trip when events are there, two when it waits."""
        ...

    # -- ownership ----------------------------------------------------------------

    async def claim(self, workflow_id: str, replica: str, ttl_s: float) -> int | None:
        """Take the lease of a live workflow whose lease lapsed (or was released); returns
        the new, larger fencing token, or None (owned by a live lease, finished, unknown)."""
        ...

    async def renew(self, replica: str, leases: Mapping[str, int], ttl_s: float) -> Renewal:
        """Extend every lease in ``leases`` (workflow id -> token) still held by
        ``replica`` with that token; report the lost ones and pending cancel requests."""
        ...

    async def release(self, workflow_id: str, token: int) -> None:
        """Let the lease lapse now (a graceful hand-off); nothing if ``token`` is stale."""
        ...

    async def orphans(self, limit: int) -> list[str]:
        """Live workflows whose lease lapsed, oldest lapse first (candidates for claim)."""
        ...

    # -- cancellation -------------------------------------------------------------

    async def request_cancel(self, workflow_id: str, reason: str) -> bool:
        """Record a cancel request for the owner to act on; False if the workflow is
        finished already. WorkflowNotFound if unknown. The first reason is kept."""
        ...

    def cancel_signals(self) -> AsyncIterator[str]:
        """Workflow ids as cancel requests arrive (best effort; ``renew`` is the guarantee).
        Ends when the store closes."""
        ...

    # -- templates ----------------------------------------------------------------

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

    async def close(self) -> None:
        """Release connections; end ``cancel_signals`` iterators."""
        ...


def page_item_bytes(wf: workflow_pb2.Workflow) -> int:
    """What one workflow adds to a repeated field: tag, length, body."""
    return wf.ByteSize() + 8


__all__ = [
    "DEFAULT_RETENTION_S",
    "TERMINAL_STATES",
    "Change",
    "LeaseLost",
    "Renewal",
    "RequestExists",
    "RequestRecord",
    "WorkflowStore",
    "page_item_bytes",
]

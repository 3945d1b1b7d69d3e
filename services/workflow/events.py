"""A workflow's event log: building events, and following the log.

The log lives in the store (a Redis Stream per workflow on Redis), so any
replica can serve WatchWorkflow for any workflow: it reads what is stored,
then blocks on the store for what comes next, resumable from a sequence.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from meshwright.mesh.timeutil import timestamp
from meshwright.workflow.errors import WorkflowNotFound
from meshwright.workflow.store import WorkflowStore
from meshwright.workflow.v1 import workflow_pb2

W = workflow_pb2

TERMINAL_EVENTS = frozenset(
    {
        W.WORKFLOW_EVENT_TYPE_WORKFLOW_SUCCEEDED,
        W.WORKFLOW_EVENT_TYPE_WORKFLOW_FAILED,
        W.WORKFLOW_EVENT_TYPE_WORKFLOW_CANCELLED,
    }
)
TERMINAL_EVENT_OF: dict[int, int] = {
    W.WORKFLOW_STATE_SUCCEEDED: W.WORKFLOW_EVENT_TYPE_WORKFLOW_SUCCEEDED,
    W.WORKFLOW_STATE_FAILED: W.WORKFLOW_EVENT_TYPE_WORKFLOW_FAILED,
    W.WORKFLOW_STATE_CANCELLED: W.WORKFLOW_EVENT_TYPE_WORKFLOW_CANCELLED,
}


def event(
    workflow_id: str, event_type: int, workflow_state: int, **fields: object
) -> workflow_pb2.WorkflowEvent:
    """A new event (its sequence is the store's to assign)."""
    return workflow_pb2.WorkflowEvent(
        workflow_id=workflow_id,
        type=event_type,  # type: ignore[arg-type]
        time=timestamp(),
        workflow_state=workflow_state,  # type: ignore[arg-type]
        **fields,  # type: ignore[arg-type]
    )


async def follow(
    store: WorkflowStore, workflow_id: str, after_sequence: int, *, heartbeat_s: float
) -> AsyncIterator[workflow_pb2.WorkflowEvent]:
    """Events after ``after_sequence`` in order, live; ends after the terminal event.

    WorkflowNotFound if the workflow is unknown when the watch starts; a
    workflow that expires mid-watch ends it quietly.
    """
    last = after_sequence
    while True:
        try:
            events, ended = await store.read_events(workflow_id, last, wait_s=heartbeat_s)
        except WorkflowNotFound:
            if last == after_sequence:
                raise
            return  # expired (or discarded) mid-watch
        for ev in events:
            yield ev
            last = ev.sequence
            if ev.type in TERMINAL_EVENTS:
                return
        if ended:
            return  # ended before ``after_sequence``: nothing more will come


__all__ = ["TERMINAL_EVENTS", "TERMINAL_EVENT_OF", "event", "follow"]

"""What a skill sees of its task besides the input: ids, upstream outputs, reporting."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

from meshwright.mesh.context import current_call


class TaskSink(Protocol):
    """Where a running task's reports go (implemented by the task runner)."""

    def on_progress(self, message: str, fraction: float | None) -> None:
        """The skill reported progress."""

    def on_artifact(self, name: str, data: Mapping[str, Any]) -> None:
        """The skill produced an artifact."""


class TaskContext:
    """Passed to every skill call next to its input.

    ``progress`` and ``artifact`` are for async skills; a sync skill (run in a
    worker thread) uses ``progress_nowait`` and ``artifact_nowait``, which hand
    the report to the event loop safely.
    """

    __slots__ = (
        "task_id",
        "context_id",
        "skill",
        "upstream",
        "metadata",
        "deadline",
        "_sink",
        "_loop",
        "_loop_thread",
    )

    def __init__(
        self,
        *,
        task_id: str,
        skill: str,
        context_id: str = "",
        upstream: dict[str, dict[str, Any]] | None = None,
        metadata: dict[str, str] | None = None,
        sink: TaskSink | None = None,
    ) -> None:
        self.task_id = task_id
        """The caller-chosen task id."""
        self.context_id = context_id
        """Groups related tasks; the workflow id when run by the engine."""
        self.skill = skill
        """The skill id being run."""
        self.upstream: dict[str, dict[str, Any]] = upstream if upstream is not None else {}
        """Outputs of the tasks this one depends on, by their task ids."""
        self.metadata: dict[str, str] = metadata if metadata is not None else {}
        """Free-form metadata from the caller."""
        call = current_call()
        self.deadline: float | None = call.deadline if call is not None else None
        """``time.monotonic()`` value the call that started the task must end by (None
        without one): past it the caller has gone and the task is canceled."""
        self._sink = sink
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()

    def time_remaining(self) -> float | None:
        """Seconds left before ``deadline`` (never negative), None without one: a skill
        that calls something slow budgets it so it can still answer in time."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    async def progress(self, message: str, fraction: float | None = None) -> None:
        """Report progress: a message and optionally the fraction done in [0, 1]."""
        if self._sink is not None:
            self._sink.on_progress(message, _clamp(fraction))

    async def artifact(self, name: str, data: Mapping[str, Any]) -> None:
        """Publish an artifact (structured data) produced by the task."""
        if self._sink is not None:
            self._sink.on_artifact(name, dict(data))

    def progress_nowait(self, message: str, fraction: float | None = None) -> None:
        """``progress`` for sync skills; callable from any thread."""
        if self._sink is not None:
            self._call(self._sink.on_progress, message, _clamp(fraction))

    def artifact_nowait(self, name: str, data: Mapping[str, Any]) -> None:
        """``artifact`` for sync skills; callable from any thread."""
        if self._sink is not None:
            self._call(self._sink.on_artifact, name, dict(data))

    def _call(self, fn: Any, *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            fn(*args)
        else:
            self._loop.call_soon_threadsafe(fn, *args)


def _clamp(fraction: float | None) -> float | None:
    if fraction is None:
        return None
    return min(1.0, max(0.0, float(fraction)))

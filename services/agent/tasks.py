"""Running tasks on an agent: admission, the skill call, cancellation, load.

This is the domain side of ``AgentService``; it speaks the contract's
messages but knows nothing of gRPC. Each task runs in its own asyncio task
so ``cancel`` can stop it; its last caller going away cancels it the same way.

Task ids are idempotency keys. A task the skill finished (COMPLETED, FAILED,
REJECTED) is remembered for a while (``ResultMemory``), and the same request
again is answered with it instead of running the skill twice. The same
request while the task runs joins it: the new caller waits for the same task,
and the task is canceled only when no caller waits any more. That is what a
new owner needs when it re-dispatches the attempt of one that died: the dead
caller's cancellation, arriving late, must not cancel the work the new one
waits for, and refusing the join would make it run the skill a second time
under another attempt id. A CANCELED task is not remembered: the caller (or
CancelTask) stopped it, so running it again when asked is right.

A sync skill runs in a worker thread of the runner's own pool, which Python
cannot interrupt: cancelling it ends the task CANCELED at once, but its slot
(and the load it reports) stays taken until the thread has returned, so
capacity holds for the work really running.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from typing import TYPE_CHECKING, Any

from meshwright.agent._struct import dict_to_struct, struct_to_dict
from meshwright.agent.context import TaskContext
from meshwright.agent.errors import (
    OUTPUT_NOT_JSON,
    SKILL_ERROR,
    AgentAtCapacity,
    SkillNotFound,
    TaskAlreadyRunning,
    TaskFailed,
    TaskIdReused,
    TaskNotFound,
    TaskRejected,
)
from meshwright.agent.results import (
    DEFAULT_RESULT_MEMORY,
    DEFAULT_RESULT_TTL_S,
    ResultMemory,
    request_fingerprint,
)
from meshwright.agent.skill import Skill
from meshwright.agent.v1 import agent_pb2
from meshwright.mesh.errors import FieldViolation, InvalidArgument
from meshwright.mesh.timeutil import timestamp

if TYPE_CHECKING:
    from meshwright.mesh.metrics import MeshMetrics

log = logging.getLogger(__name__)

TaskRequest = agent_pb2.ExecuteTaskRequest | agent_pb2.StreamTaskRequest
"""Both requests carry the same fields."""

_TERMINAL = frozenset(
    {
        agent_pb2.TASK_STATE_COMPLETED,
        agent_pb2.TASK_STATE_FAILED,
        agent_pb2.TASK_STATE_CANCELED,
        agent_pb2.TASK_STATE_REJECTED,
    }
)
_REMEMBERED = _TERMINAL - {agent_pb2.TASK_STATE_CANCELED}
"""Ends the skill itself reached; a cancel is the caller's, so running again is right."""


class _Updates:
    """The messages a stream has not sent yet, bounded for a reader that lags.

    Progress coalesces: a status update still waiting behind the reader is
    replaced by the newer one, so a skill reporting in a tight loop leaves one
    pending status, not one per report. Artifacts (which the task keeps anyway)
    and the end of the stream are never dropped.
    """

    __slots__ = ("_items", "_tail_coalesces", "_wakeup", "_ended")

    def __init__(self) -> None:
        self._items: deque[agent_pb2.StreamTaskResponse] = deque()
        self._tail_coalesces = False
        self._wakeup = asyncio.Event()
        self._ended = False

    def put(self, item: agent_pb2.StreamTaskResponse, *, coalesce: bool = False) -> None:
        """Queue a message; with ``coalesce``, replace a coalescing one still last in line."""
        if self._ended:
            return
        if coalesce and self._tail_coalesces and self._items:
            self._items[-1] = item
        else:
            self._items.append(item)
        self._tail_coalesces = coalesce
        self._wakeup.set()

    def end(self) -> None:
        """No more messages: ``get`` returns None once the queued ones are taken."""
        self._ended = True
        self._wakeup.set()

    async def get(self) -> agent_pb2.StreamTaskResponse | None:
        """The next message, waiting for one; None at the end."""
        while not self._items:
            if self._ended:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()
        item = self._items.popleft()
        if not self._items:
            self._tail_coalesces = False
        return item

    def qsize(self) -> int:
        """Messages waiting to be taken."""
        return len(self._items)


class _RunningTask:
    """One admitted task: its message (the state), the skill call, its callers' streams."""

    __slots__ = (
        "task",
        "skill",
        "input",
        "fingerprint",
        "ctx",
        "streams",
        "waiters",
        "future",
        "thread",
        "cancel_message",
        "closed",
    )

    def __init__(
        self,
        task: agent_pb2.Task,
        skill: Skill,
        input: dict[str, Any],
        fingerprint: bytes,
    ) -> None:
        self.task = task
        self.skill = skill
        self.input = input
        self.fingerprint = fingerprint
        """``request_fingerprint`` of the request that started it; a join must match."""
        self.streams: list[_Updates] = []
        """One queue per StreamTask caller following the task."""
        self.waiters = 0
        """Calls waiting for the task; the last one going away cancels it."""
        self.ctx: TaskContext | None = None
        self.future: asyncio.Task[None] | None = None
        self.thread: concurrent.futures.Future[Any] | None = None
        """A sync skill's call in the worker pool; done when the thread returned."""
        self.cancel_message = ""
        self.closed = False

    @property
    def terminal(self) -> bool:
        return self.task.status.state in _TERMINAL

    def follow(self) -> _Updates:
        """A new stream of this task: its status now, its artifacts so far, then what follows."""
        updates = _Updates()
        updates.put(agent_pb2.StreamTaskResponse(status_update=self.task.status))
        for artifact in self.task.artifacts:
            updates.put(agent_pb2.StreamTaskResponse(artifact_update=artifact))
        self.streams.append(updates)
        return updates

    def unfollow(self, updates: _Updates) -> None:
        if updates in self.streams:
            self.streams.remove(updates)

    # TaskSink: reports from the skill.
    def on_progress(self, message: str, fraction: float | None) -> None:
        if self.terminal:
            return
        status = self.task.status
        status.message = message
        if fraction is not None:
            status.progress = fraction
        status.update_time.CopyFrom(timestamp())
        if self.streams:
            update = agent_pb2.StreamTaskResponse(status_update=status)
            for updates in self.streams:
                updates.put(update, coalesce=True)

    def on_artifact(self, name: str, data: Mapping[str, Any]) -> None:
        if self.terminal:
            return
        artifact = agent_pb2.Artifact(
            artifact_id=f"artifact-{len(self.task.artifacts) + 1}", name=name
        )
        dict_to_struct(data, artifact.data)
        self.task.artifacts.append(artifact)
        if self.streams:
            update = agent_pb2.StreamTaskResponse(artifact_update=artifact)
            for updates in self.streams:
                updates.put(update)

    def finish(
        self,
        state: agent_pb2.TaskState,
        message: str,
        *,
        reason: str = "",
        non_retryable: bool = False,
    ) -> None:
        if self.terminal:
            return
        now = timestamp()
        status = self.task.status
        status.state = state
        status.message = message
        status.reason = reason
        status.non_retryable = non_retryable
        status.update_time.CopyFrom(now)
        if state == agent_pb2.TASK_STATE_COMPLETED:
            status.progress = 1.0
        self.task.end_time.CopyFrom(now)


class TaskRunner:
    """Admits, runs and cancels the tasks of one agent, and remembers the finished ones.

    ``result_memory`` finished tasks are remembered (the oldest forgotten
    first), each for ``result_ttl_s`` on ``clock``; 0 for either remembers
    none.
    """

    def __init__(
        self,
        skills: Mapping[str, Skill],
        *,
        capacity: int = 0,
        cancel_wait_s: float = 5.0,
        result_memory: int = DEFAULT_RESULT_MEMORY,
        result_ttl_s: float = DEFAULT_RESULT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._skills = skills
        self._capacity = capacity
        self._cancel_wait_s = cancel_wait_s
        self._running: dict[str, _RunningTask] = {}
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self.results = ResultMemory(max_entries=result_memory, ttl_s=result_ttl_s, clock=clock)
        """The finished tasks remembered by id."""
        self.metrics: MeshMetrics | None = None
        """Where tasks in flight, their latency and errors are counted (by skill)."""

    @property
    def load(self) -> int:
        """Tasks in flight now, counting cancelled sync skills whose thread still runs."""
        return len(self._running)

    @property
    def capacity(self) -> int:
        """Tasks accepted at once; 0 is unlimited."""
        return self._capacity

    def close(self) -> None:
        """Let the worker threads go once idle (threads still running finish first)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None

    async def execute(self, request: TaskRequest) -> agent_pb2.Task:
        """Run one task to a terminal state and return it.

        A remembered task id is answered with the recorded task; a running one
        is joined (the call waits for the same task).
        """
        r = self._admit(request)
        if isinstance(r, agent_pb2.Task):
            return r
        fut = r.future
        assert fut is not None
        try:
            # Not ``await fut``: the task swallows its cancellation (it ends CANCELED), so
            # a cancel of this call passed on to it would return here as if nothing had
            # happened, and a call past its deadline would answer with a CANCELED task
            # instead of DEADLINE_EXCEEDED. wait() leaves fut alone; we cancel it ourselves.
            await asyncio.wait({fut})
        finally:
            # Cancelled (the caller went away, its deadline passed) or done.
            self._leave(r)
        # Done, or cancelled (by CancelTask, or before the skill started): r.task says which.
        return r.task

    async def stream(self, request: TaskRequest) -> AsyncIterator[agent_pb2.StreamTaskResponse]:
        """Run one task, yielding WORKING, its reports, then a final message with the task.

        A remembered task id yields only the final message; a stream joining a
        running task starts with its status now and its artifacts so far.
        """
        r = self._admit(request)
        if isinstance(r, agent_pb2.Task):
            yield agent_pb2.StreamTaskResponse(final=True, status_update=r.status, task=r)
            return
        updates = r.follow()
        try:
            while (item := await updates.get()) is not None:
                yield item
            yield agent_pb2.StreamTaskResponse(final=True, status_update=r.task.status, task=r.task)
        finally:
            r.unfollow(updates)
            self._leave(r)

    async def cancel(self, task_id: str) -> agent_pb2.Task:
        """Cancel a running task and wait (a while) for it to stop; returns the task."""
        if not task_id:
            raise InvalidArgument.field("task_id", "is required")
        r = self._running.get(task_id)
        if r is None or r.future is None:
            raise TaskNotFound(
                f"no task {task_id!r} is running on this agent", metadata={"task_id": task_id}
            )
        r.cancel_message = "canceled by request"
        fut = r.future
        fut.cancel()
        await asyncio.wait({fut}, timeout=self._cancel_wait_s)
        if fut.done():
            self._close(r)
        return r.task

    def _admit(self, request: TaskRequest) -> _RunningTask | agent_pb2.Task:
        """The recorded task, the running one joined, or a new one started; one more waiter."""
        task_id, skill_id = request.task_id, request.skill
        if not task_id or not skill_id:
            raise InvalidArgument(
                "task_id and skill are required",
                violations=[
                    FieldViolation(name, "is required")
                    for name, value in (("task_id", task_id), ("skill", skill_id))
                    if not value
                ],
            )
        skill = self._skills.get(skill_id)
        if skill is None:
            raise SkillNotFound(
                f"this agent does not offer skill {skill_id!r}", metadata={"skill": skill_id}
            )
        fingerprint = request_fingerprint(request)
        recorded = self.results.get(task_id)
        if recorded is not None:
            if recorded.fingerprint != fingerprint:
                raise TaskIdReused.of(task_id)
            return recorded.task
        running = self._running.get(task_id)
        if running is not None:
            if running.fingerprint != fingerprint:
                raise TaskIdReused.of(task_id)
            if running.closed:
                raise TaskAlreadyRunning(
                    f"task {task_id!r} was canceled but its skill still runs in a worker "
                    "thread; the id is free once it has returned",
                    metadata={"task_id": task_id},
                )
            running.waiters += 1
            return running
        if self._capacity and len(self._running) >= self._capacity:
            raise AgentAtCapacity(
                f"agent is at capacity ({self._capacity} tasks in flight)",
                metadata={"capacity": str(self._capacity)},
            )
        now = timestamp()
        task = agent_pb2.Task(
            task_id=task_id,
            context_id=request.context_id,
            skill=skill_id,
            create_time=now,
            status=agent_pb2.TaskStatus(state=agent_pb2.TASK_STATE_WORKING, update_time=now),
        )
        r = _RunningTask(task, skill, struct_to_dict(request.input), fingerprint)
        r.ctx = TaskContext(
            task_id=task_id,
            skill=skill_id,
            context_id=request.context_id,
            upstream={k: struct_to_dict(v) for k, v in request.upstream_outputs.items()},
            metadata=dict(request.metadata),
            sink=r,
        )
        self._running[task_id] = r
        r.waiters = 1
        fut = r.future = asyncio.create_task(self._run(r))
        # Also when cancelled before it ever ran (and so never reached its finally).
        fut.add_done_callback(lambda _: self._close(r))
        return r

    def _leave(self, r: _RunningTask) -> None:
        """A caller stopped waiting; cancel the task if it was the last one."""
        r.waiters -= 1
        if r.waiters > 0 or r.future is None or r.future.done():
            return
        r.future.cancel()
        r.cancel_message = r.cancel_message or "canceled: the caller went away"
        self._close(r)

    async def _run(self, r: _RunningTask) -> None:
        assert r.ctx is not None
        metrics = self.metrics
        started = time.monotonic()
        if metrics is not None:
            metrics.agent_task_started(r.skill.id)
        try:
            if r.skill.is_async:
                result = await r.skill.call(r.input, r.ctx)
            else:
                result = await self._call_in_thread(r)
            if not isinstance(result, dict):
                result = {"result": result}
            try:
                dict_to_struct(result, r.task.output)
            except (ValueError, TypeError, AttributeError) as err:
                r.task.ClearField("output")
                r.finish(
                    agent_pb2.TASK_STATE_FAILED,
                    f"output is not JSON-like data: {err}",
                    reason=OUTPUT_NOT_JSON,
                )
            else:
                r.finish(agent_pb2.TASK_STATE_COMPLETED, "")
        except (TaskRejected, TaskFailed) as err:
            state = (
                agent_pb2.TASK_STATE_REJECTED
                if isinstance(err, TaskRejected)
                else agent_pb2.TASK_STATE_FAILED
            )
            r.finish(state, err.message, reason=err.reason, non_retryable=not err.retryable)
        except asyncio.CancelledError:
            # Swallowed: the task ends CANCELED and the caller gets it back.
            r.finish(
                agent_pb2.TASK_STATE_CANCELED,
                r.cancel_message or "canceled: the caller went away or the agent stopped",
            )
        except Exception as err:
            log.warning(
                "task %s (%s) failed: %s",
                r.task.task_id,
                r.skill.id,
                err,
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
            r.finish(
                agent_pb2.TASK_STATE_FAILED, f"{type(err).__name__}: {err}", reason=SKILL_ERROR
            )
        finally:
            if metrics is not None:
                ok = r.task.status.state == agent_pb2.TASK_STATE_COMPLETED
                metrics.agent_task_finished(r.skill.id, time.monotonic() - started, ok)
            self._close(r)

    def _call_in_thread(self, r: _RunningTask) -> asyncio.Future[Any]:
        """Start a sync skill in the pool; its slot is freed only once the thread returns."""
        assert r.ctx is not None
        loop = asyncio.get_running_loop()
        if self._pool is None:
            # One thread per slot: abandoned threads never wait behind each other,
            # and they do not take the loop's default executor from anyone else.
            self._pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=self._capacity or None, thread_name_prefix="skill"
            )
        thread = r.thread = r.skill.submit(r.input, r.ctx, self._pool)

        def thread_done(_: concurrent.futures.Future[Any]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to free
                loop.call_soon_threadsafe(self._release, r)

        thread.add_done_callback(thread_done)
        return asyncio.wrap_future(thread, loop=loop)

    def _close(self, r: _RunningTask) -> None:
        """Make the task terminal, remember how the skill ended it, end its streams and free
        its slot if idle; idempotent."""
        if r.closed:
            return
        r.closed = True
        r.finish(agent_pb2.TASK_STATE_CANCELED, r.cancel_message or "canceled")
        if r.task.status.state in _REMEMBERED:
            self.results.put(r.task.task_id, r.fingerprint, r.task)
        for updates in r.streams:
            updates.end()
        self._release(r)

    def _release(self, r: _RunningTask) -> None:
        """Free the slot of a closed task whose worker thread (if any) has returned."""
        if not r.closed or (r.thread is not None and not r.thread.done()):
            return
        if self._running.get(r.task.task_id) is r:
            del self._running[r.task.task_id]

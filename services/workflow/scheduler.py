"""Scheduling one owned workflow: ready tasks, attempts on agents, payment, the ending.

Every task runs in its own asyncio task: it takes a slot on an agent from the
dispatcher, runs one attempt (with the attempt id ``<workflow>.<task>.<n>``,
the same when an interrupted attempt is dispatched again, so the agent
replays its recorded result), pays the agent from the escrow, and records the
outcome through the run's group commit. Failures are retried per the task's
``TaskRetry``; an agent answering "at capacity" is placed again without
spending an attempt.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any

from google.protobuf import struct_pb2

from meshwright.agent.v1 import agent_pb2
from meshwright.mesh import telemetry
from meshwright.mesh.context import detached
from meshwright.mesh.errors import (
    DeadlineExceeded,
    InvalidArgument,
    MeshError,
    NotFound,
    Unavailable,
)
from meshwright.mesh.limits import check_request
from meshwright.mesh.timeutil import timestamp
from meshwright.workflow.dispatch import (
    AgentDispatcher,
    BudgetExhausted,
    NoAgentAvailable,
    Slot,
    is_at_capacity,
    is_transport_failure,
)
from meshwright.workflow.events import TERMINAL_EVENT_OF, event
from meshwright.workflow.payments import Payment, Payments
from meshwright.workflow.retry import TaskRetry
from meshwright.workflow.run import MAX_WORKFLOW_BYTES, Run
from meshwright.workflow.store import Change, LeaseLost
from meshwright.workflow.v1 import workflow_pb2

if TYPE_CHECKING:
    from meshwright.mesh.metrics import MeshMetrics
    from meshwright.workflow.engine import EngineConfig

log = logging.getLogger(__name__)

W = workflow_pb2
MAX_OUTPUT_BYTES = 1024 * 1024
"""An agent's output for one task; a larger one fails the task (and is not paid)."""
MAX_ERROR_CHARS = 200
"""A task's stored error text (agents' messages are clipped to it)."""
DEADLINE_ERROR = "workflow deadline exceeded"


def clip(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    """``text`` cut to ``limit`` characters (with an ellipsis)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _seconds(ts: Any) -> float:
    return float(ts.seconds) + ts.nanos / 1e9


def _outcome_name(outcome: tuple[bool, str, bool] | None) -> str:
    """An attempt's outcome as spans and metrics name it."""
    if outcome is None:
        return "at_capacity"
    return "succeeded" if outcome[0] else "failed"


class _HandedOff(Exception):
    """The replica is handing its runs off: stop this task's attempts quietly."""


class Scheduler:
    """Runs the tasks of the workflows this replica owns."""

    def __init__(
        self,
        *,
        dispatcher: AgentDispatcher,
        payments: Payments,
        config: EngineConfig,
        on_done: Callable[[Run], None],
        metrics: MeshMetrics | None = None,
    ) -> None:
        self._metrics = metrics
        self.replica = ""
        """The engine's replica id (on each attempt's span)."""
        self._dispatcher = dispatcher
        self._payments = payments
        self._config = config
        self._retry_defaults = config.retry
        self._on_done = on_done
        self.draining = False
        """Handing off: no new attempt starts; runs end only by their own events."""
        self._background: set[asyncio.Task[None]] = set()

    # -- starting -------------------------------------------------------------

    def start(self, run: Run) -> None:
        """Schedule whatever a new or rebuilt run can do now."""
        definition = run.wf.definition
        if definition.HasField("timeout"):
            end_at = _seconds(run.wf.create_time) + _seconds(definition.timeout)
            remaining = end_at - time.time()
            if remaining <= 0:
                self._spawn_finish(run, W.WORKFLOW_STATE_FAILED, DEADLINE_ERROR)
                return
            run.deadline = asyncio.get_running_loop().call_later(
                remaining, self._spawn_finish, run, W.WORKFLOW_STATE_FAILED, DEADLINE_ERROR
            )
        if run.cancel_reason is not None:
            self._spawn_finish(run, W.WORKFLOW_STATE_CANCELLED, run.cancel_reason)
            return
        failed = run.failed_task()
        if failed is not None:
            self._spawn_finish(run, W.WORKFLOW_STATE_FAILED, f"task {failed!r} failed")
            return
        if run.finished_tasks == len(run.specs):
            self._spawn_finish(run, W.WORKFLOW_STATE_SUCCEEDED, "")
            return
        for task_id in run.runnable():
            self._start_task(run, task_id)

    def _start_task(self, run: Run, task_id: str) -> None:
        if self.draining or run.closing:
            return  # left as recorded, for the replica that takes the run over
        tr = run.records[task_id]
        if tr.state == W.TASK_RUN_STATE_PENDING:
            tr.state = W.TASK_RUN_STATE_READY
        # Detached: the run outlives the call that started it (and its deadline).
        run.attempts[task_id] = asyncio.create_task(
            self._execute(run, task_id), name=f"{run.workflow_id}/{task_id}", context=detached()
        )

    def _commit(self, run: Run, change: Change) -> asyncio.Future[None]:
        fut = run.commit(change)
        fut.add_done_callback(_observed)
        return fut

    def _record(
        self,
        run: Run,
        task_id: str,
        event_type: int,
        *,
        spent_delta: int = 0,
        with_record: bool = True,
        **fields: object,
    ) -> None:
        """Commit a task's event (and a snapshot of its record) without waiting: what
        follows is queued behind it in the same group commit."""
        self._commit(
            run,
            Change(
                tasks=[run.snapshot(task_id)] if with_record else [],
                spent_delta=spent_delta,
                events=[
                    event(run.workflow_id, event_type, run.wf.state, task_id=task_id, **fields)
                ],
            ),
        )

    # -- one task -------------------------------------------------------------

    async def _execute(self, run: Run, task_id: str) -> None:
        try:
            ok = await self._attempts(run, task_id)
        except (asyncio.CancelledError, _HandedOff, LeaseLost):
            run.attempts.pop(task_id, None)
            return
        except Exception as err:  # a bug must fail the workflow, not hang it
            log.exception("task %s/%s crashed", run.workflow_id, task_id)
            tr = run.records[task_id]
            tr.state = W.TASK_RUN_STATE_FAILED
            tr.error = clip(f"internal error: {err}")
            tr.end_time.CopyFrom(timestamp())
            self._commit(run, Change(tasks=[run.snapshot(task_id)]))
            ok = False
        run.attempts.pop(task_id, None)
        if run.closing:
            return
        if not ok:
            await self.finish(run, W.WORKFLOW_STATE_FAILED, f"task {task_id!r} failed")
            return
        run.finished_tasks += 1
        for child in run.dependants[task_id]:
            run.waiting_on[child] -= 1
            if run.waiting_on[child] == 0:
                self._start_task(run, child)
        if run.finished_tasks == len(run.specs):
            await self.finish(run, W.WORKFLOW_STATE_SUCCEEDED, "")

    async def _attempts(self, run: Run, task_id: str) -> bool:
        cfg = self._config
        spec = run.specs[task_id]
        tr = run.records[task_id]
        rules = TaskRetry.of(spec, self._retry_defaults)
        wf_id = run.workflow_id
        # An attempt recorded as running but with no result (its owner died or
        # handed off) is dispatched again with its own id, to the agent that ran
        # it if it can take it: the agent answers with the result it remembers.
        resumed = tr.state == W.TASK_RUN_STATE_RUNNING and tr.attempts > 0
        attempt = tr.attempts if resumed else tr.attempts + 1
        prefer = tr.agent_id if resumed else ""
        request = agent_pb2.ExecuteTaskRequest(skill=spec.skill, input=spec.input, context_id=wf_id)
        for dep in spec.depends_on:
            request.upstream_outputs[dep].CopyFrom(run.records[dep].output)
        exclude: set[str] = set()
        error = ""
        busy_since: float | None = None  # agents answering "at capacity" since then
        while attempt <= rules.max_attempts:
            if self.draining:
                raise _HandedOff
            if self._metrics is not None:
                self._metrics.queue_depth_changed(1)
            try:
                slot = await self._dispatcher.acquire(
                    spec.skill,
                    max_price=run.available,
                    exclude=exclude,
                    prefer=prefer,
                    timeout_s=cfg.agent_wait_s,
                    on_unaffordable=lambda: run.reserved > 0,
                )
            except BudgetExhausted as err:
                error = clip(f"{err.reason}: {err.message}")
                break  # no retry can make the budget larger
            except MeshError as err:
                error = clip(f"{err.reason}: {err.message}")
                if not rules.retryable_reason(err.reason) or attempt >= rules.max_attempts:
                    break
                await self._retrying(run, task_id, attempt, "", error, rules.backoff_after(attempt))
                attempt += 1
                continue
            finally:
                if self._metrics is not None:
                    self._metrics.queue_depth_changed(-1)
            prefer = ""
            outcome = await self._attempt(run, task_id, slot, request, attempt, rules)
            if outcome is None:
                # The agent was at capacity: not an attempt, place it again; but only for
                # as long as a task waits for a free agent at all.
                now = time.monotonic()
                busy_since = now if busy_since is None else busy_since
                if now - busy_since < cfg.agent_wait_s:
                    continue
                outcome = (
                    False,
                    f"{NoAgentAvailable.reason}: every agent offering {spec.skill!r} answered "
                    f"at capacity for {cfg.agent_wait_s:.1f}s",
                    rules.retryable_reason(NoAgentAvailable.reason),
                )
            busy_since = None
            ok, error, retryable = outcome
            if ok:
                return True
            if slot.price > 0:
                # The reservation is back; tasks waiting on budget may fit now.
                for skill in slot.skills:
                    self._dispatcher.wake_all(skill)
            if not retryable or attempt >= rules.max_attempts:
                break
            exclude.add(slot.agent_id)
            await self._retrying(
                run, task_id, attempt, slot.agent_id, error, rules.backoff_after(attempt)
            )
            attempt += 1
        tr.state = W.TASK_RUN_STATE_FAILED
        tr.error = clip(error)
        tr.end_time.CopyFrom(timestamp())
        self._record(
            run,
            task_id,
            W.WORKFLOW_EVENT_TYPE_TASK_FAILED,
            agent_id=tr.agent_id,
            attempt=tr.attempts,
            message=tr.error,
        )
        return False

    async def _attempt(
        self,
        run: Run,
        task_id: str,
        slot: Slot,
        request: agent_pb2.ExecuteTaskRequest,
        attempt: int,
        rules: TaskRetry,
    ) -> tuple[bool, str, bool] | None:
        """One attempt on ``slot``: (succeeded, error, retryable), or None when the agent
        answered at capacity (it did not run the task).

        With tracing on it is a span, a child of the run's create call (kept with the
        workflow, so retries and a replica that took the run over join the same
        trace); the call to the agent and the payment are its children."""
        started = time.monotonic()
        if not telemetry.enabled():
            outcome = await self._attempt_on(run, task_id, slot, request, attempt, rules)
        else:
            outcome = await self._traced_attempt(run, task_id, slot, request, attempt, rules)
        if self._metrics is not None:
            self._metrics.task_finished(
                run.specs[task_id].skill, _outcome_name(outcome), time.monotonic() - started
            )
        return outcome

    @staticmethod
    def _trace_parent(run: Run) -> Any:
        """The run's trace context (its create call's span), parsed once; None when the
        run has none (created with tracing off): spans then join the current context."""
        if run.trace_context is None and run.wf.traceparent:
            run.trace_context = telemetry.context_of(run.wf.traceparent)
        return run.trace_context

    async def _traced_attempt(
        self,
        run: Run,
        task_id: str,
        slot: Slot,
        request: agent_pb2.ExecuteTaskRequest,
        attempt: int,
        rules: TaskRetry,
    ) -> tuple[bool, str, bool] | None:
        attributes = {
            "meshwright.workflow_id": run.workflow_id,
            "meshwright.task_id": task_id,
            "meshwright.skill": run.specs[task_id].skill,
            "meshwright.agent_id": slot.agent_id,
            "meshwright.attempt": attempt,
            "meshwright.price": slot.price,
            "meshwright.replica": self.replica,
            "rpc.system": "grpc",
            "rpc.service": "meshwright.agent.v1.AgentService",
            "rpc.method": "StreamTask" if run.specs[task_id].stream_progress else "ExecuteTask",
            "server.address": slot.endpoint,
        }
        parent = self._trace_parent(run)
        # A CLIENT span: the attempt is the call to the agent (whose SERVER span is its
        # child, and made no CLIENT span of its own), with the payment it ends with.
        with telemetry.span(
            f"task {task_id}", parent=parent, kind=telemetry.SpanKind.CLIENT, attributes=attributes
        ) as span:
            outcome = await self._attempt_on(run, task_id, slot, request, attempt, rules)
            if span is None:  # tracing was turned off meanwhile
                return outcome
            span.set_attribute("meshwright.outcome", _outcome_name(outcome))
            if outcome is not None:
                ok, error, retryable = outcome
                if not ok:
                    span.set_attribute("meshwright.retryable", retryable)
                    span.set_status(telemetry.Status(telemetry.StatusCode.ERROR, error))
            return outcome

    async def _attempt_on(
        self,
        run: Run,
        task_id: str,
        slot: Slot,
        request: agent_pb2.ExecuteTaskRequest,
        attempt: int,
        rules: TaskRetry,
    ) -> tuple[bool, str, bool] | None:
        tr = run.records[task_id]
        wf_id = run.workflow_id
        run.reserved += slot.price
        tr.state = W.TASK_RUN_STATE_RUNNING
        tr.agent_id = slot.agent_id
        tr.attempts = attempt
        if not tr.HasField("start_time"):
            tr.start_time.CopyFrom(timestamp())
        request.task_id = f"{wf_id}.{task_id}.{attempt}"
        self._record(
            run,
            task_id,
            W.WORKFLOW_EVENT_TYPE_TASK_STARTED,
            agent_id=slot.agent_id,
            attempt=attempt,
        )
        started = time.monotonic()
        failure: MeshError | None = None
        cancelled = False
        ok = False
        answered_failed = False
        error = ""
        retryable = True
        output: struct_pb2.Struct | None = None
        run.in_flight[task_id] = (slot, request.task_id)
        try:
            if run.specs[task_id].stream_progress:
                task = await self._stream(run, task_id, slot, request, attempt, rules.timeout_s)
            else:
                task = await self._dispatcher.execute(slot, request, timeout_s=rules.timeout_s)
            status = task.status
            ok = status.state == agent_pb2.TASK_STATE_COMPLETED
            output = task.output
            if not ok:
                error = clip(status.message or agent_pb2.TaskState.Name(status.state))
                retryable = rules.retryable_task(status)
                answered_failed = status.state != agent_pb2.TASK_STATE_CANCELED
            else:
                refusal = self._refuse_output(run, output)
                if refusal:
                    ok, error, retryable = False, refusal, False
        except MeshError as err:
            failure = err
            error = clip(f"{err.reason}: {err.message}")
            retryable = rules.retryable_reason(err.reason)
        except asyncio.CancelledError:
            cancelled = True
            raise
        finally:
            run.in_flight.pop(task_id, None)
            if not ok:
                run.reserved -= slot.price
            self._dispatcher.release(
                slot,
                ok=ok,
                failure=failure,
                latency_s=time.monotonic() - started,
                counted=not cancelled,  # the workflow ended; the agent did no wrong
            )
        if failure is not None and is_at_capacity(failure):
            return None
        if answered_failed or isinstance(failure, DeadlineExceeded):
            self._report_failure(run, task_id, slot)
        if not ok or output is None:
            return False, error, retryable
        # The reservation holds until the payment is recorded, so no other task
        # can plan on money this one is about to spend.
        paid = 0
        try:
            if slot.price > 0:
                paid = (await self._pay(run, task_id, slot)).amount
        except MeshError as err:
            run.output_room += output.ByteSize()  # not stored after all
            return False, clip(f"payment failed: {err.reason}: {err.message}"), False
        finally:
            run.reserved -= slot.price
        # What the escrow really paid: a task paid before (by a replica that ran it on
        # another agent) counts the earlier price, so spent matches the escrow.
        run.wf.spent += paid
        tr.state = W.TASK_RUN_STATE_SUCCEEDED
        tr.output.CopyFrom(output)
        tr.cost = paid
        tr.error = ""
        tr.end_time.CopyFrom(timestamp())
        # Not awaited: what follows (dependants, the ending) is queued behind it in the
        # same group commit. Lost in a crash, the attempt is replayed by its agent.
        self._record(
            run,
            task_id,
            W.WORKFLOW_EVENT_TYPE_TASK_SUCCEEDED,
            spent_delta=paid,
            agent_id=slot.agent_id,
            attempt=attempt,
            output=output,
            amount=paid,
        )
        return True, "", True

    def _report_failure(self, run: Run, task_id: str, slot: Slot) -> None:
        """The agent failed the attempt itself (answered failed, or ran out of time): its
        streak of paid tasks restarts. Only for a task it would have been paid for (a
        streak counts paid tasks); at capacity, a cancel, an unreachable agent or a
        refused output are not reported. In the background, best effort."""
        if slot.price > 0 and run.wf.escrow_id and not run.closing:
            self.spawn(
                self._payments.report_failure(
                    escrow_id=run.wf.escrow_id, task_id=task_id, slot=slot
                )
            )

    async def _pay(self, run: Run, task_id: str, slot: Slot) -> Payment:
        """Capture the task's price; a transport failure is tried again (the capture names
        the task, which makes that safe), a refusal is final."""
        wait = 0.2
        for tries in range(1, 6):
            try:
                return await self._payments.pay(
                    escrow_id=run.wf.escrow_id,
                    workflow_id=run.workflow_id,
                    task_id=task_id,
                    slot=slot,
                )
            except MeshError as err:
                if not is_transport_failure(err) or tries == 5:
                    raise
                log.warning(
                    "paying task %s/%s failed (%s); retrying", run.workflow_id, task_id, err
                )
                await asyncio.sleep(wait)
                wait = min(wait * 2, 2.0)
        raise AssertionError("unreachable: the last try returns or raises")

    @staticmethod
    def _refuse_output(run: Run, output: struct_pb2.Struct) -> str:
        """Why an agent's output cannot be stored ("" when it can; its room is then taken).

        An output that could not be read back (NaN, too deep) or would make the
        workflow too large to send fails its task: storing it would break
        GetWorkflow and ListWorkflows for everyone.
        """
        size = output.ByteSize()
        if size > MAX_OUTPUT_BYTES:
            return (
                f"output refused: {size} bytes, more than the {MAX_OUTPUT_BYTES} a task "
                "output may take"
            )
        if size > run.output_room:
            return (
                f"output refused: {size} bytes, more than the {run.output_room} the "
                f"workflow may still store (a workflow stays under {MAX_WORKFLOW_BYTES} bytes)"
            )
        try:
            check_request(output)
        except InvalidArgument as err:
            return clip(f"output refused: {err.message}")
        run.output_room -= size
        return ""

    async def _stream(
        self,
        run: Run,
        task_id: str,
        slot: Slot,
        request: agent_pb2.ExecuteTaskRequest,
        attempt: int,
        timeout: float,
    ) -> agent_pb2.Task:
        """Run one attempt with StreamTask, recording progress reports as events."""
        stream_request = agent_pb2.StreamTaskRequest(
            task_id=request.task_id,
            skill=request.skill,
            input=request.input,
            upstream_outputs=request.upstream_outputs,
            context_id=request.context_id,
            metadata=request.metadata,
        )
        last_emit = 0.0
        async for update in self._dispatcher.stream(slot, stream_request, timeout_s=timeout):
            if update.final:
                final: agent_pb2.Task = update.task
                return final
            if update.WhichOneof("update") != "status_update":
                continue
            status = update.status_update
            now = time.monotonic()
            # Ten a second at most: a chatty skill must not flood the log.
            if status.message and (now - last_emit >= 0.1 or status.progress >= 1.0):
                last_emit = now
                self._record(
                    run,
                    task_id,
                    W.WORKFLOW_EVENT_TYPE_TASK_PROGRESS,
                    with_record=False,
                    agent_id=slot.agent_id,
                    attempt=attempt,
                    message=clip(status.message),
                    progress=status.progress,
                )
        raise Unavailable(f"agent {slot.agent_id} ended the stream without a final task")

    async def _retrying(
        self, run: Run, task_id: str, attempt: int, agent_id: str, error: str, wait_s: float
    ) -> None:
        tr = run.records[task_id]
        tr.state = W.TASK_RUN_STATE_READY
        tr.error = clip(error)
        if self._metrics is not None:
            self._metrics.task_retried(run.specs[task_id].skill)
        self._record(
            run,
            task_id,
            W.WORKFLOW_EVENT_TYPE_TASK_RETRYING,
            agent_id=agent_id,
            attempt=attempt,
            message=f"{clip(error)}; retrying in {wait_s:.2f}s",
        )
        await asyncio.sleep(wait_s)

    # -- ending -----------------------------------------------------------------

    def _spawn_finish(self, run: Run, state: int, error: str) -> None:
        self.spawn(self.finish(run, state, error))

    async def finish(self, run: Run, state: int, error: str) -> None:
        """End the workflow exactly once; every caller waits for the same ending.

        The ending runs as its own task: a caller whose RPC is cancelled midway
        (a deadline, a client gone) must not leave the workflow half-ended with
        its escrow held. The first caller's state wins.
        """
        if run.committer.lost:
            return
        if run.finishing is None:
            run.finishing = asyncio.create_task(
                self._end(run, state, error), name=f"end {run.workflow_id}", context=detached()
            )
        await asyncio.shield(run.finishing)

    async def _end(self, run: Run, state: int, error: str) -> None:
        if not telemetry.enabled():
            return await self._end_run(run, state, error)
        parent = self._trace_parent(run)
        attributes = {
            "meshwright.workflow_id": run.workflow_id,
            "meshwright.state": W.WorkflowState.Name(state),
        }
        with telemetry.span("workflow end", parent=parent, attributes=attributes) as span:
            if error and span is not None:
                span.set_attribute("meshwright.error", error)
            await self._end_run(run, state, error)

    async def _end_run(self, run: Run, state: int, error: str) -> None:
        if run.opening is not None and not await asyncio.shield(run.opening):
            self._on_done(run)  # its escrow was refused: the workflow was discarded
            return
        if run.deadline is not None:
            run.deadline.cancel()
        await self._stop_attempts(run, cancel_on_agents=True)
        # What is queued (the outcome that triggered this ending) must be accepted before
        # the refund: a replica fenced off meanwhile would otherwise release the escrow
        # of a run its new owner is still paying tasks from.
        await run.committer.drain()
        if run.committer.lost:
            self._on_done(run)
            return
        changed: list[str] = []
        for task_id, tr in run.records.items():
            if tr.state == W.TASK_RUN_STATE_RUNNING:
                tr.state = W.TASK_RUN_STATE_CANCELLED
                changed.append(task_id)
            elif tr.state in (W.TASK_RUN_STATE_PENDING, W.TASK_RUN_STATE_READY):
                tr.state = W.TASK_RUN_STATE_SKIPPED
                changed.append(task_id)
        refund = await self._release_escrow(run)
        if refund is None:  # handing off or lost: the next owner ends it
            self._on_done(run)
            return
        wf = run.wf
        wf.state = state  # type: ignore[assignment]
        wf.error = error
        wf.end_time.CopyFrom(timestamp())
        change = Change(
            tasks=[run.snapshot(t) for t in changed],
            events=[
                event(
                    wf.workflow_id,
                    TERMINAL_EVENT_OF[state],
                    state,
                    amount=refund,
                    message=error or f"spent {wf.spent}, refunded {refund}",
                )
            ],
            state=state,
            error=error,
            end_time=wf.end_time,
        )
        try:
            await run.commit(change)
        except LeaseLost:
            pass  # another replica owns it now; it ends it
        self._on_done(run)

    async def _release_escrow(self, run: Run) -> int | None:
        """Refund what is left of the escrow; None if this replica stopped owning the run
        before the economy could be reached (the escrow is never given up on)."""
        wf = run.wf
        if not wf.escrow_id:
            return 0
        wait = 0.2
        while True:
            try:
                return await self._payments.release(
                    escrow_id=wf.escrow_id, workflow_id=wf.workflow_id
                )
            except NotFound:
                return 0  # never opened (its creator died before the economy answered)
            except MeshError as err:
                if not is_transport_failure(err):
                    log.error("could not release escrow %s: %s", wf.escrow_id, err)
                    return 0
                log.warning("releasing escrow %s failed (%s); retrying", wf.escrow_id, err)
            if self.draining or run.committer.lost:
                return None
            await asyncio.sleep(wait)
            wait = min(wait * 2, 5.0)

    async def _stop_attempts(self, run: Run, *, cancel_on_agents: bool) -> None:
        if cancel_on_agents:
            for slot, agent_task_id in list(run.in_flight.values()):
                self.spawn(self._dispatcher.cancel_on_agent(slot, agent_task_id))
        current = asyncio.current_task()
        attempts = [t for t in run.attempts.values() if t is not current]
        for t in attempts:
            t.cancel()
        if attempts:
            await asyncio.gather(*attempts, return_exceptions=True)

    async def abandon(self, run: Run) -> None:
        """Stop running ``run`` here without ending it (its lease was lost or released)."""
        if run.deadline is not None:
            run.deadline.cancel()
        await self._stop_attempts(run, cancel_on_agents=False)
        self._on_done(run)

    async def hand_off(self, run: Run, grace_s: float) -> None:
        """Let attempts under way finish (bounded), record them, stop the rest here."""
        if run.attempts:
            await asyncio.wait(list(run.attempts.values()), timeout=grace_s)
        if run.finishing is not None:
            await asyncio.wait({run.finishing}, timeout=grace_s)
        await self.abandon(run)
        await run.committer.drain()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` in the background, detached from the current call."""
        t = asyncio.create_task(coro, context=detached())
        self._background.add(t)
        t.add_done_callback(self._background.discard)

    async def stop(self, grace_s: float = 2.0) -> None:
        """Let background work (cancels on agents) finish, bounded."""
        if self._background:
            await asyncio.wait(list(self._background), timeout=grace_s)
        for t in list(self._background):
            t.cancel()


def _observed(fut: asyncio.Future[None]) -> None:
    # A commit nobody awaits: its failure (a lost lease) is handled by the run's
    # on_lost; here it is only marked retrieved.
    if not fut.cancelled():
        fut.exception()


__all__ = ["MAX_ERROR_CHARS", "MAX_OUTPUT_BYTES", "Scheduler", "clip"]

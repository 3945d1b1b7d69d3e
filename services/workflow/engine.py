"""The workflow engine: validates DAGs, places tasks on agents, pays them.

One ``_Run`` per live workflow holds the scheduling state; every state change
is recorded twice — in the workflow snapshot and as an event appended to the
workflow's log — so watchers can follow (and resume) in order. Registry and
economy are reached through ``ServiceClient``s typed by their contracts: the
in-process service object under ``meshwright up``, a gRPC stub otherwise.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import struct_pb2

from meshwright.agent.v1 import agent_pb2
from meshwright.economy.v1 import economy_pb2
from meshwright.mesh.auth import Principal
from meshwright.mesh.client import ChannelPool, RemoteServiceClient, ServiceClient
from meshwright.mesh.context import caller, detached
from meshwright.mesh.errors import (
    AlreadyExists,
    DeadlineExceeded,
    FieldViolation,
    InvalidArgument,
    MeshError,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from meshwright.mesh.limits import check_request
from meshwright.mesh.paging import (
    decode_page_token,
    decode_position_token,
    encode_page_token,
    page_size,
)
from meshwright.mesh.policy import NotOwner
from meshwright.mesh.timeutil import timestamp
from meshwright.mesh.validation import check_id, duration_s
from meshwright.workflow._dag import check_definition, quote
from meshwright.workflow.directory import AgentDirectory, BudgetExhausted, Lease
from meshwright.workflow.errors import (
    TemplateExists,
    TemplateNotFound,
    WorkflowExists,
    WorkflowNotFound,
)
from meshwright.workflow.store import TERMINAL_STATES, MemoryWorkflowStore, WorkflowStore
from meshwright.workflow.templates import check_template, expand
from meshwright.workflow.v1 import workflow_pb2

log = logging.getLogger(__name__)

AGENT_SERVICE = agent_pb2.DESCRIPTOR.services_by_name["AgentService"]
W = workflow_pb2
TERMINAL_EVENTS = frozenset(
    {
        W.WORKFLOW_EVENT_TYPE_WORKFLOW_SUCCEEDED,
        W.WORKFLOW_EVENT_TYPE_WORKFLOW_FAILED,
        W.WORKFLOW_EVENT_TYPE_WORKFLOW_CANCELLED,
    }
)
_TERMINAL_EVENT_OF: dict[int, int] = {
    W.WORKFLOW_STATE_SUCCEEDED: W.WORKFLOW_EVENT_TYPE_WORKFLOW_SUCCEEDED,
    W.WORKFLOW_STATE_FAILED: W.WORKFLOW_EVENT_TYPE_WORKFLOW_FAILED,
    W.WORKFLOW_STATE_CANCELLED: W.WORKFLOW_EVENT_TYPE_WORKFLOW_CANCELLED,
}
# Errors after which the same agent is not trusted with the retry, and that
# count toward its circuit breaker.
_TRANSPORT_ERRORS = (Unavailable, DeadlineExceeded, ResourceExhausted)

# Size bounds: whatever is stored must always be readable back. A workflow (its
# definition, task runs and outputs) stays below MAX_WORKFLOW_BYTES, so one
# GetWorkflow or a one-item ListWorkflows page always fits the 8 MiB message bound.
MAX_OUTPUT_BYTES = 1024 * 1024
"""An agent's output for one task; a larger one fails the task (and is not paid)."""
MAX_WORKFLOW_BYTES = 7 * 1024 * 1024
"""A stored workflow; outputs that would take it past this fail their task."""
MAX_PAGE_BYTES = 2 * 1024 * 1024
"""A page of ListWorkflows/ListTemplates (at least one item whatever its size)."""
MAX_ERROR_CHARS = 200
"""A task's stored error text (agents' messages are clipped to it)."""
_TASK_RUN_RESERVE = 512
"""Bytes set aside per task for what its run records besides the output (agent id,
error, attempts, times), so the outputs' share is known when the workflow starts."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    """Defaults the engine applies where a definition leaves a knob unset."""

    max_attempts: int = 3
    """Attempts per task, first included."""
    initial_backoff_s: float = 0.2
    """Wait before the first retry."""
    backoff_multiplier: float = 2.0
    """Growth of the wait per retry."""
    max_backoff_s: float = 10.0
    """Longest wait between attempts."""
    task_timeout_s: float = 60.0
    """Deadline of one attempt."""
    agent_wait_s: float = 30.0
    """How long a ready task waits for an agent offering its skill to be free."""
    watch_heartbeat_s: float = 15.0
    """How often an idle watch re-checks the workflow's state."""


@dataclass
class _Run:
    """Scheduling state of one live workflow."""

    wf: workflow_pb2.Workflow
    specs: dict[str, workflow_pb2.TaskSpec]
    runs: dict[str, workflow_pb2.TaskRun]
    waiting_on: dict[str, int]
    dependants: dict[str, list[str]]
    reserved: int = 0
    finished_tasks: int = 0
    attempts: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    agent_tasks: dict[str, tuple[Lease, str]] = field(default_factory=dict)
    done: asyncio.Event = field(default_factory=asyncio.Event)
    finishing: asyncio.Task[None] | None = None
    """The ending under way (or done); set once, by the first caller of _finish."""

    @property
    def closing(self) -> bool:
        return self.finishing is not None

    output_room: int = 0
    """Bytes the outputs still to be stored may take (of MAX_WORKFLOW_BYTES)."""

    def available(self) -> int:
        return self.wf.definition.budget - self.wf.spent - self.reserved


def _retrieve(task: asyncio.Task[object]) -> None:
    # The caller may have gone (cancelled); the error was its to see, not the loop's.
    if not task.cancelled():
        task.exception()


def _owner_name() -> str:
    who = caller()
    return "" if who is None else who.name


def _sees_all(who: Principal | None) -> bool:
    """Admins, mesh services and internal work (no caller) see every workflow."""
    return who is None or who.is_trusted


def _fingerprint(request: workflow_pb2.CreateWorkflowRequest) -> str:
    """Digest of everything a CreateWorkflow asks for except its request_id."""
    body = workflow_pb2.CreateWorkflowRequest()
    body.CopyFrom(request)
    body.request_id = ""
    return hashlib.sha256(body.SerializeToString(deterministic=True)).hexdigest()


def _clip(text: str, limit: int = MAX_ERROR_CHARS) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _new_id(prefix: str) -> str:
    # Time-ordered so ids sort roughly by creation, random tail for uniqueness.
    return f"{prefix}-{int(time.time() * 1000):x}{os.urandom(3).hex()}"


class Engine:
    """Runs workflows; the domain object behind WorkflowService."""

    def __init__(
        self,
        *,
        registry: ServiceClient,
        economy: ServiceClient,
        store: WorkflowStore | None = None,
        channels: ChannelPool | None = None,
        config: EngineConfig | None = None,
    ) -> None:
        self.config = config or EngineConfig()
        self.store: WorkflowStore = store or MemoryWorkflowStore()
        self.directory = AgentDirectory(registry, on_endpoint_gone=self._endpoint_gone)
        self._economy = economy
        self._own_channels = channels is None
        self._channels = channels or ChannelPool()
        self._agent_clients: dict[str, RemoteServiceClient] = {}
        self._runs: dict[str, _Run] = {}
        # (owner, request_id) -> (fingerprint, the creation under way)
        self._creating: dict[
            tuple[str, str], tuple[str, asyncio.Future[workflow_pb2.Workflow]]
        ] = {}
        self._claimed: set[str] = set()
        self._stopping = False
        self._creations: set[asyncio.Task[workflow_pb2.Workflow]] = set()
        self._background: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Start mirroring the registry."""
        await self.directory.start()

    async def stop(self) -> None:
        """Cancel live workflows (refunding their escrow) and stop."""
        self._stopping = True
        if self._creations:  # creations under way end stored, then are cancelled below
            await asyncio.wait(list(self._creations))
        for run in list(self._runs.values()):
            await self._cancel(run, "engine shutting down")
        await self.directory.stop()
        if self._background:
            # Let the CancelTask calls just sent reach their agents (bounded).
            await asyncio.wait(list(self._background), timeout=2.0)
        for t in list(self._background):
            t.cancel()
        if self._own_channels:
            await self._channels.close()

    async def owner_of(self, workflow_id: str) -> str | None:
        """The principal that created a workflow, None if unknown (policy lookups)."""
        try:
            wf = await self.store.get(workflow_id)
        except WorkflowNotFound:
            return None
        return wf.owner

    # -- create ----------------------------------------------------------------

    async def create_workflow(
        self, request: workflow_pb2.CreateWorkflowRequest
    ) -> workflow_pb2.Workflow:
        """Validate, escrow the budget, store and start a workflow."""
        if self._stopping:
            raise Unavailable("the workflow service is shutting down")
        rid = request.request_id
        owner = _owner_name()
        fingerprint = _fingerprint(request) if rid else ""
        scoped = (owner, rid)
        if rid:
            existing = await self.store.find_request(rid, owner=owner)
            if existing is not None:
                self._same_request(existing.fingerprint, fingerprint)
                return await self.get_workflow(existing.workflow_id)
            pending = self._creating.get(scoped)
            if pending is not None:
                self._same_request(pending[0], fingerprint)
                return await asyncio.shield(pending[1])
        # Creation runs as its own task: once the escrow is opened it must end
        # stored and started (or released) even if this caller is cancelled.
        creating = asyncio.create_task(self._create(request, fingerprint))
        creating.add_done_callback(_retrieve)
        self._creations.add(creating)
        creating.add_done_callback(self._creations.discard)
        if rid:
            self._creating[scoped] = (fingerprint, creating)
            creating.add_done_callback(lambda _: self._creating.pop(scoped, None))
        return await asyncio.shield(creating)

    @staticmethod
    def _same_request(first: str, again: str) -> None:
        # A request_id names one request: replaying it with other content is a
        # client bug that must not silently answer with the first workflow.
        if first != again:
            raise InvalidArgument.field(
                "request_id",
                "was used before with a different request (definition, template or "
                "workflow_id); use a new request_id for a new workflow",
            )

    async def _create(
        self, request: workflow_pb2.CreateWorkflowRequest, fingerprint: str
    ) -> workflow_pb2.Workflow:
        source = request.WhichOneof("source")
        template_name = ""
        if source is None:
            raise InvalidArgument.field("definition", "one of definition or template is required")
        if source == "template":
            template_name = request.template.template_name
            if not template_name:
                raise InvalidArgument.field("template.template_name", "is required")
            template = await self.store.get_template(template_name)
            if template is None:
                raise TemplateNotFound(f"template {quote(template_name)} not found")
            definition = expand(template, request.template)
        else:
            definition = request.definition
        violations = check_id(request.workflow_id, "workflow_id", required=False)
        violations += check_definition(definition)
        if not violations:
            violations += await self._unknown_skills(definition)
        if violations:
            raise InvalidArgument(
                f"invalid workflow: {violations[0].field}: {violations[0].description}"
                + (f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""),
                violations=violations,
            )
        await self._check_payer(definition)
        workflow_id = request.workflow_id or _new_id("wf")
        # Claimed before the first await, so two concurrent creates of one id
        # cannot both escrow; the store check covers ids created earlier.
        if workflow_id in self._claimed:
            raise WorkflowExists(f"workflow {workflow_id!r} exists already")
        self._claimed.add(workflow_id)
        try:
            return await self._create_claimed(
                workflow_id, definition, template_name, request, fingerprint
            )
        finally:
            self._claimed.discard(workflow_id)

    async def _create_claimed(
        self,
        workflow_id: str,
        definition: workflow_pb2.WorkflowDefinition,
        template_name: str,
        request: workflow_pb2.CreateWorkflowRequest,
        fingerprint: str,
    ) -> workflow_pb2.Workflow:
        try:
            await self.store.get(workflow_id)
            raise WorkflowExists(f"workflow {workflow_id!r} exists already")
        except WorkflowNotFound:
            pass

        wf = workflow_pb2.Workflow(
            workflow_id=workflow_id,
            name=definition.name,
            state=W.WORKFLOW_STATE_RUNNING,
            definition=definition,
            template_name=template_name,
            create_time=timestamp(),
            owner=_owner_name(),
        )
        for spec in definition.tasks:
            wf.tasks.add(task_id=spec.id, skill=spec.skill, state=W.TASK_RUN_STATE_PENDING)
        if definition.budget > 0:
            # A fresh escrow id per creation: a workflow id reused after the old
            # workflow was evicted must not replay the old (closed) escrow.
            escrow_id = f"{workflow_id}-{os.urandom(4).hex()}"
            reply = await self._economy.call(
                "OpenEscrow",
                economy_pb2.OpenEscrowRequest(
                    escrow_id=escrow_id,
                    payer_account_id=definition.payer_account_id,
                    amount=definition.budget,
                    reference=f"workflow/{workflow_id}",
                    request_id=f"escrow/{escrow_id}/open",
                ),
            )
            wf.escrow_id = reply.escrow.escrow_id
        try:
            await self.store.create(wf, request.request_id, fingerprint)
        except MeshError:
            await self._release_escrow(wf)
            raise
        run = self._make_run(wf)
        self._runs[workflow_id] = run
        await self._emit(
            run,
            W.WORKFLOW_EVENT_TYPE_WORKFLOW_CREATED,
            amount=definition.budget,
            message=f"{len(definition.tasks)} tasks, budget {definition.budget}",
        )
        for task_id, count in run.waiting_on.items():
            if count == 0:
                self._start_task(run, task_id)
        snapshot = workflow_pb2.Workflow()
        snapshot.CopyFrom(wf)
        return snapshot

    async def _unknown_skills(
        self, definition: workflow_pb2.WorkflowDefinition
    ) -> list[FieldViolation]:
        out: list[FieldViolation] = []
        checked: dict[str, bool] = {}
        for i, spec in enumerate(definition.tasks):
            if spec.skill not in checked:
                checked[spec.skill] = await self.directory.skill_known(spec.skill)
            if not checked[spec.skill]:
                out.append(
                    FieldViolation(
                        f"definition.tasks[{i}].skill",
                        f"no registered agent offers skill {quote(spec.skill)}",
                    )
                )
        return out

    async def _check_payer(self, definition: workflow_pb2.WorkflowDefinition) -> None:
        """The payer must belong to the caller, wherever the definition named it.

        The policy checks the payer fields a request names itself; a payer that
        comes from a stored template (its definition, or a ``${parameter}``) is
        known only here, after expansion. So the engine checks the final payer
        with the same rule (agents and clients pay only from accounts they own),
        asking the economy it already talks to for the account's owner.
        """
        who = caller()
        if definition.budget <= 0 or who is None or _sees_all(who):
            return
        payer = definition.payer_account_id
        owner: str | None
        try:
            reply = await self._economy.call(
                "GetAccount", economy_pb2.GetAccountRequest(account_id=payer)
            )
            owner = str(reply.account.owner)
        except (NotFound, InvalidArgument):
            owner = None
        if owner != who.name:
            # An unknown account is refused like a foreign one, as the policy does.
            raise NotOwner(
                f"definition.payer_account_id: {quote(payer)} does not exist or does not "
                "belong to the caller",
                metadata={"field": "definition.payer_account_id"},
            )

    @staticmethod
    def _make_run(wf: workflow_pb2.Workflow) -> _Run:
        specs = {s.id: s for s in wf.definition.tasks}
        runs = {tr.task_id: tr for tr in wf.tasks}
        dependants: dict[str, list[str]] = {s.id: [] for s in wf.definition.tasks}
        for s in wf.definition.tasks:
            for dep in s.depends_on:
                dependants[dep].append(s.id)
        waiting = {s.id: len(s.depends_on) for s in wf.definition.tasks}
        room = MAX_WORKFLOW_BYTES - wf.ByteSize() - _TASK_RUN_RESERVE * len(specs)
        return _Run(
            wf=wf,
            specs=specs,
            runs=runs,
            waiting_on=waiting,
            dependants=dependants,
            output_room=max(0, room),
        )

    # -- scheduling ------------------------------------------------------------

    def _start_task(self, run: _Run, task_id: str) -> None:
        run.runs[task_id].state = W.TASK_RUN_STATE_READY
        # Detached: the run outlives the call that started it (and its deadline).
        t = asyncio.create_task(
            self._execute(run, task_id), name=f"{run.wf.workflow_id}/{task_id}", context=detached()
        )
        run.attempts[task_id] = t

    async def _execute(self, run: _Run, task_id: str) -> None:
        try:
            ok = await self._attempts(run, task_id)
        except asyncio.CancelledError:
            return
        except Exception as err:  # a bug must fail the workflow, not hang it
            log.exception("task %s/%s crashed", run.wf.workflow_id, task_id)
            tr = run.runs[task_id]
            tr.state = W.TASK_RUN_STATE_FAILED
            tr.error = _clip(f"internal error: {err}")
            ok = False
        run.attempts.pop(task_id, None)
        if run.closing:
            return
        run.finished_tasks += 1
        if not ok:
            await self._finish(run, W.WORKFLOW_STATE_FAILED, f"task {task_id!r} failed")
            return
        for child in run.dependants[task_id]:
            run.waiting_on[child] -= 1
            if run.waiting_on[child] == 0:
                self._start_task(run, child)
        if run.finished_tasks == len(run.specs):
            await self._finish(run, W.WORKFLOW_STATE_SUCCEEDED, "")

    async def _attempts(self, run: _Run, task_id: str) -> bool:
        cfg = self.config
        spec = run.specs[task_id]
        tr = run.runs[task_id]
        wf_id = run.wf.workflow_id
        max_attempts = spec.retry.max_attempts or cfg.max_attempts
        backoff = (
            duration_s(spec.retry.initial_backoff)
            if spec.retry.HasField("initial_backoff")
            else cfg.initial_backoff_s
        )
        multiplier = spec.retry.backoff_multiplier or cfg.backoff_multiplier
        max_backoff = (
            duration_s(spec.retry.max_backoff)
            if spec.retry.HasField("max_backoff")
            else cfg.max_backoff_s
        )
        timeout = duration_s(spec.timeout) if spec.HasField("timeout") else cfg.task_timeout_s
        request = agent_pb2.ExecuteTaskRequest(skill=spec.skill, input=spec.input, context_id=wf_id)
        for dep in spec.depends_on:
            request.upstream_outputs[dep].CopyFrom(run.runs[dep].output)
        exclude: set[str] = set()
        error = ""
        for attempt in range(1, max_attempts + 1):
            try:
                lease = await self.directory.acquire(
                    spec.skill,
                    max_price=run.available,
                    exclude=exclude,
                    timeout_s=cfg.agent_wait_s,
                    on_unaffordable=lambda: run.reserved > 0,
                )
            except BudgetExhausted as err:
                error = _clip(f"{err.reason}: {err.message}")
                break  # no retry can make the budget larger
            except MeshError as err:
                error = _clip(f"{err.reason}: {err.message}")
                if attempt < max_attempts:
                    await self._retrying(run, task_id, attempt, "", error, backoff)
                    backoff = min(backoff * multiplier, max_backoff)
                continue
            run.reserved += lease.price
            tr.state = W.TASK_RUN_STATE_RUNNING
            tr.agent_id = lease.agent_id
            tr.attempts = attempt
            if not tr.HasField("start_time"):
                tr.start_time.CopyFrom(timestamp())
            request.task_id = f"{wf_id}.{task_id}.{attempt}"
            await self._emit(
                run,
                W.WORKFLOW_EVENT_TYPE_TASK_STARTED,
                task_id=task_id,
                agent_id=lease.agent_id,
                attempt=attempt,
            )
            started = time.monotonic()
            transport_failure = False
            cancelled = False
            ok = False
            refused = False
            output = None
            run.agent_tasks[task_id] = (lease, request.task_id)
            try:
                if spec.stream_progress:
                    task = await self._stream(run, task_id, lease, request, attempt, timeout)
                else:
                    reply = await self.agent_client(lease.endpoint).call(
                        "ExecuteTask", request, timeout=timeout
                    )
                    task = reply.task
                status = task.status
                ok = status.state == agent_pb2.TASK_STATE_COMPLETED
                output = task.output
                if not ok:
                    error = _clip(status.message or agent_pb2.TaskState.Name(status.state))
                else:
                    refusal = self._refuse_output(run, output)
                    if refusal:
                        ok, refused, error = False, True, refusal
            except MeshError as err:
                transport_failure = isinstance(err, _TRANSPORT_ERRORS)
                error = _clip(f"{err.reason}: {err.message}")
            except asyncio.CancelledError:
                cancelled = True
                raise
            finally:
                run.agent_tasks.pop(task_id, None)
                if not ok:
                    run.reserved -= lease.price
                self.directory.release(
                    lease,
                    ok=ok,
                    transport_failure=transport_failure,
                    latency_s=time.monotonic() - started,
                    counted=not cancelled,  # the workflow ended; the agent did no wrong
                )
            if ok and output is not None:
                # The reservation holds until the payment is recorded, so no other
                # task can plan on money this one is about to spend.
                try:
                    if lease.price > 0:
                        await self._pay(run, task_id, lease)
                except MeshError as err:
                    error = _clip(f"payment failed: {err.reason}: {err.message}")
                    run.output_room += output.ByteSize()  # not stored after all
                    break
                finally:
                    run.reserved -= lease.price
                tr.state = W.TASK_RUN_STATE_SUCCEEDED
                tr.output.CopyFrom(output)
                tr.cost = lease.price
                tr.error = ""
                tr.end_time.CopyFrom(timestamp())
                await self._emit(
                    run,
                    W.WORKFLOW_EVENT_TYPE_TASK_SUCCEEDED,
                    task_id=task_id,
                    agent_id=lease.agent_id,
                    attempt=attempt,
                    output=output,
                    amount=lease.price,
                )
                return True
            if lease.price > 0:
                # The reservation is back; tasks waiting on budget may fit now.
                for skill in lease.skills:
                    self.directory.wake_all(skill)
            if refused:
                break  # another attempt would produce output that cannot be kept either
            exclude.add(lease.agent_id)
            if attempt < max_attempts:
                await self._retrying(run, task_id, attempt, lease.agent_id, error, backoff)
                backoff = min(backoff * multiplier, max_backoff)
        error = _clip(error)
        tr.state = W.TASK_RUN_STATE_FAILED
        tr.error = error
        tr.end_time.CopyFrom(timestamp())
        await self._emit(
            run,
            W.WORKFLOW_EVENT_TYPE_TASK_FAILED,
            task_id=task_id,
            agent_id=tr.agent_id,
            attempt=tr.attempts,
            message=error,
        )
        return False

    @staticmethod
    def _refuse_output(run: _Run, output: struct_pb2.Struct) -> str:
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
            return _clip(f"output refused: {err.message}")
        run.output_room -= size
        return ""

    async def _stream(
        self,
        run: _Run,
        task_id: str,
        lease: Lease,
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
        async for update in self.agent_client(lease.endpoint).stream(
            "StreamTask", stream_request, timeout=timeout
        ):
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
                await self._emit(
                    run,
                    W.WORKFLOW_EVENT_TYPE_TASK_PROGRESS,
                    task_id=task_id,
                    agent_id=lease.agent_id,
                    attempt=attempt,
                    message=_clip(status.message),
                    progress=status.progress,
                )
        raise Unavailable(f"agent {lease.agent_id} ended the stream without a final task")

    async def _retrying(
        self, run: _Run, task_id: str, attempt: int, agent_id: str, error: str, wait_s: float
    ) -> None:
        tr = run.runs[task_id]
        tr.state = W.TASK_RUN_STATE_READY
        tr.error = _clip(error)
        await self._emit(
            run,
            W.WORKFLOW_EVENT_TYPE_TASK_RETRYING,
            task_id=task_id,
            agent_id=agent_id,
            attempt=attempt,
            message=f"{_clip(error)}; retrying in {wait_s:.2f}s",
        )
        await asyncio.sleep(wait_s)

    async def _pay(self, run: _Run, task_id: str, lease: Lease) -> None:
        wf = run.wf
        capture = economy_pb2.CaptureEscrowRequest(
            escrow_id=wf.escrow_id,
            payee_account_id=lease.payout_account_id,
            amount=lease.price,
            memo=f"workflow/{wf.workflow_id}/task/{task_id}",
            request_id=f"escrow/{wf.escrow_id}/task/{task_id}/pay",
        )
        try:
            await self._economy.call("CaptureEscrow", capture)
        except NotFound as err:
            if err.metadata.get("account_id") != lease.payout_account_id:
                raise
            # The agent could not open its payout account (the economy was down
            # when it started): open it now rather than fail work already done.
            try:
                await self._economy.call(
                    "CreateAccount",
                    economy_pb2.CreateAccountRequest(
                        account_id=lease.payout_account_id,
                        display_name=f"payout of agent {lease.agent_id}",
                        # The agent's, not the mesh's: it must be able to spend its pay.
                        owner=f"agent:{lease.agent_id}",
                    ),
                )
            except AlreadyExists:
                pass
            await self._economy.call("CaptureEscrow", capture)
        wf.spent += lease.price

    def _endpoint_gone(self, endpoint: str) -> None:
        if self._agent_clients.pop(endpoint, None) is not None:
            self._spawn(self._channels.discard(endpoint))

    def agent_client(self, endpoint: str) -> RemoteServiceClient:
        """The (cached) AgentService client of an agent endpoint."""
        client = self._agent_clients.get(endpoint)
        if client is None:
            client = self._channels.client(endpoint, AGENT_SERVICE)
            self._agent_clients[endpoint] = client
        return client

    # -- ending ----------------------------------------------------------------

    async def _finish(self, run: _Run, state: int, error: str) -> None:
        """End the workflow exactly once; every caller waits for the same ending.

        The ending runs as its own task: a caller whose RPC is cancelled midway
        (a deadline, a client gone) must not leave the workflow half-ended with
        its escrow held. The first caller's state wins.
        """
        if run.finishing is None:
            run.finishing = asyncio.create_task(
                self._end(run, state, error), name=f"end {run.wf.workflow_id}", context=detached()
            )
        await asyncio.shield(run.finishing)

    async def _end(self, run: _Run, state: int, error: str) -> None:
        wf = run.wf
        for task_id, t in list(run.attempts.items()):
            t.cancel()
            tr = run.runs[task_id]
            if tr.state == W.TASK_RUN_STATE_RUNNING:
                tr.state = W.TASK_RUN_STATE_CANCELLED
        in_flight = list(run.agent_tasks.values())
        for lease, agent_task_id in in_flight:
            self._spawn(self._cancel_on_agent(lease.endpoint, agent_task_id))
        if run.attempts:
            await asyncio.gather(*run.attempts.values(), return_exceptions=True)
        for tr in wf.tasks:
            if tr.state in (W.TASK_RUN_STATE_PENDING, W.TASK_RUN_STATE_READY):
                tr.state = W.TASK_RUN_STATE_SKIPPED
        refund = await self._release_escrow(wf)
        wf.state = state  # type: ignore[assignment]
        wf.error = error
        wf.end_time.CopyFrom(timestamp())
        event_type = _TERMINAL_EVENT_OF[state]
        await self._emit(
            run,
            event_type,
            amount=refund,
            message=error or f"spent {wf.spent}, refunded {refund}",
        )
        await self.store.save(wf)
        self._runs.pop(wf.workflow_id, None)
        run.done.set()

    async def _release_escrow(self, wf: workflow_pb2.Workflow) -> int:
        if not wf.escrow_id:
            return 0
        try:
            reply = await self._economy.call(
                "ReleaseEscrow",
                economy_pb2.ReleaseEscrowRequest(
                    escrow_id=wf.escrow_id, request_id=f"workflow/{wf.workflow_id}/release"
                ),
            )
            return int(reply.escrow.released)
        except MeshError as err:
            log.error("could not release escrow %s: %s", wf.escrow_id, err)
            return 0

    async def _cancel_on_agent(self, endpoint: str, agent_task_id: str) -> None:
        try:
            await self.agent_client(endpoint).call(
                "CancelTask", agent_pb2.CancelTaskRequest(task_id=agent_task_id), timeout=2.0
            )
        except MeshError:
            pass  # it may have finished already; best effort

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        t = asyncio.create_task(coro, context=detached())
        self._background.add(t)
        t.add_done_callback(self._background.discard)

    async def _cancel(self, run: _Run, reason: str) -> None:
        await self._finish(run, W.WORKFLOW_STATE_CANCELLED, reason or "cancelled")

    # -- events ----------------------------------------------------------------

    async def _emit(self, run: _Run, event_type: int, **fields: object) -> None:
        event = workflow_pb2.WorkflowEvent(
            workflow_id=run.wf.workflow_id,
            type=event_type,  # type: ignore[arg-type]
            time=timestamp(),
            workflow_state=run.wf.state,
            **fields,  # type: ignore[arg-type]
        )
        await self.store.append_event(event)
        await self.store.save(run.wf)

    # -- reads and control -------------------------------------------------------

    async def get_workflow(self, workflow_id: str) -> workflow_pb2.Workflow:
        """A copy of the workflow's current state."""
        if not workflow_id:
            raise InvalidArgument.field("workflow_id", "is required")
        return self._copy(await self.store.get(workflow_id))

    @staticmethod
    def _copy(wf: workflow_pb2.Workflow) -> workflow_pb2.Workflow:
        # Stored workflows change in place while they run: callers get snapshots.
        out = workflow_pb2.Workflow()
        out.CopyFrom(wf)
        return out

    async def list_workflows(
        self, *, state: int, size: int, token: str
    ) -> tuple[list[workflow_pb2.Workflow], str]:
        """A page of workflows, newest first, and the next page token.

        Agents and clients see only the workflows they created (admins, mesh
        services and internal callers see all). A page holds at most ``size``
        workflows and ``MAX_PAGE_BYTES`` of them (at least one), so it always fits.
        """
        limit = page_size(size, default=50, maximum=1000)
        position = decode_position_token(token)
        after = None if position is None else str(position)
        who = caller()
        items, next_key = await self.store.list_workflows(
            state=state,
            after_key=after,
            limit=limit,
            owner=None if _sees_all(who) else _owner_name(),
            max_bytes=MAX_PAGE_BYTES,
        )
        return [self._copy(w) for w in items], (
            encode_page_token(next_key) if next_key is not None else ""
        )

    async def cancel_workflow(self, workflow_id: str, reason: str) -> workflow_pb2.Workflow:
        """Cancel a live workflow; a finished one is returned unchanged."""
        if not workflow_id:
            raise InvalidArgument.field("workflow_id", "is required")
        await self.store.get(workflow_id)
        run = self._runs.get(workflow_id)
        if run is not None:
            await self._cancel(run, reason)
        return await self.get_workflow(workflow_id)

    async def watch(
        self, workflow_id: str, after_sequence: int
    ) -> AsyncIterator[workflow_pb2.WorkflowEvent]:
        """Events after ``after_sequence`` in order; ends after the terminal event."""
        if not workflow_id:
            raise InvalidArgument.field("workflow_id", "is required")
        if after_sequence < 0:
            raise InvalidArgument.field("after_sequence", "must not be negative")
        last = after_sequence
        while True:
            events = await self.store.events_after(workflow_id, last)
            for event in events:
                yield event
                last = event.sequence
                if event.type in TERMINAL_EVENTS:
                    return
            if not events:
                wf = await self.store.get(workflow_id)
                if wf.state in TERMINAL_STATES and workflow_id not in self._runs:
                    return
                await self.store.wait_events(workflow_id, last, self.config.watch_heartbeat_s)

    async def create_template(self, template: workflow_pb2.Template) -> workflow_pb2.Template:
        """Validate and store a template."""
        violations = check_template(template)
        if violations:
            raise InvalidArgument(
                f"invalid template: {violations[0].field}: {violations[0].description}",
                violations=violations,
            )
        existing = await self.store.get_template(template.name)
        if existing is not None:
            same = workflow_pb2.Template()
            same.CopyFrom(template)
            same.create_time.CopyFrom(existing.create_time)
            if same == existing:
                return existing  # a retry of the call that stored it
            raise TemplateExists(f"template {template.name!r} exists with other content")
        stored = workflow_pb2.Template()
        stored.CopyFrom(template)
        stored.create_time.CopyFrom(timestamp())
        await self.store.put_template(stored)
        return stored

    async def list_templates(
        self, *, size: int, token: str
    ) -> tuple[list[workflow_pb2.Template], str]:
        """A page of templates by name, and the next page token."""
        limit = page_size(size, default=50, maximum=1000)
        after = decode_page_token(token)
        items = await self.store.list_templates(after_name=after, limit=limit + 1)
        page: list[workflow_pb2.Template] = []
        total = 0
        for item in items[:limit]:
            total += item.ByteSize() + 8
            if page and total > MAX_PAGE_BYTES:
                break  # the next page starts at this template
            page.append(item)
        more = len(page) < len(items)
        return page, encode_page_token(page[-1].name) if more else ""

    async def wait(self, workflow_id: str) -> workflow_pb2.Workflow:
        """Block until the workflow is finished; returns it."""
        run = self._runs.get(workflow_id)
        if run is not None:
            await run.done.wait()
        return await self.get_workflow(workflow_id)


__all__ = ["Engine", "EngineConfig"]

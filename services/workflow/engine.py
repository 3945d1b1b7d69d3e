"""The workflow engine: the domain object behind WorkflowService.

Its lifecycle side lives here (create, read, list, cancel, watch, templates,
start and stop); the rest has a module each:

- ``store`` / ``memory_store`` / ``redis_store``: the records, the source of truth;
- ``run``: one owned workflow rebuilt from its records, and its group commit;
- ``scheduler``: ready tasks, attempts, payment, the ending;
- ``retry``: the retry policy; ``dispatch``: agents (placement, slots, calls);
- ``payments``: escrow moves; ``events``: the event log and watching it;
- ``ownership``: leases with fencing tokens, orphan takeover, cancel signals.

Any number of replicas may share one store. Each live workflow is run by the
replica holding its lease; any replica answers reads, watches and cancels
for any workflow (a cancel is recorded in the store; the owner acts on it).
``stop`` hands this replica's runs off (attempts under way finish, within a
grace) instead of cancelling them.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from meshwright.mesh import telemetry
from meshwright.mesh.auth import Principal
from meshwright.mesh.client import ChannelPool, ServiceClient
from meshwright.mesh.context import caller, detached
from meshwright.mesh.errors import FieldViolation, InvalidArgument, MeshError, Unavailable
from meshwright.mesh.paging import (
    decode_page_token,
    decode_position_token,
    encode_page_token,
    page_size,
)
from meshwright.mesh.policy import NotOwner
from meshwright.mesh.timeutil import timestamp
from meshwright.mesh.validation import check_id
from meshwright.workflow._dag import check_definition, quote
from meshwright.workflow.dispatch import AgentDispatcher, BreakerPolicy, is_transport_failure
from meshwright.workflow.errors import TemplateExists, TemplateNotFound, WorkflowNotFound
from meshwright.workflow.events import event, follow
from meshwright.workflow.ownership import LeaseKeeper, new_replica_id
from meshwright.workflow.payments import EscrowKeeper, Payments
from meshwright.workflow.retry import RetryDefaults
from meshwright.workflow.run import Committer, Run
from meshwright.workflow.scheduler import Scheduler, clip
from meshwright.workflow.store import (
    TERMINAL_STATES,
    Change,
    LeaseLost,
    RequestExists,
    WorkflowStore,
)
from meshwright.workflow.templates import check_template, expand
from meshwright.workflow.v1 import workflow_pb2

if TYPE_CHECKING:
    from meshwright.mesh.metrics import MeshMetrics

log = logging.getLogger(__name__)

W = workflow_pb2

MAX_PAGE_BYTES = 2 * 1024 * 1024
"""A page of ListWorkflows/ListTemplates (at least one item whatever its size)."""
_OWNER_CACHE = 100_000
"""Workflow owners remembered for policy checks (an owner never changes)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class EngineConfig:
    """Defaults the engine applies where a definition leaves a knob unset, and how it
    shares workflows with other replicas."""

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
    lease_ttl_s: float = 10.0
    """Lease of a replica on each workflow it runs (renewed every third of it); another
    replica takes a workflow over once its lease lapsed."""
    orphan_scan_s: float = 1.0
    """How often a replica looks for workflows whose lease lapsed."""
    handoff_grace_s: float = 5.0
    """On stop: how long attempts under way may take to finish before the runs are handed
    off as they are."""
    commit_linger_s: float = 0.002
    """How long a busy run's next store write waits to gather more changes (a run whose
    writes queue up behind each other); an idle run's writes go at once."""
    economy_timeout_s: float = 10.0
    """Deadline of each call to the economy."""
    escrow_open_retry_s: float = 60.0
    """How long a workflow taken over in PENDING (its creator died before the economy
    answered) keeps trying to open its escrow while the economy is unreachable
    (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED) before it fails."""
    escrow_ttl_s: float = 600.0
    """Life of a workflow's escrow unless renewed: the replica running the workflow renews
    it every third of this, and the economy releases an escrow left unrenewed this long
    (its workflow vanished: the replica died and none took it over) back to the payer."""
    cancel_wait_s: float = 10.0
    """How long CancelWorkflow on a replica that does not own the workflow waits for the
    owner to end it."""
    replica_id: str = ""
    """This replica's name in leases; host-pid-random when empty."""
    breaker: BreakerPolicy | None = None
    """Circuit breaker of agents; the dispatcher's default when None."""

    @property
    def retry(self) -> RetryDefaults:
        return RetryDefaults(
            max_attempts=self.max_attempts,
            initial_backoff_s=self.initial_backoff_s,
            backoff_multiplier=self.backoff_multiplier,
            max_backoff_s=self.max_backoff_s,
            task_timeout_s=self.task_timeout_s,
        )


_ENDED = {
    W.WORKFLOW_STATE_SUCCEEDED: "succeeded",
    W.WORKFLOW_STATE_FAILED: "failed",
    W.WORKFLOW_STATE_CANCELLED: "cancelled",
}
"""Terminal states as the workflow metrics name them."""


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
        store: WorkflowStore,
        channels: ChannelPool,
        config: EngineConfig | None = None,
        metrics: MeshMetrics | None = None,
    ) -> None:
        """``metrics``: where workflows, tasks, retries, the queue and takeovers are counted."""
        self.config = cfg = config or EngineConfig()
        self.metrics = metrics
        self.store = store
        self.replica = cfg.replica_id or new_replica_id()
        self.dispatcher = AgentDispatcher(registry, channels, breaker=cfg.breaker)
        self.payments = Payments(economy, timeout_s=cfg.economy_timeout_s)
        self.scheduler = Scheduler(
            dispatcher=self.dispatcher,
            payments=self.payments,
            config=cfg,
            on_done=self._run_done,
            metrics=metrics,
        )
        self.scheduler.replica = self.replica
        self.escrows = EscrowKeeper(
            self.payments,
            ttl_s=cfg.escrow_ttl_s,
            escrows=self._live_escrows,
            on_gone=self._escrow_gone,
        )
        self.leases = LeaseKeeper(
            store,
            replica=self.replica,
            ttl_s=cfg.lease_ttl_s,
            scan_s=cfg.orphan_scan_s,
            on_orphan=self._adopt,
            on_lost=self._lost,
            on_cancel=self._cancel_requested,
        )
        self._runs: dict[str, Run] = {}
        self._owners: OrderedDict[str, str] = OrderedDict()
        # (owner, request_id) -> (fingerprint, the creation under way here): a retry
        # arriving at this replica while the first is still creating joins it.
        self._creating: dict[
            tuple[str, str], tuple[str, asyncio.Future[workflow_pb2.Workflow]]
        ] = {}
        self._stopping = False
        self._started = False
        self._creations: set[asyncio.Task[workflow_pb2.Workflow]] = set()

    async def start(self) -> None:
        """Mirror the registry, then keep leases and adopt orphaned workflows."""
        await self.dispatcher.start()
        await self.leases.start()
        self.escrows.start()
        self._started = True

    async def stop(self) -> None:
        """Hand this replica's workflows off and stop; none is cancelled or refunded.

        Attempts under way get ``handoff_grace_s`` to finish and be recorded;
        then each lease is released, so another replica (or this one, restarted)
        resumes the run at once from what is stored.
        """
        self._stopping = True
        if self._creations:  # creations under way end stored, then are handed off
            await asyncio.wait(list(self._creations))
        self.scheduler.draining = True
        # Still renewing while attempts under way finish: a hand-off longer than the
        # lease must not let another replica take runs this one is still writing.
        await self.leases.stop_adopting()
        runs = list(self._runs.values())
        if runs:
            await asyncio.gather(
                *(self.scheduler.hand_off(r, self.config.handoff_grace_s) for r in runs),
                return_exceptions=True,
            )
        # The next owner renews the escrows from now on (or, if none does, they expire).
        await self.escrows.stop()
        await self.leases.stop()
        for wf_id in list(self.leases.held):
            try:
                await self.leases.release(wf_id)
            except Exception as err:  # the store unreachable: the lease lapses by itself
                log.warning("could not release the lease of %s: %s", wf_id, err)
        await self.scheduler.stop()
        await self.dispatcher.stop()

    # -- runs of this replica ----------------------------------------------------

    def _open(self, stored: workflow_pb2.Workflow, token: int) -> Run:
        """Make ``stored`` a run of this replica under ``token``."""
        wf_id = stored.workflow_id
        holder: list[Run] = []
        committer = Committer(
            self.store,
            wf_id,
            token,
            on_lost=lambda: self._lost_run(holder[0]),
            linger_s=self.config.commit_linger_s,
        )
        run = Run.rebuild(stored, committer)
        holder.append(run)
        self._runs[wf_id] = run
        self.leases.hold(wf_id, token)
        self._remember_owner(wf_id, stored.owner)
        return run

    def _run_done(self, run: Run) -> None:
        if self._runs.get(run.workflow_id) is run:
            del self._runs[run.workflow_id]
            if self.metrics is not None:
                ended = _ENDED.get(run.wf.state)
                if ended is not None and not run.committer.lost:
                    self.metrics.workflow_ended(ended)
                else:
                    self.metrics.workflow_released()
            if run.wf.state in TERMINAL_STATES or run.committer.lost:
                self.leases.drop(run.workflow_id)
        run.done.set()

    def _lost_run(self, run: Run) -> None:
        """Another replica owns ``run`` now (a write was refused, or renewal said so):
        stop running it here, without writing."""
        if self._runs.get(run.workflow_id) is run:
            run.committer.lost = True
            self.leases.drop(run.workflow_id)
            self.scheduler.spawn(self.scheduler.abandon(run))

    def _lost(self, workflow_id: str) -> None:
        run = self._runs.get(workflow_id)
        if run is not None:
            self._lost_run(run)

    def _live_escrows(self) -> list[tuple[str, str]]:
        """(workflow id, escrow id) of the runs here whose escrow is open and theirs."""
        return [
            (wf_id, run.wf.escrow_id)
            for wf_id, run in self._runs.items()
            if run.wf.escrow_id
            and run.wf.state == W.WORKFLOW_STATE_RUNNING
            and not run.closing
            and (run.opening is None or run.opening.done())
        ]

    def _escrow_gone(self, workflow_id: str, err: MeshError) -> None:
        """The economy refused to renew a live run's escrow: it expired (the renewals did
        not reach it in time) or was released. Its budget is gone, so the run ends."""
        run = self._runs.get(workflow_id)
        if run is None or run.closing:
            return  # ending anyway (a release of our own closed it)
        error = clip(
            f"the workflow's escrow {run.wf.escrow_id} pays no more ({err.reason}): {err.message}"
        )
        log.error("workflow %s: %s", workflow_id, error)
        self.scheduler.spawn(self.scheduler.finish(run, W.WORKFLOW_STATE_FAILED, error))

    def _cancel_requested(self, workflow_id: str, reason: str) -> None:
        run = self._runs.get(workflow_id)
        if run is not None and not run.closing:
            run.cancel_reason = reason
            self.scheduler.spawn(
                self.scheduler.finish(run, W.WORKFLOW_STATE_CANCELLED, reason or "cancelled")
            )

    async def _adopt(self, workflow_id: str, token: int) -> None:
        """Resume a workflow this replica just claimed (its owner died or handed it off)."""
        if self._stopping:
            await self.store.release(workflow_id, token)
            self.leases.drop(workflow_id)
            return
        try:
            stored = await self.store.get(workflow_id)
        except WorkflowNotFound:
            self.leases.drop(workflow_id)
            return
        run = self._open(stored, token)
        if self.metrics is not None:
            self.metrics.takeover()
        if stored.state == W.WORKFLOW_STATE_PENDING:
            # Its creator died between storing it and the economy's answer: the escrow
            # may or may not be open. Opening again replays or opens it (same request id).
            if not await self._open_escrow(run):
                return
        self.scheduler.start(run)

    async def _open_escrow(self, run: Run) -> bool:
        """Escrow a PENDING run's budget and make it RUNNING; False if the economy
        refused (the run then ended FAILED) or a cancel came meanwhile (it ends it)."""
        wf = run.wf
        d = wf.definition
        opening = run.opening = asyncio.get_running_loop().create_future()
        # A workflow taken over from a dead creator is the mesh's to finish: an economy
        # that is unreachable for a moment (a replica just killed, none passing its
        # health check yet) is waited out, not made the workflow's failure.
        give_up = time.monotonic() + self.config.escrow_open_retry_s
        wait = 0.2
        failure: MeshError | None = None
        while True:
            try:
                await self.payments.open(
                    escrow_id=wf.escrow_id,
                    payer=d.payer_account_id,
                    amount=d.budget,
                    workflow_id=wf.workflow_id,
                    ttl_s=self.config.escrow_ttl_s,
                )
                break
            except MeshError as err:
                transient = is_transport_failure(err) and time.monotonic() < give_up
                if not transient or run.closing or run.committer.lost:
                    failure = err
                    break
                if self._stopping:
                    # Left PENDING: stop releases the lease, the next owner opens it.
                    opening.set_result(False)
                    return False
                log.warning(
                    "opening escrow %s of workflow %s failed (%s: %s); retrying in %.1fs",
                    wf.escrow_id, wf.workflow_id, err.reason, err.message, wait,
                )  # fmt: skip
            await asyncio.sleep(wait)
            wait = min(wait * 2, 2.0)
        if failure is not None:
            opening.set_result(False)
            wf.state = W.WORKFLOW_STATE_FAILED
            wf.error = f"escrow could not be opened: {failure.reason}: {failure.message}"[:200]
            wf.end_time.CopyFrom(timestamp())
            try:
                await run.commit(
                    Change(
                        state=W.WORKFLOW_STATE_FAILED,
                        error=wf.error,
                        end_time=wf.end_time,
                        events=[
                            event(
                                wf.workflow_id,
                                W.WORKFLOW_EVENT_TYPE_WORKFLOW_FAILED,
                                W.WORKFLOW_STATE_FAILED,
                                message=wf.error,
                            )
                        ],
                    )
                )
            except LeaseLost:
                pass
            self._run_done(run)
            return False
        opening.set_result(True)
        if run.closing:
            return False  # cancelled meanwhile: the ending refunds what was just escrowed
        wf.state = W.WORKFLOW_STATE_RUNNING
        run.commit(
            Change(
                state=W.WORKFLOW_STATE_RUNNING,
                events=[self._created_event(wf)],
            )
        )
        return True

    @staticmethod
    def _created_event(wf: workflow_pb2.Workflow) -> workflow_pb2.WorkflowEvent:
        d = wf.definition
        return event(
            wf.workflow_id,
            W.WORKFLOW_EVENT_TYPE_WORKFLOW_CREATED,
            W.WORKFLOW_STATE_RUNNING,
            amount=d.budget,
            message=f"{len(d.tasks)} tasks, budget {d.budget}",
        )

    def _remember_owner(self, workflow_id: str, owner: str) -> None:
        self._owners[workflow_id] = owner
        if len(self._owners) > _OWNER_CACHE:
            self._owners.popitem(last=False)

    async def owner_of(self, workflow_id: str) -> str | None:
        """The principal that created a workflow, None if unknown (policy lookups)."""
        owner = self._owners.get(workflow_id)
        if owner is not None:
            return owner
        try:
            wf = await self.store.get(workflow_id)
        except WorkflowNotFound:
            return None
        self._remember_owner(workflow_id, wf.owner)
        return wf.owner

    # -- create ----------------------------------------------------------------

    async def create_workflow(
        self, request: workflow_pb2.CreateWorkflowRequest
    ) -> workflow_pb2.Workflow:
        """Validate, store, escrow the budget and start a workflow."""
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
        # Creation runs as its own task: once stored it must end started (or
        # discarded) even if this caller is cancelled.
        creating = asyncio.create_task(self._create(request, fingerprint), context=detached())
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

    async def _definition_of(
        self, request: workflow_pb2.CreateWorkflowRequest
    ) -> tuple[workflow_pb2.WorkflowDefinition, str]:
        source = request.WhichOneof("source")
        if source is None:
            raise InvalidArgument.field("definition", "one of definition or template is required")
        if source == "definition":
            return request.definition, ""
        name = request.template.template_name
        if not name:
            raise InvalidArgument.field("template.template_name", "is required")
        template = await self.store.get_template(name)
        if template is None:
            raise TemplateNotFound(f"template {quote(name)} not found")
        return expand(template, request.template), name

    async def _create(
        self, request: workflow_pb2.CreateWorkflowRequest, fingerprint: str
    ) -> workflow_pb2.Workflow:
        definition, template_name = await self._definition_of(request)
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
        paid = definition.budget > 0
        wf = workflow_pb2.Workflow(
            workflow_id=workflow_id,
            name=definition.name,
            state=W.WORKFLOW_STATE_PENDING if paid else W.WORKFLOW_STATE_RUNNING,
            definition=definition,
            template_name=template_name,
            create_time=timestamp(),
            owner=_owner_name(),
            # The create call's span: the parent of every attempt, on any replica.
            traceparent=telemetry.current_traceparent(),
            # A fresh escrow id per creation: a workflow id reused after the old
            # workflow expired must not replay the old (closed) escrow.
            escrow_id=f"{workflow_id}-{os.urandom(4).hex()}" if paid else "",
        )
        for spec in definition.tasks:
            wf.tasks.add(task_id=spec.id, skill=spec.skill, state=W.TASK_RUN_STATE_PENDING)
        try:
            token = await self.store.create(
                wf,
                request_id=request.request_id,
                fingerprint=fingerprint,
                events=[] if paid else [self._created_event(wf)],
                replica=self.replica,
                lease_ttl_s=self.config.lease_ttl_s,
            )
        except RequestExists as err:
            # Another replica created it first (the store is the arbiter).
            self._same_request(err.record.fingerprint, fingerprint)
            return await self.get_workflow(err.record.workflow_id)
        run = self._open(wf, token)
        if self.metrics is not None:
            self.metrics.workflow_created()
        if paid:
            # A cancel arriving meanwhile waits for this (run.opening): it must refund
            # an escrow that the economy may be opening right now.
            opening = run.opening = asyncio.get_running_loop().create_future()
            try:
                await self.payments.open(
                    escrow_id=wf.escrow_id,
                    payer=definition.payer_account_id,
                    amount=definition.budget,
                    workflow_id=workflow_id,
                    ttl_s=self.config.escrow_ttl_s,
                )
            except MeshError:
                opening.set_result(False)
                # Nothing was escrowed: the workflow never was (id and request id free).
                if self._runs.pop(workflow_id, None) is not None and self.metrics is not None:
                    self.metrics.workflow_released()
                self.leases.drop(workflow_id)
                try:
                    await self.store.discard(workflow_id, token)
                except (LeaseLost, WorkflowNotFound):
                    pass
                raise
            opening.set_result(True)
            if run.closing:  # cancelled while the escrow was being opened: it ends it
                if run.finishing is not None:
                    await asyncio.shield(run.finishing)
                return await self.get_workflow(workflow_id)
            run.wf.state = W.WORKFLOW_STATE_RUNNING
            run.commit(Change(state=W.WORKFLOW_STATE_RUNNING, events=[self._created_event(wf)]))
        snapshot = run.view()
        self.scheduler.start(run)
        return snapshot

    async def _unknown_skills(
        self, definition: workflow_pb2.WorkflowDefinition
    ) -> list[FieldViolation]:
        out: list[FieldViolation] = []
        checked: dict[str, bool] = {}
        for i, spec in enumerate(definition.tasks):
            if spec.skill not in checked:
                checked[spec.skill] = await self.dispatcher.skill_known(spec.skill)
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
        if await self.payments.account_owner(payer) != who.name:
            # An unknown account is refused like a foreign one, as the policy does.
            raise NotOwner(
                f"definition.payer_account_id: {quote(payer)} does not exist or does not "
                "belong to the caller",
                metadata={"field": "definition.payer_account_id"},
            )

    # -- reads and control -------------------------------------------------------

    async def get_workflow(self, workflow_id: str) -> workflow_pb2.Workflow:
        """The workflow's current state (a copy)."""
        if not workflow_id:
            raise InvalidArgument.field("workflow_id", "is required")
        return await self.store.get(workflow_id)

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
        return items, encode_page_token(next_key) if next_key is not None else ""

    async def cancel_workflow(self, workflow_id: str, reason: str) -> workflow_pb2.Workflow:
        """Cancel a live workflow wherever it runs; a finished one is returned unchanged.

        The request is recorded in the store first (so it survives its owner), then
        acted on here if this replica owns the run, else by the owner; this call
        waits (up to ``cancel_wait_s``) for the workflow to end.
        """
        if not workflow_id:
            raise InvalidArgument.field("workflow_id", "is required")
        reason = reason or "cancelled"
        if not await self.store.request_cancel(workflow_id, reason):
            return await self.get_workflow(workflow_id)  # finished already
        run = self._runs.get(workflow_id)
        if run is not None and not run.committer.lost:
            run.cancel_reason = reason
            await self.scheduler.finish(run, W.WORKFLOW_STATE_CANCELLED, reason)
        else:
            await self._wait_ended(workflow_id, self.config.cancel_wait_s)
        return await self.get_workflow(workflow_id)

    async def _wait_ended(self, workflow_id: str, timeout_s: float | None) -> None:
        """Until the workflow is finished (by whichever replica), gone, or ``timeout_s``."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            try:
                state = await self.store.state_of(workflow_id)
            except WorkflowNotFound:
                return
            if state in TERMINAL_STATES:
                return
            if deadline is not None and time.monotonic() >= deadline:
                return
            await asyncio.sleep(0.05)

    async def watch(
        self, workflow_id: str, after_sequence: int
    ) -> AsyncIterator[workflow_pb2.WorkflowEvent]:
        """Events after ``after_sequence`` in order; ends after the terminal event."""
        if not workflow_id:
            raise InvalidArgument.field("workflow_id", "is required")
        if after_sequence < 0:
            raise InvalidArgument.field("after_sequence", "must not be negative")
        async for ev in follow(
            self.store, workflow_id, after_sequence, heartbeat_s=self.config.watch_heartbeat_s
        ):
            yield ev

    async def wait(self, workflow_id: str) -> workflow_pb2.Workflow:
        """Block until the workflow is finished (by any replica); returns it."""
        run = self._runs.get(workflow_id)
        if run is not None:
            await run.done.wait()
        await self._wait_ended(workflow_id, None)  # handed off or lost: another replica ends it
        return await self.get_workflow(workflow_id)

    # -- templates ---------------------------------------------------------------

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


__all__ = ["MAX_PAGE_BYTES", "Engine", "EngineConfig"]

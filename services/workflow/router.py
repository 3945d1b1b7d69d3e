"""AgentService served by the mesh itself: a skill router.

A caller that only knows a skill (a REST client, grpcurl, another agent)
sends ExecuteTask or StreamTask to the mesh; the router picks the best
active agent offering the skill through the engine's own ``AgentDispatcher``
(same placement, same slots, same rule for transport failures) and forwards
the call (as the mesh: agents answer only mesh services and admins). A call
waits up to ``agent_wait_s`` for an agent with room (NO_AGENT_AVAILABLE after).

Routed calls are not billed, so nobody may get paid work for free through them:

- admin and service callers are routed to any agent offering the skill;
- agent and client callers only to agents whose price for the skill is 0. If
  only paid agents offer it, the call fails with FAILED_PRECONDITION, reason
  PAID_SKILL_NEEDS_WORKFLOW: run the task in a workflow with a budget, where
  the price is escrowed from the caller's account and paid on completion.

On the agent, a routed task's id is the caller's own under its principal
(``routed/<role:subject>/<task_id>``; answers carry the caller's id back): agents
remember finished task ids and replay their results, so one caller could
otherwise be answered with another's result by reusing its id.

CancelTask through the router is honoured only for the principal that routed
the task (and admins); anyone else gets PERMISSION_DENIED (NOT_OWNER). A task
id not running through the router is NOT_FOUND for everyone: ExecuteTask's
TASK_ALREADY_ROUTED tells anyone which ids are taken already, so hiding it
here would protect nothing.
The rules apply under the ``mesh_access`` policies of agent.proto, which let
every role call the router at all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from meshwright.agent.v1 import agent_pb2
from meshwright.mesh.context import caller
from meshwright.mesh.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    MeshError,
    NotFound,
)
from meshwright.mesh.policy import NotOwner
from meshwright.workflow._dag import quote
from meshwright.workflow.dispatch import (
    UNLIMITED,
    AgentDispatcher,
    BudgetExhausted,
    Slot,
    is_at_capacity,
)

A = agent_pb2
CANCEL_TIMEOUT_S = 5.0
"""Deadline of a CancelTask forwarded to the agent running the task."""


class SkillNotOffered(NotFound):
    """No registered agent offers the skill."""

    reason = "SKILL_NOT_OFFERED"


class PaidSkillNeedsWorkflow(FailedPrecondition):
    """Only paid agents offer the skill: run it in a workflow with a budget."""

    reason = "PAID_SKILL_NEEDS_WORKFLOW"


@dataclass(slots=True)
class _Routed:
    """A task running through the router."""

    by: str
    """The principal that routed it (``role:subject``; "" for internal calls)."""
    max_price: int
    """What an agent may charge for it (0: only free agents)."""
    deadline: float
    """``time.monotonic()`` value by which an agent must have taken it."""
    slot: Slot | None = None
    """Its agent slot; None while it waits for an agent."""


class TaskAlreadyRouted(AlreadyExists):
    """A task with that id is already running through the mesh."""

    reason = "TASK_ALREADY_ROUTED"


class SkillRouter:
    """Implements ``meshwright.agent.v1.AgentService`` for the whole mesh.

    Placement, slots and the agent calls are the dispatcher's, shared with the
    engine. An agent that answers "at capacity" never started the task (another
    caller took its room first), so the router places the task again, on another
    agent or when room frees up, within the same ``agent_wait_s``.
    """

    def __init__(self, dispatcher: AgentDispatcher, *, agent_wait_s: float) -> None:
        """``agent_wait_s``: how long a call waits for an agent offering its skill to be free."""
        self._dispatcher = dispatcher
        self._agent_wait_s = agent_wait_s
        self._routed: dict[str, _Routed] = {}  # by task id

    async def GetAgentCard(self, request: A.GetAgentCardRequest) -> Any:
        cheapest: dict[str, A.AgentSkill] = {}
        for agent in self._dispatcher.agents():
            for skill in agent.card.skills:
                best = cheapest.get(skill.id)
                if best is None or skill.price < best.price:
                    cheapest[skill.id] = skill
        card = A.AgentCard(
            name="meshwright",
            description="The mesh: routes each task to the best active agent offering its skill.",
            version="1",
            skills=[cheapest[k] for k in sorted(cheapest)],
            capabilities=A.AgentCapabilities(streaming=True, cancellation=True),
        )
        return A.GetAgentCardResponse(card=card)

    async def _claim(self, task_id: str, skill: str) -> _Routed:
        """Check the request and claim its task id (release it with ``_unclaim``)."""
        violations = []
        if not task_id:
            violations.append(FieldViolation("task_id", "is required"))
        if not skill:
            violations.append(FieldViolation("skill", "is required"))
        if violations:
            raise InvalidArgument("task_id and skill are required", violations=violations)
        if task_id in self._routed:
            raise TaskAlreadyRouted(f"task {quote(task_id)} is already running through the mesh")
        who = caller()
        routed = _Routed(
            by="" if who is None else who.name,
            # Routed calls are not billed: only the mesh itself and admins may use paid agents.
            max_price=UNLIMITED if who is None or who.is_trusted else 0,
            deadline=time.monotonic() + self._agent_wait_s,
        )
        self._routed[task_id] = routed  # claimed before the first await
        try:
            if not await self._dispatcher.skill_known(skill):
                raise SkillNotOffered(f"no registered agent offers skill {quote(skill)}")
        except BaseException:
            self._unclaim(task_id, routed)
            raise
        return routed

    def _unclaim(self, task_id: str, routed: _Routed) -> None:
        if self._routed.get(task_id) is routed:
            del self._routed[task_id]

    async def _place(self, routed: _Routed, skill: str, tried: set[str]) -> Slot:
        try:
            slot = await self._dispatcher.acquire(
                skill,
                max_price=lambda: routed.max_price,
                exclude=tried,
                timeout_s=max(0.0, routed.deadline - time.monotonic()),
            )
        except BudgetExhausted:
            raise PaidSkillNeedsWorkflow(
                f"every active agent offering {quote(skill)} charges for it; run the task in "
                "a workflow (CreateWorkflow) with a budget paid from your account",
                metadata={"skill": skill},
            ) from None
        routed.slot = slot
        return slot

    def _release(
        self,
        routed: _Routed,
        slot: Slot,
        *,
        task: A.Task | None,
        failure: MeshError | None,
        cancelled: bool,
        t0: float,
    ) -> None:
        routed.slot = None
        state = A.TASK_STATE_UNSPECIFIED if task is None else task.status.state
        self._dispatcher.release(
            slot,
            ok=state == A.TASK_STATE_COMPLETED,
            failure=failure,
            latency_s=time.monotonic() - t0,
            # A call its caller gave up on, or a task cancelled on request, says
            # nothing about the agent.
            counted=not cancelled and state != A.TASK_STATE_CANCELED,
        )

    @staticmethod
    def _agent_task_id(routed: _Routed, task_id: str) -> str:
        """The id the agent sees: the caller's own id under its principal, so one caller
        can never be answered with another's remembered result (agents replay finished
        task ids), nor cancel it on the agent."""
        return f"routed/{routed.by}/{task_id}" if routed.by else task_id

    async def ExecuteTask(self, request: A.ExecuteTaskRequest) -> Any:
        routed = await self._claim(request.task_id, request.skill)
        on_agent = A.ExecuteTaskRequest()
        on_agent.CopyFrom(request)
        on_agent.task_id = self._agent_task_id(routed, request.task_id)
        tried: set[str] = set()
        try:
            while True:
                slot = await self._place(routed, request.skill, tried)
                t0 = time.monotonic()
                task: A.Task | None = None
                failure: MeshError | None = None
                cancelled = False
                try:
                    task = await self._dispatcher.execute(slot, on_agent)
                    task.task_id = request.task_id
                    return A.ExecuteTaskResponse(task=task)
                except MeshError as err:
                    failure = err
                    if not is_at_capacity(err):
                        raise
                except asyncio.CancelledError:
                    cancelled = True
                    raise
                finally:
                    self._release(
                        routed, slot, task=task, failure=failure, cancelled=cancelled, t0=t0
                    )
                tried.add(slot.agent_id)  # it never started there: place it again
        finally:
            self._unclaim(request.task_id, routed)

    async def StreamTask(self, request: A.StreamTaskRequest) -> AsyncIterator[Any]:
        routed = await self._claim(request.task_id, request.skill)
        on_agent = A.StreamTaskRequest()
        on_agent.CopyFrom(request)
        on_agent.task_id = self._agent_task_id(routed, request.task_id)
        tried: set[str] = set()
        try:
            while True:
                slot = await self._place(routed, request.skill, tried)
                t0 = time.monotonic()
                task: A.Task | None = None
                failure: MeshError | None = None
                cancelled = False
                started = False
                try:
                    async for update in self._dispatcher.stream(slot, on_agent):
                        started = True
                        if update.HasField("task"):
                            update.task.task_id = request.task_id
                        if update.final:
                            task = update.task
                        yield update
                    return
                except MeshError as err:
                    failure = err
                    if started or not is_at_capacity(err):
                        raise
                except (asyncio.CancelledError, GeneratorExit):
                    cancelled = True
                    raise
                finally:
                    self._release(
                        routed, slot, task=task, failure=failure, cancelled=cancelled, t0=t0
                    )
                tried.add(slot.agent_id)  # it never started there: place it again
        finally:
            self._unclaim(request.task_id, routed)

    async def CancelTask(self, request: A.CancelTaskRequest) -> Any:
        task_id = request.task_id
        if not task_id:
            raise InvalidArgument.field("task_id", "is required")
        routed = self._routed.get(task_id)
        if routed is None:
            raise NotFound(f"no task {quote(task_id)} is running through the mesh")
        who = caller()
        if who is not None and not who.is_admin and routed.by != who.name:
            raise NotOwner(
                f"task_id: {quote(task_id)} was routed by another caller",
                metadata={"field": "task_id"},
            )
        slot = routed.slot
        if slot is None:
            raise FailedPrecondition(
                f"task {quote(task_id)} is still waiting for an agent; cancel its call instead"
            )
        on_agent = A.CancelTaskRequest(task_id=self._agent_task_id(routed, task_id))
        reply = await self._dispatcher.cancel_task(slot, on_agent, timeout_s=CANCEL_TIMEOUT_S)
        if reply.HasField("task"):
            reply.task.task_id = task_id
        return reply

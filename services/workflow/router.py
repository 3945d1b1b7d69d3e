"""AgentService served by the mesh itself: a skill router.

A caller that only knows a skill (a REST client, grpcurl, another agent)
sends ExecuteTask or StreamTask to the mesh; the router picks the best
active agent offering the skill with the same placement the engine uses and
forwards the call (as the mesh: agents answer only mesh services and admins).

Routed calls are not billed, so nobody may get paid work for free through them:

- admin and service callers are routed to any agent offering the skill;
- agent and client callers only to agents whose price for the skill is 0. If
  only paid agents offer it, the call fails with FAILED_PRECONDITION, reason
  PAID_SKILL_NEEDS_WORKFLOW: run the task in a workflow with a budget, where
  the price is escrowed from the caller's account and paid on completion.

CancelTask through the router is honoured only for the principal that routed
the task (and admins); anyone else gets PERMISSION_DENIED (NOT_OWNER). A task
id not running through the router is NOT_FOUND for everyone: ExecuteTask's
TASK_ALREADY_ROUTED tells anyone which ids are taken already, so hiding it
here would protect nothing.
The rules apply under the ``mesh_access`` policies of agent.proto, which let
every role call the router at all.
"""

from __future__ import annotations

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
from meshwright.workflow.directory import UNLIMITED, BudgetExhausted, Lease
from meshwright.workflow.engine import Engine

A = agent_pb2


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
    lease: Lease | None = None
    """Its agent slot; None while it still waits for an agent."""


class TaskAlreadyRouted(AlreadyExists):
    """A task with that id is already running through the mesh."""

    reason = "TASK_ALREADY_ROUTED"


class SkillRouter:
    """Implements ``meshwright.agent.v1.AgentService`` for the whole mesh."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._routed: dict[str, _Routed] = {}  # by task id

    async def GetAgentCard(self, request: A.GetAgentCardRequest) -> Any:
        cheapest: dict[str, A.AgentSkill] = {}
        for agent in self._engine.directory.agents():
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

    async def _lease(self, task_id: str, skill: str) -> Lease:
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
        # Routed calls are not billed: only the mesh itself and admins may use paid agents.
        max_price = UNLIMITED if who is None or who.is_trusted else 0
        routed = _Routed(by="" if who is None else who.name)
        self._routed[task_id] = routed  # claimed before the first await
        try:
            if not await self._engine.directory.skill_known(skill):
                raise SkillNotOffered(f"no registered agent offers skill {quote(skill)}")
            lease = await self._engine.directory.acquire(
                skill,
                max_price=lambda: max_price,
                exclude=set(),
                timeout_s=self._engine.config.agent_wait_s,
            )
        except BudgetExhausted:
            del self._routed[task_id]
            raise PaidSkillNeedsWorkflow(
                f"every active agent offering {quote(skill)} charges for it; run the task in "
                "a workflow (CreateWorkflow) with a budget paid from your account",
                metadata={"skill": skill},
            ) from None
        except BaseException:
            del self._routed[task_id]
            raise
        routed.lease = lease
        return lease

    def _release(self, task_id: str, lease: Lease, ok: bool, transport: bool, t0: float) -> None:
        self._routed.pop(task_id, None)
        self._engine.directory.release(
            lease, ok=ok, transport_failure=transport, latency_s=time.monotonic() - t0
        )

    async def ExecuteTask(self, request: A.ExecuteTaskRequest) -> Any:
        lease = await self._lease(request.task_id, request.skill)
        t0 = time.monotonic()
        ok = transport = False
        try:
            reply = await self._engine.agent_client(lease.endpoint).call("ExecuteTask", request)
            ok = reply.task.status.state == A.TASK_STATE_COMPLETED
            return reply
        except MeshError as err:
            transport = err.reason in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
            raise
        finally:
            self._release(request.task_id, lease, ok, transport, t0)

    async def StreamTask(self, request: A.StreamTaskRequest) -> AsyncIterator[Any]:
        lease = await self._lease(request.task_id, request.skill)
        t0 = time.monotonic()
        ok = transport = False
        try:
            async for update in self._engine.agent_client(lease.endpoint).stream(
                "StreamTask", request
            ):
                if update.final:
                    ok = update.task.status.state == A.TASK_STATE_COMPLETED
                yield update
        except MeshError as err:
            transport = err.reason in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
            raise
        finally:
            self._release(request.task_id, lease, ok, transport, t0)

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
        lease = routed.lease
        if lease is None:
            raise FailedPrecondition(
                f"task {quote(task_id)} is still waiting for an agent; cancel its call instead"
            )
        return await self._engine.agent_client(lease.endpoint).call(
            "CancelTask", request, timeout=5.0
        )

"""AgentService served by the mesh itself: a skill router.

A caller that only knows a skill (a REST client, grpcurl, another agent)
sends ExecuteTask or StreamTask to the mesh; the router picks the best
active agent offering the skill with the same placement the engine uses and
forwards the call. Direct calls are not billed: payment happens only inside
workflows, where a budget is escrowed.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from meshwright.agent.v1 import agent_pb2
from meshwright.mesh.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    MeshError,
    NotFound,
)
from meshwright.workflow.directory import UNLIMITED, Lease
from meshwright.workflow.engine import Engine

A = agent_pb2


class SkillNotOffered(NotFound):
    """No registered agent offers the skill."""

    reason = "SKILL_NOT_OFFERED"


class TaskAlreadyRouted(AlreadyExists):
    """A task with that id is already running through the mesh."""

    reason = "TASK_ALREADY_ROUTED"


class SkillRouter:
    """Implements ``meshwright.agent.v1.AgentService`` for the whole mesh."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        # task id -> its lease; None while it still waits for an agent
        self._routed: dict[str, Lease | None] = {}

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
            raise TaskAlreadyRouted(f"task {task_id!r} is already running through the mesh")
        self._routed[task_id] = None  # claimed before the first await
        try:
            if not await self._engine.directory.skill_known(skill):
                raise SkillNotOffered(f"no registered agent offers skill {skill!r}")
            lease = await self._engine.directory.acquire(
                skill,
                max_price=lambda: UNLIMITED,
                exclude=set(),
                timeout_s=self._engine.config.agent_wait_s,
            )
        except BaseException:
            del self._routed[task_id]
            raise
        self._routed[task_id] = lease
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
        if request.task_id not in self._routed:
            raise NotFound(f"no task {request.task_id!r} is running through the mesh")
        lease = self._routed[request.task_id]
        if lease is None:
            raise FailedPrecondition(
                f"task {request.task_id!r} is still waiting for an agent; cancel its call instead"
            )
        return await self._engine.agent_client(lease.endpoint).call(
            "CancelTask", request, timeout=5.0
        )

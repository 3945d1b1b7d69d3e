"""``meshwright.agent.v1.AgentService`` for one agent: thin, over ``TaskRunner``."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from meshwright.agent.results import DEFAULT_RESULT_MEMORY, DEFAULT_RESULT_TTL_S
from meshwright.agent.tasks import TaskRunner
from meshwright.agent.v1 import agent_pb2

if TYPE_CHECKING:
    from meshwright.agent.agent import Agent

SERVICE = agent_pb2.DESCRIPTOR.services_by_name["AgentService"]
"""The AgentService descriptor, for ``MeshServer.add`` and clients."""


class AgentServicer:
    """Serves an ``Agent``'s card and runs its tasks (``TaskRunner`` has the options)."""

    def __init__(
        self,
        agent: Agent,
        *,
        cancel_wait_s: float = 5.0,
        result_memory: int = DEFAULT_RESULT_MEMORY,
        result_ttl_s: float = DEFAULT_RESULT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.agent = agent
        self.runner = TaskRunner(
            agent.skills,
            capacity=agent.capacity,
            cancel_wait_s=cancel_wait_s,
            result_memory=result_memory,
            result_ttl_s=result_ttl_s,
            clock=clock,
        )
        self._card = agent_pb2.GetAgentCardResponse(card=agent.card())

    @property
    def load(self) -> int:
        """Tasks in flight now."""
        return self.runner.load

    async def GetAgentCard(
        self, request: agent_pb2.GetAgentCardRequest
    ) -> agent_pb2.GetAgentCardResponse:
        return self._card

    async def ExecuteTask(
        self, request: agent_pb2.ExecuteTaskRequest
    ) -> agent_pb2.ExecuteTaskResponse:
        return agent_pb2.ExecuteTaskResponse(task=await self.runner.execute(request))

    def StreamTask(
        self, request: agent_pb2.StreamTaskRequest
    ) -> AsyncIterator[agent_pb2.StreamTaskResponse]:
        # The runner's generator itself, so closing the stream closes it at once.
        return self.runner.stream(request)

    async def CancelTask(
        self, request: agent_pb2.CancelTaskRequest
    ) -> agent_pb2.CancelTaskResponse:
        return agent_pb2.CancelTaskResponse(task=await self.runner.cancel(request.task_id))

"""``meshwright.agent.v1.AgentManagerService`` over the ``AgentManager`` domain object."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from meshwright.agent.manager import MAX_TAIL, AgentManager
from meshwright.agent.v1 import manager_pb2 as M
from meshwright.mesh.errors import InvalidArgument
from meshwright.mesh.paging import decode_page_token, decode_position_token, encode_page_token
from meshwright.mesh.paging import page_size as _page_size
from meshwright.mesh.validation import duration_s

SERVICE = M.DESCRIPTOR.services_by_name["AgentManagerService"]
"""The service descriptor to pass to ``MeshServer.add`` and the service clients."""

DEFAULT_PAGE = 100
MAX_PAGE = 1000


def _tail(value: int) -> int:
    if not 0 <= value <= MAX_TAIL:
        raise InvalidArgument.field("tail_lines", f"must be 0..{MAX_TAIL}")
    return value


def _name(value: str) -> str:
    if not value:
        raise InvalidArgument.field("name", "required: the managed agent's name")
    return value


class AgentManagerServicer:
    """Thin gRPC adapter: parse the request, call the manager, build the response."""

    def __init__(self, manager: AgentManager) -> None:
        self.manager = manager

    async def CreateManagedAgent(
        self, request: M.CreateManagedAgentRequest
    ) -> M.CreateManagedAgentResponse:
        agent = await self.manager.create(request.name, request.spec, start=request.start)
        return M.CreateManagedAgentResponse(managed_agent=agent)

    async def GetManagedAgent(self, request: M.GetManagedAgentRequest) -> M.GetManagedAgentResponse:
        agent = await self.manager.describe(_name(request.name))
        return M.GetManagedAgentResponse(managed_agent=agent)

    async def ListManagedAgents(
        self, request: M.ListManagedAgentsRequest
    ) -> M.ListManagedAgentsResponse:
        size = _page_size(request.page_size, default=DEFAULT_PAGE, maximum=MAX_PAGE)
        after = decode_page_token(request.page_token)
        names = [n for n in self.manager.names() if after is None or n > after]
        page = names[:size]
        reply = M.ListManagedAgentsResponse()
        for name in page:
            reply.managed_agents.append(await self.manager.describe(name))
        if len(names) > size:
            reply.next_page_token = encode_page_token(page[-1])
        return reply

    async def DeleteManagedAgent(
        self, request: M.DeleteManagedAgentRequest
    ) -> M.DeleteManagedAgentResponse:
        agent = await self.manager.delete(_name(request.name))
        return M.DeleteManagedAgentResponse(managed_agent=agent)

    async def StartManagedAgent(
        self, request: M.StartManagedAgentRequest
    ) -> M.StartManagedAgentResponse:
        agent = await self.manager.start(_name(request.name))
        return M.StartManagedAgentResponse(managed_agent=agent)

    async def StopManagedAgent(
        self, request: M.StopManagedAgentRequest
    ) -> M.StopManagedAgentResponse:
        grace = duration_s(request.grace) if request.HasField("grace") else None
        agent = await self.manager.stop(_name(request.name), grace_s=grace)
        return M.StopManagedAgentResponse(managed_agent=agent)

    async def RestartManagedAgent(
        self, request: M.RestartManagedAgentRequest
    ) -> M.RestartManagedAgentResponse:
        replica = request.replica if request.HasField("replica") else None
        agent = await self.manager.restart(_name(request.name), replica=replica)
        return M.RestartManagedAgentResponse(managed_agent=agent)

    async def ScaleManagedAgent(
        self, request: M.ScaleManagedAgentRequest
    ) -> M.ScaleManagedAgentResponse:
        agent = await self.manager.scale(_name(request.name), request.replicas)
        return M.ScaleManagedAgentResponse(managed_agent=agent)

    async def ListManagedAgentEvents(
        self, request: M.ListManagedAgentEventsRequest
    ) -> M.ListManagedAgentEventsResponse:
        size = _page_size(request.page_size, default=DEFAULT_PAGE, maximum=MAX_PAGE)
        after = decode_position_token(request.page_token) or 0
        events = [e for e in self.manager.events(_name(request.name)) if e.sequence > after]
        reply = M.ListManagedAgentEventsResponse(events=events[:size])
        if len(events) > size:
            reply.next_page_token = encode_page_token(str(events[size - 1].sequence))
        return reply

    async def GetManagedAgentLogs(
        self, request: M.GetManagedAgentLogsRequest
    ) -> M.GetManagedAgentLogsResponse:
        tail = _tail(request.tail_lines) or DEFAULT_PAGE
        replica = request.replica if request.HasField("replica") else None
        lines = self.manager.logs(_name(request.name), replica=replica, tail=tail)
        return M.GetManagedAgentLogsResponse(lines=lines)

    async def StreamManagedAgentLogs(
        self, request: M.StreamManagedAgentLogsRequest
    ) -> AsyncIterator[M.StreamManagedAgentLogsResponse]:
        tail = _tail(request.tail_lines)
        replica = request.replica if request.HasField("replica") else None
        name = _name(request.name)
        self.manager.logs(name, replica=replica, tail=0)  # NOT_FOUND before the stream starts
        async with contextlib.aclosing(
            self.manager.follow(name, replica=replica, tail=tail)
        ) as lines:
            async for line in lines:
                yield M.StreamManagedAgentLogsResponse(line=line)


__all__ = ["SERVICE", "AgentManagerServicer"]

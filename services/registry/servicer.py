"""``meshwright.registry.v1.RegistryService`` over the ``Registry`` domain object."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from meshwright.mesh.errors import FieldViolation, InvalidArgument, MeshError
from meshwright.mesh.validation import duration_s
from meshwright.registry.registry import Registry
from meshwright.registry.v1 import registry_pb2

SERVICE = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"]
"""The service descriptor to pass to ``MeshServer.add`` and the service clients."""


class RegistryServicer:
    """Thin gRPC adapter: parse the request, call the registry, build the response."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    async def RegisterAgent(
        self, request: registry_pb2.RegisterAgentRequest
    ) -> registry_pb2.RegisterAgentResponse:
        # A zero lease_ttl is "unset" as well: REST clients send {"leaseTtl": "0s"}.
        ttl = duration_s(request.lease_ttl) if request.HasField("lease_ttl") else 0.0
        agent = await self.registry.register(
            request.card if request.HasField("card") else None,
            request.endpoint,
            agent_id=request.agent_id,
            tags=request.tags,
            capacity=request.capacity,
            lease_ttl_s=ttl or None,
            payout_account_id=request.payout_account_id,
        )
        return registry_pb2.RegisterAgentResponse(agent=agent)

    async def Heartbeat(
        self, request: registry_pb2.HeartbeatRequest
    ) -> registry_pb2.HeartbeatResponse:
        agent = await self.registry.heartbeat(
            request.agent_id,
            request.lease_id,
            load=request.load,
            draining=request.draining,
            error=request.error,
            health_detail=request.health_detail,
        )
        return registry_pb2.HeartbeatResponse(agent=agent)

    async def StreamHeartbeats(
        self, request: registry_pb2.StreamHeartbeatsRequest
    ) -> registry_pb2.StreamHeartbeatsResponse:
        # One message of the stream; the pipeline answers each in order.
        if not request.HasField("heartbeat"):
            raise InvalidArgument.field("heartbeat", "required: the heartbeat to send")
        try:
            reply = await self.Heartbeat(request.heartbeat)
        except MeshError as err:
            raise _under("heartbeat", err) from None
        return registry_pb2.StreamHeartbeatsResponse(heartbeat=reply)

    async def ReportAgentFailure(
        self, request: registry_pb2.ReportAgentFailureRequest
    ) -> registry_pb2.ReportAgentFailureResponse:
        agent = await self.registry.report_failure(request.agent_id, request.reason)
        return registry_pb2.ReportAgentFailureResponse(agent=agent)

    async def DeregisterAgent(
        self, request: registry_pb2.DeregisterAgentRequest
    ) -> registry_pb2.DeregisterAgentResponse:
        agent = await self.registry.deregister(request.agent_id)
        return registry_pb2.DeregisterAgentResponse(agent=agent)

    async def GetAgent(
        self, request: registry_pb2.GetAgentRequest
    ) -> registry_pb2.GetAgentResponse:
        agent = await self.registry.get_agent(request.agent_id)
        return registry_pb2.GetAgentResponse(agent=agent)

    async def ListAgents(
        self, request: registry_pb2.ListAgentsRequest
    ) -> registry_pb2.ListAgentsResponse:
        page = await self.registry.list_page(
            skill=request.skill,
            tag=request.tag,
            state=request.state,
            page_size=request.page_size,
            page_token=request.page_token,
        )
        return registry_pb2.ListAgentsResponse(
            agents=page.agents, next_page_token=page.next_page_token
        )

    async def WatchAgents(
        self, request: registry_pb2.WatchAgentsRequest
    ) -> AsyncIterator[registry_pb2.WatchAgentsResponse]:
        # aclosing: the watcher is released as soon as the stream ends, not at GC.
        async with contextlib.aclosing(
            self.registry.watch(
                skill=request.skill,
                tag=request.tag,
                state=request.state,
                after_revision=request.after_revision,
            )
        ) as events:
            async for event in events:
                yield registry_pb2.WatchAgentsResponse(
                    type=event.type, agent=event.agent, revision=event.revision
                )


def _under(prefix: str, err: MeshError) -> MeshError:
    """``err`` with the fields it names moved under ``prefix`` (the wrapping request's field)."""
    if err.violations:
        err.violations = tuple(
            FieldViolation(f"{prefix}.{v.field}", v.description) for v in err.violations
        )
    if "field" in err.metadata:
        err.metadata["field"] = f"{prefix}.{err.metadata['field']}"
    return err

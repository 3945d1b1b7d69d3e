"""An agent process's A2A endpoint: ``meshwright agent run ... --a2a-port N``.

uvicorn on the agent's host serving ``A2AServer`` at ``/`` (card at
``/.well-known/agent-card.json``) in front of the agent's own servicer, called
in-process through the agent's pipeline with each caller's token: the same access
policy as over gRPC (admins and services only).
"""

from __future__ import annotations

from starlette.applications import Starlette

from meshwright.agent.a2a.server import A2AServer, static_card
from meshwright.agent.servicer import SERVICE, AgentServicer
from meshwright.agent.v1 import agent_pb2
from meshwright.mesh._asgi import AsgiServer, serve_asgi
from meshwright.mesh.client import LocalServiceClient
from meshwright.mesh.pipeline import Pipeline

A2A_URL_KEY = "a2a_url"
"""Card metadata key under which an agent announces its A2A endpoint to the registry."""


class AgentA2AEndpoint:
    """The running endpoint: ``url`` is what the card and the registry advertise."""

    def __init__(self, a2a: A2AServer, server: AsgiServer, url: str) -> None:
        self.a2a = a2a
        self.server = server
        self.url = url

    async def stop(self) -> None:
        """Stop accepting, let requests finish (the server's grace), stop a2a-sdk's tasks."""
        try:
            await self.server.stop()
        finally:
            await self.a2a.aclose()


async def serve_agent_a2a(
    servicer: AgentServicer,
    card: agent_pb2.AgentCard,
    pipeline: Pipeline,
    *,
    host: str,
    port: int,
    advertise_host: str,
    agent_id: str,
    grace_s: float,
) -> AgentA2AEndpoint:
    """Serve A2A for ``servicer`` on ``host:port`` (0 picks one), advertised as
    ``http://<advertise_host>:<port>/``."""
    client = LocalServiceClient(servicer, SERVICE, pipeline)
    # The URL is known once the port is bound (0 picks one); a request before that sees
    # the URL it came in on.
    served = agent_pb2.AgentCard()
    served.CopyFrom(card)
    holder: list[str] = []
    a2a = A2AServer(
        client,
        static_card(served),
        url=lambda request: holder[0] if holder else str(request.base_url),
        auth=pipeline.auth_enabled,
        agent_id=agent_id,
    )
    app = Starlette(routes=a2a.routes())
    server = await serve_asgi(app, host=host, port=port, grace_s=grace_s, what="the A2A endpoint")
    shown = f"[{advertise_host}]" if ":" in advertise_host else advertise_host
    url = f"http://{shown}:{server.port}/"
    holder.append(url)
    served.metadata[A2A_URL_KEY] = url
    return AgentA2AEndpoint(a2a, server, url)


__all__ = ["A2A_URL_KEY", "AgentA2AEndpoint", "serve_agent_a2a"]

"""The mesh's skill router over A2A, on the gateway: ``/a2a/mesh``.

The card (``/a2a/mesh/.well-known/agent-card.json``) lists every skill an active agent
offers (from the registry, asked at most every few seconds), each at its lowest price;
``message/send`` and ``message/stream`` go to the mesh's AgentService (the skill router)
with the caller's token, so its rules hold: agent and client tokens run free skills
only (PAID_SKILL_NEEDS_WORKFLOW otherwise), admins and services any. Works wherever the
gateway fronts an AgentService: in ``meshwright up`` (the router in-process) and in a
gateway alone (the router of workflow replicas elsewhere).
"""

from __future__ import annotations

from collections.abc import Sequence

from starlette.requests import Request
from starlette.routing import BaseRoute

from meshwright.agent.a2a.server import A2AServer, CachedCard
from meshwright.agent.v1 import agent_pb2
from meshwright.mesh.client import ServiceClient
from meshwright.registry.v1 import registry_pb2

MESH_A2A_PATH = "/a2a/mesh"
"""Where the gateway serves the mesh's A2A endpoint (its card below it)."""

CARD_TTL_S = 5.0
"""How long the mesh's card (its live skills) is reused before the registry is asked again."""

_AGENT_SERVICE = agent_pb2.DESCRIPTOR.services_by_name["AgentService"].full_name
_PAGE_SIZE = 500


async def live_skills_card(registry: ServiceClient) -> agent_pb2.AgentCard:
    """The mesh's card: every skill of the registry's active agents, at its lowest price."""
    cheapest: dict[str, agent_pb2.AgentSkill] = {}
    token = ""
    while True:
        reply = await registry.call(
            "ListAgents",
            registry_pb2.ListAgentsRequest(
                state=registry_pb2.AGENT_STATE_ACTIVE, page_size=_PAGE_SIZE, page_token=token
            ),
        )
        for agent in reply.agents:
            for skill in agent.card.skills:
                best = cheapest.get(skill.id)
                if best is None or skill.price < best.price:
                    cheapest[skill.id] = skill
        token = reply.next_page_token
        if not token:
            break
    return agent_pb2.AgentCard(
        name="meshwright",
        description="The mesh: runs each task on the best active agent offering its skill "
        "(agents and clients: free skills only; paid ones run in workflows).",
        version="1",
        skills=[cheapest[k] for k in sorted(cheapest)],
        capabilities=agent_pb2.AgentCapabilities(streaming=True, cancellation=True),
    )


def mesh_a2a(
    registry: ServiceClient | None, fronted: Sequence[ServiceClient], *, auth: bool
) -> A2AServer | None:
    """The mesh's A2A server, or None when this gateway fronts no AgentService (or reaches
    no registry). ``registry`` calls as the gateway itself; the fronted AgentService
    forwards each caller's token."""
    agent = next((c for c in fronted if c.service.full_name == _AGENT_SERVICE), None)
    if agent is None or registry is None:
        return None

    async def card() -> agent_pb2.AgentCard:
        return await live_skills_card(registry)

    def url(request: Request) -> str:
        return str(request.base_url).rstrip("/") + MESH_A2A_PATH

    # Not strict: a skill registered since the card was read is still the router's to run.
    return A2AServer(
        agent, CachedCard(card, ttl_s=CARD_TTL_S), url=url, auth=auth, strict_skills=False
    )


def mesh_a2a_routes(
    registry: ServiceClient | None, fronted: Sequence[ServiceClient], *, auth: bool
) -> list[BaseRoute]:
    """The routes of ``mesh_a2a`` at ``MESH_A2A_PATH`` (none when it is None)."""
    server = mesh_a2a(registry, fronted, auth=auth)
    return [] if server is None else server.routes(MESH_A2A_PATH)


__all__ = ["CARD_TTL_S", "MESH_A2A_PATH", "live_skills_card", "mesh_a2a", "mesh_a2a_routes"]

"""Our agent card as an A2A agent card (A2A protocol v1.0, a2a-sdk types).

The mapping, field by field (``meshwright.agent.v1.AgentCard`` → ``a2a.types.AgentCard``):

- ``name``, ``description``, ``version``: copied.
- ``skills``: one A2A skill per skill, same ``id``, ``name``, ``description``, ``tags``,
  ``examples`` (the spec requires a description and tags: an empty description becomes the
  name, empty tags the first segment of the dotted id, "text.upper" → "text").
- prices: A2A skills have none, so they go in an extension of the card's capabilities,
  ``PRICING_EXTENSION`` (``https://meshwright.dev/a2a/ext/pricing``), whose ``params`` map
  every skill id to its price (integer minor units of the mesh currency; 0 = free). A client
  that does not know the extension still sees the skills; ``prices(card)`` reads them back.
- ``capabilities.streaming``: copied (``StreamTask`` with incremental updates = A2A
  ``message/stream``). Our ``cancellation`` has no A2A counterpart (every A2A agent takes
  ``tasks/cancel``); it goes in ``AGENT_EXTENSION``'s params.
- ``metadata`` and the registry's agent id: ``AGENT_EXTENSION``
  (``https://meshwright.dev/a2a/ext/agent``) with params ``{"agent_id": ..., "cancellation":
  ..., "metadata": {...}}`` (the card proto has no free-form metadata field).
- ``url``: the one ``supported_interfaces`` entry (binding ``preferred_transport``, protocol
  version 1.0): where A2A calls go.
- ``default_input_modes`` / ``default_output_modes``: ``application/json`` and ``text/plain``
  (input: the first data part's object, or the text parts as ``{"text": ...}``; output: the
  task's output object as a data part).
- ``auth``: a ``bearer`` HTTP security scheme (JWT, the mesh's tokens) and a security
  requirement naming it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from a2a.server.request_handlers.response_helpers import agent_card_to_dict
from a2a.types import (
    AgentCapabilities,
    AgentCard,
    AgentExtension,
    AgentInterface,
    AgentSkill,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)
from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH, PROTOCOL_VERSION_CURRENT
from google.protobuf import json_format, struct_pb2

from meshwright.agent.v1 import agent_pb2

AGENT_CARD_PATH = AGENT_CARD_WELL_KNOWN_PATH
"""Where an A2A server serves its card, relative to its base URL (A2A §8.2)."""
UNVERSIONED = "0.0.0"
"""The version an A2A card states for an agent that names none."""

PRICING_EXTENSION = "https://meshwright.dev/a2a/ext/pricing"
"""Card extension whose params map each skill id to its price (integer minor units; 0 = free)."""

AGENT_EXTENSION = "https://meshwright.dev/a2a/ext/agent"
"""Card extension carrying what the A2A card has no field for: the registry's agent id,
our ``cancellation`` capability and the card's free-form metadata."""

BEARER_SCHEME = "bearer"
"""Name of the security scheme a card with ``auth`` declares."""

MODES = ("application/json", "text/plain")
"""Default input and output media types of every meshwright A2A card."""


def a2a_card(
    card: agent_pb2.AgentCard,
    *,
    url: str,
    auth: bool,
    agent_id: str = "",
    preferred_transport: str = "JSONRPC",
) -> AgentCard:
    """The A2A card of ``card``, served at ``url`` (see the module docstring for the mapping).

    ``auth``: calls need a bearer token (the card declares the scheme). ``agent_id``: the
    registry's id of the agent, if known. ``preferred_transport``: the A2A protocol binding
    of ``url`` (``JSONRPC``, ``HTTP+JSON`` or ``GRPC``).
    """
    out = AgentCard(
        name=card.name,
        description=card.description or card.name,  # required by the spec
        # Required by the spec (a2a-sdk warns at every serialization of a card without one).
        version=card.version or UNVERSIONED,
        supported_interfaces=[
            AgentInterface(
                url=url,
                protocol_binding=preferred_transport,
                protocol_version=PROTOCOL_VERSION_CURRENT,
            )
        ],
        capabilities=AgentCapabilities(
            streaming=card.capabilities.streaming,
            extensions=_extensions(card, agent_id),
        ),
        default_input_modes=MODES,
        default_output_modes=MODES,
        skills=[
            AgentSkill(
                id=s.id,
                name=s.name or s.id,
                # The spec requires both; a skill that leaves them empty gets its name
                # and the first segment of its dotted id ("text.upper" → "text").
                description=s.description or s.name or s.id,
                tags=s.tags or [s.id.split(".", 1)[0]],
                examples=s.examples,
            )
            for s in card.skills
        ],
    )
    if auth:
        out.security_schemes[BEARER_SCHEME].CopyFrom(
            SecurityScheme(
                http_auth_security_scheme=HTTPAuthSecurityScheme(
                    scheme="Bearer",
                    bearer_format="JWT",
                    description="A meshwright token (Authorization: Bearer <jwt>).",
                )
            )
        )
        out.security_requirements.append(SecurityRequirement(schemes={BEARER_SCHEME: StringList()}))
    return out


def _extensions(card: agent_pb2.AgentCard, agent_id: str) -> list[AgentExtension]:
    pricing = struct_pb2.Struct()
    for s in card.skills:
        pricing[s.id] = s.price  # a JSON number: exact for prices below 2**53
    agent = struct_pb2.Struct()
    agent.update(
        {
            "agent_id": agent_id,
            "cancellation": card.capabilities.cancellation,
            "metadata": dict(card.metadata),
        }
    )
    return [
        AgentExtension(
            uri=PRICING_EXTENSION,
            description="Price of one completed task per skill id, in minor units; 0 = free.",
            params=pricing,
        ),
        AgentExtension(
            uri=AGENT_EXTENSION,
            description="The meshwright agent id, cancellation support and card metadata.",
            params=agent,
        ),
    ]


def card_json(card: AgentCard) -> dict[str, Any]:
    """The JSON object a client fetches at ``AGENT_CARD_PATH`` (a2a-sdk's serializer:
    camelCase per the spec, plus the fields 0.3 clients read)."""
    return agent_card_to_dict(card)


def _params(card: AgentCard, uri: str) -> Mapping[str, Any]:
    for ext in card.capabilities.extensions:
        if ext.uri == uri:
            return json_format.MessageToDict(ext.params)
    return {}


def prices(card: AgentCard) -> dict[str, int]:
    """Each skill's price from ``PRICING_EXTENSION`` (empty: the card does not say)."""
    return {k: int(v) for k, v in _params(card, PRICING_EXTENSION).items()}


def agent_id_of(card: AgentCard) -> str:
    """The meshwright agent id in ``AGENT_EXTENSION`` ("" if none)."""
    return str(_params(card, AGENT_EXTENSION).get("agent_id", ""))


def a2a_url(card: AgentCard) -> str:
    """Where A2A calls to ``card``'s agent go: its first interface's URL ("" if none)."""
    return card.supported_interfaces[0].url if card.supported_interfaces else ""


__all__ = [
    "AGENT_CARD_PATH",
    "UNVERSIONED",
    "AGENT_EXTENSION",
    "BEARER_SCHEME",
    "MODES",
    "PRICING_EXTENSION",
    "a2a_card",
    "a2a_url",
    "agent_id_of",
    "card_json",
    "prices",
]

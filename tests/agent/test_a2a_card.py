"""Our agent card mapped onto an A2A card, and the JSON a client fetches."""

from __future__ import annotations

import pytest
from a2a.types import AgentCard as A2ACard
from google.protobuf import json_format

from meshwright.agent.a2a.card import (
    AGENT_CARD_PATH,
    AGENT_EXTENSION,
    PRICING_EXTENSION,
    a2a_card,
    a2a_url,
    agent_id_of,
    card_json,
    prices,
)
from meshwright.agent.v1 import agent_pb2

pytestmark = pytest.mark.timeout(30)


def ours(*, streaming: bool = True) -> agent_pb2.AgentCard:
    return agent_pb2.AgentCard(
        name="text-tools",
        description="Text utilities",
        version="1.2.0",
        skills=[
            agent_pb2.AgentSkill(
                id="text.upper",
                name="Upper",
                description="Upper-cases text",
                tags=["text", "case"],
                examples=['{"text": "hi"}'],
                price=0,
            ),
            agent_pb2.AgentSkill(id="text.summarize", price=25),
        ],
        capabilities=agent_pb2.AgentCapabilities(streaming=streaming, cancellation=True),
        metadata={"owner": "team-a"},
    )


def test_fields_map_one_to_one() -> None:
    card = a2a_card(ours(), url="http://h:1/", auth=False, agent_id="agent-7")
    assert (card.name, card.description, card.version) == ("text-tools", "Text utilities", "1.2.0")
    upper = card.skills[0]
    assert (upper.id, upper.name, upper.description) == ("text.upper", "Upper", "Upper-cases text")
    assert list(upper.tags) == ["text", "case"]
    assert list(upper.examples) == ['{"text": "hi"}']
    assert list(card.default_input_modes) == ["application/json", "text/plain"]
    assert list(card.default_output_modes) == ["application/json", "text/plain"]
    assert a2a_url(card) == "http://h:1/"
    assert card.supported_interfaces[0].protocol_binding == "JSONRPC"
    assert card.supported_interfaces[0].protocol_version == "1.0"


def test_empty_description_and_tags_are_filled_as_the_spec_requires() -> None:
    skill = a2a_card(ours(), url="http://h:1/", auth=False).skills[1]
    assert skill.name == "text.summarize"
    assert skill.description == "text.summarize"
    assert list(skill.tags) == ["text"]


def test_prices_agent_id_and_metadata_live_in_extensions() -> None:
    card = a2a_card(ours(), url="http://h:1/", auth=False, agent_id="agent-7")
    assert prices(card) == {"text.upper": 0, "text.summarize": 25}
    assert agent_id_of(card) == "agent-7"
    ext = {e.uri: json_format.MessageToDict(e.params) for e in card.capabilities.extensions}
    assert ext[AGENT_EXTENSION]["metadata"] == {"owner": "team-a"}
    assert ext[AGENT_EXTENSION]["cancellation"] is True
    assert PRICING_EXTENSION in ext


def test_streaming_capability_follows_ours() -> None:
    assert a2a_card(ours(streaming=True), url="u", auth=False).capabilities.streaming
    assert not a2a_card(ours(streaming=False), url="u", auth=False).capabilities.streaming


def test_auth_declares_a_bearer_scheme_and_requires_it() -> None:
    assert not a2a_card(ours(), url="u", auth=False).security_schemes
    card = a2a_card(ours(), url="u", auth=True)
    scheme = card.security_schemes["bearer"].http_auth_security_scheme
    assert scheme.scheme.lower() == "bearer"
    assert [list(r.schemes) for r in card.security_requirements] == [["bearer"]]


def test_preferred_transport_names_the_binding() -> None:
    card = a2a_card(ours(), url="u", auth=False, preferred_transport="HTTP+JSON")
    assert card.supported_interfaces[0].protocol_binding == "HTTP+JSON"


def test_card_json_is_camel_case_and_parses_back() -> None:
    card = a2a_card(ours(), url="http://h:1/", auth=True, agent_id="a")
    doc = card_json(card)
    assert doc["supportedInterfaces"][0]["url"] == "http://h:1/"
    assert doc["defaultInputModes"] == ["application/json", "text/plain"]
    assert "securitySchemes" in doc
    back = json_format.ParseDict(doc, A2ACard(), ignore_unknown_fields=True)
    assert back == card


def test_well_known_path() -> None:
    assert AGENT_CARD_PATH == "/.well-known/agent-card.json"


def test_a_card_without_a_version_states_the_unversioned_one() -> None:
    from meshwright.agent.a2a.card import UNVERSIONED

    card = agent_pb2.AgentCard(name="bare", skills=[agent_pb2.AgentSkill(id="x.y", name="Y")])
    assert a2a_card(card, url="http://h/", auth=False).version == UNVERSIONED == "0.0.0"

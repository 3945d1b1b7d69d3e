"""ListAgents: filters, ordering and paging."""

from __future__ import annotations

import pytest

from meshwright.mesh import InvalidArgument, ServiceClient
from meshwright.registry import Registry
from meshwright.registry.v1 import registry_pb2
from tests.registry.conftest import card, register_request

ACTIVE = registry_pb2.AGENT_STATE_ACTIVE
DRAINING = registry_pb2.AGENT_STATE_DRAINING


async def _ids(client: ServiceClient, **filters: object) -> list[str]:
    reply = await client.call("ListAgents", registry_pb2.ListAgentsRequest(**filters))  # type: ignore[arg-type]
    assert reply.next_page_token == ""
    return [a.agent_id for a in reply.agents]


async def test_filters(client: ServiceClient) -> None:
    await client.call("RegisterAgent", register_request("c-img", "image.resize"))
    await client.call("RegisterAgent", register_request("a-words", "text.wordcount", tags=["gpu"]))
    await client.call(
        "RegisterAgent",
        register_request(
            "b-sum", card=card("sum", "text.summarize", "text.wordcount", skill_tags=["llm"])
        ),
    )
    drained = (await client.call("RegisterAgent", register_request("d-img", "image.resize"))).agent
    await client.call(
        "Heartbeat",
        registry_pb2.HeartbeatRequest(agent_id="d-img", lease_id=drained.lease_id, draining=True),
    )

    assert await _ids(client) == ["a-words", "b-sum", "c-img", "d-img"]
    assert await _ids(client, skill="text.wordcount") == ["a-words", "b-sum"]
    assert await _ids(client, skill="Text.WordCount") == ["a-words", "b-sum"]
    assert await _ids(client, skill="text") == []
    assert await _ids(client, tag="gpu") == ["a-words"]
    assert await _ids(client, tag="llm") == ["b-sum"]  # a skill's tag
    assert await _ids(client, state=DRAINING) == ["d-img"]
    assert await _ids(client, skill="image.resize", state=ACTIVE) == ["c-img"]
    assert await _ids(client, skill="text.wordcount", tag="llm", state=ACTIVE) == ["b-sum"]


@pytest.mark.parametrize("skill", ["", "text.wordcount"])
async def test_pages_cover_every_agent_once_in_order(client: ServiceClient, skill: str) -> None:
    ids = [f"agent-{i:02d}" for i in range(25)]
    for agent_id in reversed(ids):
        await client.call("RegisterAgent", register_request(agent_id))
    await client.call("RegisterAgent", register_request("agent-x", "image.resize"))
    expected = ids if skill else [*ids, "agent-x"]

    seen: list[str] = []
    sizes: list[int] = []
    token = ""
    while True:
        reply = await client.call(
            "ListAgents",
            registry_pb2.ListAgentsRequest(skill=skill, page_size=10, page_token=token),
        )
        seen.extend(a.agent_id for a in reply.agents)
        sizes.append(len(reply.agents))
        token = reply.next_page_token
        if not token:
            break
    assert seen == expected
    assert sizes == ([10, 10, 5] if skill else [10, 10, 6])


async def test_page_ends_exactly_on_the_last_agent(client: ServiceClient) -> None:
    for i in range(4):
        await client.call("RegisterAgent", register_request(f"a{i}"))
    first = await client.call("ListAgents", registry_pb2.ListAgentsRequest(page_size=2))
    second = await client.call(
        "ListAgents", registry_pb2.ListAgentsRequest(page_size=2, page_token=first.next_page_token)
    )
    assert [a.agent_id for a in second.agents] == ["a2", "a3"]
    assert second.next_page_token == ""


async def test_bad_list_requests(client: ServiceClient) -> None:
    with pytest.raises(InvalidArgument) as err:
        await client.call("ListAgents", registry_pb2.ListAgentsRequest(page_token="not a token!"))
    assert [v.field for v in err.value.violations] == ["page_token"]

    with pytest.raises(InvalidArgument) as err:
        await client.call(
            "ListAgents",
            registry_pb2.ListAgentsRequest(page_size=-1, page_token="bm9wZQ"),
        )
    assert [v.field for v in err.value.violations] == ["page_size", "page_token"]
    # An enum value the contract does not define is refused by the pipeline's
    # input check, before the registry looks at anything else.
    with pytest.raises(InvalidArgument) as err:
        await client.call("ListAgents", registry_pb2.ListAgentsRequest(state=42))  # type: ignore[arg-type]
    assert [v.field for v in err.value.violations] == ["state"]


async def test_page_size_default_and_cap(client: ServiceClient, registry: Registry) -> None:
    one = card("bulk", "bulk.job")
    for i in range(1001):
        await registry.register(one, "h:1", agent_id=f"bulk-{i:04d}")
    default = await client.call("ListAgents", registry_pb2.ListAgentsRequest())
    assert len(default.agents) == 100 and default.next_page_token
    capped = await client.call("ListAgents", registry_pb2.ListAgentsRequest(page_size=5000))
    assert len(capped.agents) == 1000 and capped.next_page_token
    rest = await client.call(
        "ListAgents",
        registry_pb2.ListAgentsRequest(page_size=5000, page_token=capped.next_page_token),
    )
    assert [a.agent_id for a in rest.agents] == ["bulk-1000"] and rest.next_page_token == ""


async def test_in_process_reads(registry: Registry) -> None:
    await registry.register(card("w", "text.wordcount"), "h:1", agent_id="w1")
    await registry.register(card("i", "image.resize"), "h:2", agent_id="i1")
    agents = await registry.list_agents(skill="text.wordcount", state=ACTIVE)
    assert [a.agent_id for a in agents] == ["w1"]
    assert [a.agent_id for a in await registry.list_agents()] == ["i1", "w1"]

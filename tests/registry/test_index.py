"""RecordIndex: listings by skill come out in id order, honour `after`, and follow
every put/replace/remove (a model check against a plain dict of records)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from meshwright.agent.v1 import agent_pb2
from meshwright.registry._index import RecordIndex
from meshwright.registry.records import AgentQuery, AgentRecord

SKILLS = ("a", "b", "c")
IDS = [f"agent-{i:02d}" for i in range(12)]


def record(agent_id: str, skills: frozenset[str]) -> AgentRecord:
    return AgentRecord(
        agent_id=agent_id,
        card=agent_pb2.AgentCard(name=agent_id),
        endpoint="127.0.0.1:1",
        tags=(),
        capacity=0,
        payout_account_id="",
        lease_id="l",
        lease_ttl_s=10.0,
        lease_expire_s=1e12,
        register_s=0.0,
        skill_keys=skills,
    )


def ids(index: RecordIndex, **query: object) -> list[str]:
    return [r.agent_id for r in index.select(AgentQuery(now=0.0, **query))]  # type: ignore[arg-type]


def test_skill_listing_is_in_id_order_and_pages_after_a_key() -> None:
    index = RecordIndex()
    for agent_id in ("c", "a", "d", "b"):
        index.put(record(agent_id, frozenset({"x"})))
    index.put(record("e", frozenset({"y"})))
    assert ids(index, skill="x") == ["a", "b", "c", "d"]
    assert ids(index, skill="x", after="b") == ["c", "d"]
    assert ids(index, skill="x", after="d") == []
    assert ids(index, skill="x", after="b", limit=1) == ["c"]
    assert ids(index, skill="nobody") == []


def test_a_changed_skill_set_moves_the_record_and_removal_drops_it() -> None:
    index = RecordIndex()
    index.put(record("a", frozenset({"x"})))
    index.put(record("b", frozenset({"x"})))
    index.put(record("a", frozenset({"y"})))
    assert ids(index, skill="x") == ["b"]
    assert ids(index, skill="y") == ["a"]
    index.remove("a")
    assert ids(index, skill="y") == []
    assert "y" not in index._by_skill  # an emptied skill leaves no entry behind
    assert index.remove("a") is None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(IDS),
            st.one_of(st.none(), st.frozensets(st.sampled_from(SKILLS))),
        ),
        max_size=40,
    ),
    st.sampled_from(SKILLS),
    st.one_of(st.none(), st.sampled_from(IDS)),
)
def test_skill_listings_match_a_model(
    ops: list[tuple[str, frozenset[str] | None]], skill: str, after: str | None
) -> None:
    index = RecordIndex()
    model: dict[str, frozenset[str]] = {}
    for agent_id, skills in ops:
        if skills is None:
            index.remove(agent_id)
            model.pop(agent_id, None)
        else:
            index.put(record(agent_id, skills))
            model[agent_id] = skills
    expected = sorted(i for i, s in model.items() if skill in s and (after is None or i > after))
    assert ids(index, skill=skill, after=after) == expected
    assert ids(index) == sorted(model)

"""What a backend stores and reports: registrations, queries, changes.

Records are immutable: every change makes a new one, so a record handed to a
watcher or a reader never changes under it, and a backend can store it as one
value (a Consul service entry, a Redis hash) and swap it atomically.
"""

from __future__ import annotations

from dataclasses import dataclass

from meshwright.agent.v1 import agent_pb2
from meshwright.registry.v1 import registry_pb2

ACTIVE = registry_pb2.AGENT_STATE_ACTIVE
DRAINING = registry_pb2.AGENT_STATE_DRAINING
INACTIVE = registry_pb2.AGENT_STATE_INACTIVE
ANY_STATE = registry_pb2.AGENT_STATE_UNSPECIFIED

ADDED = registry_pb2.AGENT_EVENT_TYPE_ADDED
UPDATED = registry_pb2.AGENT_EVENT_TYPE_UPDATED
REMOVED = registry_pb2.AGENT_EVENT_TYPE_REMOVED


def skill_key(skill_id: str) -> str:
    """The form skill ids are compared in: ids match case-insensitively."""
    return skill_id.lower()


@dataclass(frozen=True, slots=True)
class AgentRecord:
    """One registration as stored. Times are epoch seconds of the registry's clock."""

    agent_id: str
    card: agent_pb2.AgentCard
    """Owned by the record and never mutated: copy before changing."""
    endpoint: str
    tags: tuple[str, ...]
    capacity: int
    payout_account_id: str
    lease_id: str
    lease_ttl_s: float
    lease_expire_s: float
    register_s: float
    last_heartbeat_s: float | None = None
    """None until the first heartbeat."""
    load: int = 0
    draining: bool = False
    lapsed: bool = False
    """The sweeper has announced the lapse (so it announces it once)."""
    skill_keys: frozenset[str] = frozenset()
    """``skill_key`` of every card skill id, for the skill filter."""
    tag_keys: frozenset[str] = frozenset()
    """Registration tags and every skill's tags, for the tag filter."""

    @classmethod
    def create(
        cls,
        *,
        agent_id: str,
        card: agent_pb2.AgentCard,
        endpoint: str,
        tags: tuple[str, ...],
        capacity: int,
        payout_account_id: str,
        lease_id: str,
        lease_ttl_s: float,
        now: float,
    ) -> AgentRecord:
        """A fresh registration whose lease starts at ``now``."""
        tag_keys = set(tags)
        for skill in card.skills:
            tag_keys.update(skill.tags)
        return cls(
            agent_id=agent_id,
            card=card,
            endpoint=endpoint,
            tags=tags,
            capacity=capacity,
            payout_account_id=payout_account_id,
            lease_id=lease_id,
            lease_ttl_s=lease_ttl_s,
            lease_expire_s=now + lease_ttl_s,
            register_s=now,
            skill_keys=frozenset(skill_key(s.id) for s in card.skills),
            tag_keys=frozenset(tag_keys),
        )

    def state_at(self, now: float) -> registry_pb2.AgentState:
        """Liveness at ``now``: exact, whether or not the sweeper has run since."""
        if now >= self.lease_expire_s:
            return INACTIVE
        return DRAINING if self.draining else ACTIVE

    def matches(self, skill: str = "", tag: str = "") -> bool:
        """Whether the record passes a skill filter (a ``skill_key``) and a tag filter."""
        return (not skill or skill in self.skill_keys) and (not tag or tag in self.tag_keys)


@dataclass(frozen=True, slots=True)
class AgentQuery:
    """Which records ``RegistryBackend.list`` returns, in agent_id order."""

    now: float
    """The time states are judged at."""
    skill: str = ""
    """Only records offering this ``skill_key``; empty for any."""
    tag: str = ""
    """Only records with this tag (registration or skill tags); empty for any."""
    state: registry_pb2.AgentState = ANY_STATE
    """Only records in this state at ``now``; UNSPECIFIED for any."""
    after: str | None = None
    """Only agent ids greater than this (the page token's key)."""
    limit: int | None = None
    """At most this many records; every match when None."""


@dataclass(frozen=True, slots=True)
class Listing:
    """Records matching a query and the revision they were read at."""

    records: list[AgentRecord]
    revision: int
    """Every change with a greater revision happened after this read."""


@dataclass(frozen=True, slots=True)
class Change:
    """One applied state change, as the backend reports it to listeners."""

    kind: registry_pb2.AgentEventType
    """ADDED (new agent_id), UPDATED (re-registered, renewed, lapsed) or REMOVED."""
    record: AgentRecord
    """The record after the change; for REMOVED, as it was when removed."""
    previous: AgentRecord | None
    """The record before an UPDATED change (filters may stop or start matching)."""
    revision: int
    """Strictly increasing per backend, in the order changes were applied."""
    time_s: float
    """When the change was applied; states in events are judged at this time."""


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What one sweep did."""

    lapsed: list[AgentRecord]
    """Records newly marked lapsed (their lease expired since the last sweep)."""
    removed: list[AgentRecord]
    """Records removed after staying lapsed past the deregister-after period."""

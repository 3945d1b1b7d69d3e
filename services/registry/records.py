"""What a backend stores and reports: registrations, queries, changes.

Records are immutable: every change makes a new one, so a record handed to a
watcher or a reader never changes under it, and a backend can store it as one
value (a Consul service entry, a Redis hash) and swap it atomically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from meshwright.agent.v1 import agent_pb2
from meshwright.registry.v1 import registry_pb2

ACTIVE = registry_pb2.AGENT_STATE_ACTIVE
"""Running: the lifecycle's RUNNING (the contract keeps the name ACTIVE)."""
RUNNING = ACTIVE
DRAINING = registry_pb2.AGENT_STATE_DRAINING
INACTIVE = registry_pb2.AGENT_STATE_INACTIVE
STARTING = registry_pb2.AGENT_STATE_STARTING
ERROR = registry_pb2.AGENT_STATE_ERROR
STOPPED = registry_pb2.AGENT_STATE_STOPPED
ANY_STATE = registry_pb2.AGENT_STATE_UNSPECIFIED
KNOWN_STATES = frozenset({ACTIVE, DRAINING, INACTIVE, STARTING, ERROR, STOPPED})

LEASE_EXPIRED = "lease expired"

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
    healthy: bool | None = True
    """The last verdict of the active health check: None until the first one (STARTING);
    True for registries that do not check (a lease is all they judge by)."""
    error: str = ""
    """A failure the agent or its supervisor reported (ERROR while non-empty)."""
    health_detail: str = ""
    """Reduced quality the agent reported (e.g. "DEGRADED: ..."): shown, never judged by:
    the agent keeps its state and is still offered work."""
    stopped_s: float | None = None
    """When it deregistered gracefully (STOPPED since)."""
    status_s: float = 0.0
    """When the stored part of its state last changed (registration, health verdict,
    error, draining, stop); a lapse is judged from the lease instead."""
    status_reason: str = ""
    """Why it is in the stored part of its state (e.g. the health check's output)."""
    skill_keys: frozenset[str] = frozenset()
    """``skill_key`` of every card skill id, for the skill filter."""
    tag_keys: frozenset[str] = frozenset()
    """Registration tags and every skill's tags, for the tag filter."""
    messages: dict[Any, Any] = field(
        default_factory=dict, init=False, repr=False, compare=False, hash=False
    )
    """``Agent`` messages built from this record, by how they were judged (see
    ``_convert.shared_agent``); not copied by ``dataclasses.replace``, so a changed
    record starts empty."""

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
        checked: bool = False,
    ) -> AgentRecord:
        """A fresh registration whose lease starts at ``now``.

        ``checked``: the registry health-checks agents, so it starts STARTING
        (not yet healthy) instead of ACTIVE.
        """
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
            healthy=None if checked else True,
            status_s=now,
            status_reason="waiting for the first health check" if checked else "",
            skill_keys=frozenset(skill_key(s.id) for s in card.skills),
            tag_keys=frozenset(tag_keys),
        )

    def state_at(self, now: float) -> registry_pb2.AgentState:
        """The lifecycle state at ``now``: exact, whether or not the sweeper has run since."""
        return self.status_at(now)[0]

    def status_at(self, now: float) -> tuple[registry_pb2.AgentState, float, str]:
        """(state, since when, why) at ``now``.

        In order: a graceful stop, a reported failure, a lapsed lease, a failing
        health check, no health verdict yet, draining; else running.
        """
        if self.stopped_s is not None:
            return STOPPED, self.stopped_s, self.status_reason
        if self.error:
            return ERROR, self.status_s, self.error
        if now >= self.lease_expire_s:
            return INACTIVE, max(self.lease_expire_s, self.status_s), LEASE_EXPIRED
        if self.healthy is False:
            return INACTIVE, self.status_s, self.status_reason
        if self.healthy is None:
            return STARTING, self.status_s, self.status_reason
        if self.draining:
            return DRAINING, self.status_s, self.status_reason
        return ACTIVE, self.status_s, self.status_reason

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
    stopped: bool = True
    """Include STOPPED records (discovery reads that want only live agents say False)."""
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
    """Records removed after staying lapsed past the deregister-after period, or
    STOPPED past the stopped-retention period."""

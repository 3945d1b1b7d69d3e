"""Records to contract messages."""

from __future__ import annotations

from google.protobuf import duration_pb2

from meshwright.mesh.timeutil import timestamp
from meshwright.registry.records import AgentRecord
from meshwright.registry.v1 import registry_pb2


def to_agent(record: AgentRecord, now: float) -> registry_pb2.Agent:
    """The ``Agent`` message of a record, its state judged at ``now``."""
    state, since, reason = record.status_at(now)
    ttl = duration_pb2.Duration()
    ttl.FromNanoseconds(round(record.lease_ttl_s * 1e9))
    agent = registry_pb2.Agent(
        agent_id=record.agent_id,
        card=record.card,
        endpoint=record.endpoint,
        state=state,
        tags=record.tags,
        capacity=record.capacity,
        load=record.load,
        lease_id=record.lease_id,
        lease_ttl=ttl,
        lease_expire_time=timestamp(record.lease_expire_s),
        register_time=timestamp(record.register_s),
        payout_account_id=record.payout_account_id,
        state_change_time=timestamp(since),
        state_reason=reason,
        health_detail=record.health_detail,
    )
    if record.last_heartbeat_s is not None:
        agent.last_heartbeat_time.CopyFrom(timestamp(record.last_heartbeat_s))
    return agent


def shared_agent(record: AgentRecord, now: float, *, lease: bool) -> registry_pb2.Agent:
    """The ``Agent`` message of a record judged at ``now``, with or without its lease id,
    built once per (state, since, reason) and kept on the record: READ-ONLY, shared by
    every reader (responses copy it). Listings under heartbeat load read each record
    many times between two changes of it; building the message is most of a listing's
    cost."""
    key = (*record.status_at(now), lease)
    agent = record.messages.get(key)
    if agent is None:
        agent = to_agent(record, now)
        if not lease:
            agent.lease_id = ""
        if len(record.messages) >= 8:  # a record lives until its next change: a few states
            record.messages.clear()
        record.messages[key] = agent
    return agent

"""Request checks that report every bad field at once."""

from __future__ import annotations

import re
from collections.abc import Sequence

from meshwright.agent.v1 import agent_pb2
from meshwright.mesh.errors import FieldViolation
from meshwright.mesh.validation import check_id
from meshwright.registry.records import skill_key
from meshwright.registry.v1 import registry_pb2

SKILL_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$", re.IGNORECASE)
MIN_LEASE_TTL_S = 1.0
MAX_LEASE_TTL_S = 3600.0


def registration_violations(
    *,
    agent_id: str,
    card: agent_pb2.AgentCard | None,
    endpoint: str,
    tags: Sequence[str],
    capacity: int,
    lease_ttl_s: float | None,
    payout_account_id: str,
) -> list[FieldViolation]:
    """Everything wrong with a registration."""
    out = check_id(agent_id, "agent_id", required=False)
    if card is None:
        out.append(FieldViolation("card", "is required"))
    else:
        out.extend(card_violations(card, "card"))
    out.extend(endpoint_violations(endpoint, "endpoint"))
    out.extend(
        FieldViolation(f"tags[{i}]", "must not be empty") for i, tag in enumerate(tags) if not tag
    )
    if capacity < 0:
        out.append(FieldViolation("capacity", "must not be negative"))
    if lease_ttl_s is not None and not MIN_LEASE_TTL_S <= lease_ttl_s <= MAX_LEASE_TTL_S:
        out.append(FieldViolation("lease_ttl", "must be between 1s and 1h"))
    if payout_account_id:
        out.extend(check_id(payout_account_id, "payout_account_id"))
    return out


def card_violations(card: agent_pb2.AgentCard, field: str) -> list[FieldViolation]:
    """Everything wrong with an agent card: a name, skills with unique valid ids."""
    out: list[FieldViolation] = []
    if not card.name.strip():
        out.append(FieldViolation(f"{field}.name", "is required"))
    if not card.skills:
        out.append(FieldViolation(f"{field}.skills", "must list at least one skill"))
    first_seen: dict[str, int] = {}
    for i, skill in enumerate(card.skills):
        path = f"{field}.skills[{i}]"
        if not skill.id:
            out.append(FieldViolation(f"{path}.id", "is required"))
        elif not SKILL_ID_PATTERN.fullmatch(skill.id):
            out.append(
                FieldViolation(
                    f"{path}.id",
                    "must be 1-128 letters, digits, '.', '_' or '-', starting with a letter "
                    "or digit",
                )
            )
        else:
            key = skill_key(skill.id)
            if key in first_seen:
                out.append(
                    FieldViolation(f"{path}.id", f"duplicates {field}.skills[{first_seen[key]}].id")
                )
            else:
                first_seen[key] = i
        if skill.price < 0:
            out.append(FieldViolation(f"{path}.price", "must not be negative"))
    return out


def endpoint_violations(endpoint: str, field: str) -> list[FieldViolation]:
    """Problems with a "host:port" address."""
    if not endpoint:
        return [FieldViolation(field, "is required")]
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or any(c.isspace() for c in endpoint):
        return [FieldViolation(field, 'must be "host:port"')]
    if not (port.isascii() and port.isdigit() and 1 <= int(port) <= 65535):
        return [FieldViolation(field, "port must be a number from 1 to 65535")]
    return []


MAX_REASON = 1024
"""Characters of a reported error or failure reason."""


def heartbeat_violations(
    agent_id: str, lease_id: str, load: int, error: str = "", health_detail: str = ""
) -> list[FieldViolation]:
    """Everything wrong with a heartbeat."""
    out = check_id(agent_id, "agent_id")
    if not lease_id:
        out.append(FieldViolation("lease_id", "is required"))
    if load < 0:
        out.append(FieldViolation("load", "must not be negative"))
    if len(error) > MAX_REASON:
        out.append(FieldViolation("error", f"must be at most {MAX_REASON} characters"))
    if len(health_detail) > MAX_REASON:
        out.append(FieldViolation("health_detail", f"must be at most {MAX_REASON} characters"))
    return out


def failure_violations(agent_id: str, reason: str) -> list[FieldViolation]:
    """Everything wrong with a failure report."""
    out = check_id(agent_id, "agent_id")
    if not reason.strip():
        out.append(FieldViolation("reason", "is required"))
    elif len(reason) > MAX_REASON:
        out.append(FieldViolation("reason", f"must be at most {MAX_REASON} characters"))
    return out


def revision_violations(revision: int) -> list[FieldViolation]:
    """A watch's ``after_revision`` below zero."""
    if revision < 0:
        return [FieldViolation("after_revision", "must not be negative")]
    return []


def state_violations(state: int, field: str = "state") -> list[FieldViolation]:
    """An AgentState filter outside the enum (proto3 enums are open)."""
    if state not in registry_pb2.AgentState.values():
        return [FieldViolation(field, f"unknown agent state {state}")]
    return []

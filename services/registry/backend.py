"""The storage seam of the registry.

Every state change is ONE backend operation that checks and applies at once
(in memory: no await between the two; Redis: one Lua script or MULTI; Consul:
a check-and-set on the service's ModifyIndex), so two registry replicas — or
two coroutines — never interleave a heartbeat with a re-registration.

Change notifications come from the backend, not from the registry that made
the change, so a watcher sees every change however many registry replicas
share the backend: the memory backend calls listeners as it applies a change;
a Consul backend would turn blocking queries on the catalog into changes, a
Redis one would read a stream its scripts append to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from meshwright.registry.records import AgentQuery, AgentRecord, Change, Listing, SweepResult

ChangeListener = Callable[[Change], None]
"""Called once per applied change, in revision order; must not block or raise."""


class RegistryBackend(Protocol):
    """Stores registrations and reports their changes."""

    async def put(self, record: AgentRecord, *, now: float) -> AgentRecord | None:
        """Add or replace the record with ``record.agent_id``; returns the replaced one.

        Reports ADDED, or UPDATED when it replaced a registration.
        """
        ...

    async def renew(
        self, agent_id: str, lease_id: str, *, now: float, load: int, draining: bool
    ) -> AgentRecord:
        """Extend the lease by its ttl from ``now`` and record load and draining.

        Raises ``AgentNotFound`` for an unknown agent and ``LeaseMismatch`` if
        ``lease_id`` is not the current lease. Reports UPDATED.
        """
        ...

    async def delete(self, agent_id: str, *, now: float) -> AgentRecord:
        """Remove a record; returns it. Raises ``AgentNotFound``. Reports REMOVED."""
        ...

    async def get(self, agent_id: str) -> AgentRecord | None:
        """The record of one agent, if registered."""
        ...

    async def list(self, query: AgentQuery) -> Listing:
        """Records matching ``query`` in agent_id order, read at one revision."""
        ...

    async def sweep(self, *, now: float, deregister_after_s: float) -> SweepResult:
        """Mark records whose lease expired as lapsed (reports UPDATED) and remove
        those whose lease expired more than ``deregister_after_s`` ago (reports
        REMOVED) — Consul's DeregisterCriticalServiceAfter. A backend whose
        server does this itself (Consul TTL checks) may only report what it did.
        """
        ...

    def subscribe(self, listener: ChangeListener) -> Callable[[], None]:
        """Call ``listener`` for every later change; returns the unsubscribe function."""
        ...

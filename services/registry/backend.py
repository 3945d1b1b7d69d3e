"""The storage seam of the registry.

Every state change is ONE backend operation that checks and applies at once
(in memory: no await between the two; Consul: one agent API call whose
outcome says whether it applied, e.g. a TTL check of the current lease), so
two registry replicas — or two coroutines — never interleave a heartbeat with
a re-registration.

Change notifications come from the backend, not from the registry that made
the change, so a watcher sees every change however many registry replicas
share the backend: the memory backend calls listeners as it applies a change;
the Consul backend turns blocking queries on Consul's health endpoint into
changes. Each change carries a revision; the backend keeps the recent ones so
a watch can resume after a disconnect (``changes_since``).
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Protocol

from meshwright.registry.records import AgentQuery, AgentRecord, Change, Listing, SweepResult
from meshwright.registry.v1 import registry_pb2

ChangeListener = Callable[[Change], None]
"""Called once per applied change, in revision order; must not block or raise."""


class RegistryBackend(Protocol):
    """Stores registrations and reports their changes."""

    checks_health: bool
    """True when the backend's server health-checks agents itself (Consul's GRPC check);
    the registry then runs no prober of its own."""

    async def put(self, record: AgentRecord, *, now: float) -> AgentRecord | None:
        """Add or replace the record with ``record.agent_id``; returns the replaced one.

        Reports ADDED, or UPDATED when it replaced a registration.
        """
        ...

    async def renew(
        self,
        agent_id: str,
        lease_id: str,
        *,
        now: float,
        load: int,
        draining: bool,
        error: str = "",
        health_detail: str = "",
    ) -> AgentRecord:
        """Extend the lease by its ttl from ``now``; record load, draining, error and
        health detail (the last replaces the previous one; empty clears it).

        Raises ``AgentNotFound`` for an unknown agent, ``AgentStopped`` for a
        stopped one and ``LeaseMismatch`` if ``lease_id`` is not the current
        lease. Reports UPDATED.
        """
        ...

    async def report_failure(self, agent_id: str, reason: str, *, now: float) -> AgentRecord:
        """Mark the agent ERROR with ``reason``. Raises ``AgentNotFound``/``AgentStopped``."""
        ...

    async def set_health(
        self, agent_id: str, lease_id: str, *, healthy: bool, reason: str, now: float
    ) -> AgentRecord | None:
        """Record a health-check verdict on the registration holding ``lease_id``.

        Returns the updated record, or None when the agent is gone, stopped or
        registered again meanwhile (the verdict was about another process).
        Reports UPDATED only when the verdict or reason changed. Backends that
        check health themselves (``checks_health``) need not support it.
        """
        ...

    async def stop(self, agent_id: str, *, now: float, retain: bool) -> AgentRecord:
        """Deregister gracefully: STOPPED (reports UPDATED) when ``retain``, else
        removed at once (reports REMOVED). Returns the record as it was before.

        Raises ``AgentNotFound``, or ``AgentStopped`` when it is stopped already.
        """
        ...

    async def get(self, agent_id: str) -> AgentRecord | None:
        """The record of one agent, if registered (STOPPED ones included)."""
        ...

    async def list(self, query: AgentQuery) -> Listing:
        """Records matching ``query`` in agent_id order, read at one revision."""
        ...

    async def sweep(
        self, *, now: float, deregister_after_s: float, stopped_retention_s: float
    ) -> SweepResult:
        """Mark records whose lease expired as lapsed (reports UPDATED), remove those
        whose lease expired more than ``deregister_after_s`` ago and STOPPED ones
        older than ``stopped_retention_s`` (reports REMOVED). A backend whose server
        expires leases itself (Consul TTL checks) does only what the server does not.
        """
        ...

    def changes_since(self, revision: int) -> builtins.list[Change]:
        """Every change after ``revision``, oldest first, from the kept history.

        Raises ``HistoryTrimmed`` when changes after ``revision`` are no longer
        kept, or ``revision`` is not one this backend's history can vouch for
        (from before a restart, or ahead of it).
        """
        ...

    @property
    def revision(self) -> int:
        """The revision of the last change applied (or seen)."""
        ...

    def count_by_state(self, now: float) -> dict[registry_pb2.AgentState, int]:
        """How many agents are in each state at ``now`` (for metrics: no I/O)."""
        ...

    def subscribe(self, listener: ChangeListener) -> Callable[[], None]:
        """Call ``listener`` for every later change; returns the unsubscribe function."""
        ...

    async def start(self) -> None:
        """Connect and begin following changes (a no-op in memory)."""
        ...

    async def close(self) -> None:
        """Stop following and release connections."""
        ...

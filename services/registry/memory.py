"""The embedded backend: registrations in a dict, for one process.

Each operation runs without awaiting, so under asyncio it is atomic; listeners
are called inside it, so they see changes in the order they were applied.

Revisions start at the backend's creation time in microseconds and grow by one
per change, so a revision handed out before a restart is never mistaken for
one after it (it is older than anything the new history holds: the watch that
presents it is told to list again).
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable

from meshwright.registry._index import RecordIndex
from meshwright.registry.backend import ChangeListener
from meshwright.registry.errors import AgentNotFound, AgentStopped, HistoryTrimmed, LeaseMismatch
from meshwright.registry.records import (
    ADDED,
    REMOVED,
    UPDATED,
    AgentQuery,
    AgentRecord,
    Change,
    Listing,
    SweepResult,
)
from meshwright.registry.v1 import registry_pb2

log = logging.getLogger(__name__)

DEFAULT_HISTORY = 10_000
"""Changes kept for watches that resume (``changes_since``)."""


class MemoryRegistryBackend:
    """A ``RegistryBackend`` held in this process's memory."""

    checks_health = False

    def __init__(self, *, history_size: int = DEFAULT_HISTORY) -> None:
        """``history_size``: changes kept so a watch can resume after a disconnect."""
        if history_size < 1:
            raise ValueError("history_size must be at least 1")
        self._records = RecordIndex()
        self._base = time.time_ns() // 1000
        self._revision = self._base
        self._history: deque[Change] = deque(maxlen=history_size)
        self._listeners: list[ChangeListener] = []

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    @property
    def revision(self) -> int:
        return self._revision

    def count_by_state(self, now: float) -> dict[registry_pb2.AgentState, int]:
        return self._records.count_by_state(now)

    def changes_since(self, revision: int) -> list[Change]:
        if revision > self._revision:
            raise HistoryTrimmed(
                f"revision {revision} is ahead of the registry's {self._revision} "
                "(it restarted since?): list again, then watch",
                metadata={"revision": str(self._revision)},
            )
        oldest = self._history[0].revision if self._history else self._revision + 1
        if revision < self._base or revision < oldest - 1:
            raise HistoryTrimmed(
                f"the changes after revision {revision} are no longer kept (oldest kept: "
                f"{oldest}): list again, then watch",
                metadata={"oldest_revision": str(oldest)},
            )
        # Revisions are consecutive here, so the position is arithmetic.
        start = revision - oldest + 1
        return list(itertools.islice(self._history, max(0, start), None))

    async def put(self, record: AgentRecord, *, now: float) -> AgentRecord | None:
        previous = self._records.put(record)
        self._emit(ADDED if previous is None else UPDATED, record, previous, now)
        return previous

    def _live_record(self, agent_id: str) -> AgentRecord:
        current = self._records.get(agent_id)
        if current is None:
            raise AgentNotFound(f"agent {agent_id!r} is not registered")
        if current.stopped_s is not None:
            raise AgentStopped(
                f"agent {agent_id!r} deregistered; register again",
                metadata={"agent_id": agent_id},
            )
        return current

    def _replace(self, current: AgentRecord, changed: AgentRecord, now: float) -> AgentRecord:
        self._records.put(changed)
        self._emit(UPDATED, changed, current, now)
        return changed

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
        current = self._live_record(agent_id)
        if current.lease_id != lease_id:
            raise LeaseMismatch(
                f"lease {lease_id!r} is not the current lease of agent {agent_id!r}; "
                "register again",
                metadata={"agent_id": agent_id},
            )
        state_before = current.state_at(now)
        renewed = dataclasses.replace(
            current,
            lease_expire_s=now + current.lease_ttl_s,
            last_heartbeat_s=now,
            load=load,
            draining=draining,
            lapsed=False,
            error=error,
            health_detail=health_detail,
        )
        if renewed.state_at(now) != state_before:
            # A health verdict (or the wait for one) still explains the state; else nothing.
            keep = current.status_reason if renewed.healthy is not True else ""
            renewed = dataclasses.replace(renewed, status_s=now, status_reason=keep)
        return self._replace(current, renewed, now)

    async def report_failure(self, agent_id: str, reason: str, *, now: float) -> AgentRecord:
        current = self._live_record(agent_id)
        return self._replace(current, dataclasses.replace(current, error=reason, status_s=now), now)

    async def set_health(
        self, agent_id: str, lease_id: str, *, healthy: bool, reason: str, now: float
    ) -> AgentRecord | None:
        current = self._records.get(agent_id)
        if current is None or current.lease_id != lease_id or current.stopped_s is not None:
            return None
        if current.healthy is healthy and current.status_reason == reason:
            return current
        changed = dataclasses.replace(current, healthy=healthy, status_reason=reason)
        if changed.state_at(now) != current.state_at(now):
            changed = dataclasses.replace(changed, status_s=now)
        return self._replace(current, changed, now)

    async def stop(self, agent_id: str, *, now: float, retain: bool) -> AgentRecord:
        current = self._live_record(agent_id)
        if not retain:
            self._remove(current, now)
            return current
        self._replace(
            current,
            dataclasses.replace(
                current, stopped_s=now, status_s=now, status_reason="deregistered", load=0
            ),
            now,
        )
        return current

    async def get(self, agent_id: str) -> AgentRecord | None:
        return self._records.get(agent_id)

    async def list(self, query: AgentQuery) -> Listing:
        return Listing(records=self._records.select(query), revision=self._revision)

    async def sweep(
        self, *, now: float, deregister_after_s: float, stopped_retention_s: float
    ) -> SweepResult:
        lapsed: list[AgentRecord] = []
        removed: list[AgentRecord] = []
        for record in self._records.values():
            if record.stopped_s is not None:
                if now - record.stopped_s >= stopped_retention_s:
                    self._remove(record, now)
                    removed.append(record)
                continue
            if now < record.lease_expire_s:
                continue
            if now - record.lease_expire_s >= deregister_after_s:
                self._remove(record, now)
                removed.append(record)
            elif not record.lapsed:
                marked = dataclasses.replace(record, lapsed=True)
                self._records.put(marked)
                self._emit(UPDATED, marked, record, now)
                lapsed.append(marked)
        return SweepResult(lapsed=lapsed, removed=removed)

    def subscribe(self, listener: ChangeListener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _remove(self, record: AgentRecord, now: float) -> None:
        self._records.remove(record.agent_id)
        self._emit(REMOVED, record, None, now)

    def _emit(
        self,
        kind: registry_pb2.AgentEventType,
        record: AgentRecord,
        previous: AgentRecord | None,
        now: float,
    ) -> None:
        self._revision += 1
        change = Change(
            kind=kind, record=record, previous=previous, revision=self._revision, time_s=now
        )
        self._history.append(change)
        for listener in tuple(self._listeners):
            try:
                listener(change)
            except Exception:  # one broken listener must not undo an applied change
                log.exception("registry change listener failed")

"""The embedded backend: registrations in a dict, for one process.

Each operation runs without awaiting, so under asyncio it is atomic; listeners
are called inside it, so they see changes in the order they were applied.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import logging
from collections.abc import Callable, Iterable

from meshwright.registry.backend import ChangeListener
from meshwright.registry.errors import AgentNotFound, LeaseMismatch
from meshwright.registry.records import (
    ADDED,
    ANY_STATE,
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


class MemoryRegistryBackend:
    """A ``RegistryBackend`` held in this process's memory."""

    def __init__(self) -> None:
        self._records: dict[str, AgentRecord] = {}
        # Sorted ids make pages a bisect instead of a sort per call.
        self._ids: list[str] = []
        # skill_key -> agent ids: the scheduler's "who offers skill X" is the hot read.
        self._by_skill: dict[str, set[str]] = {}
        self._revision = 0
        self._listeners: list[ChangeListener] = []

    async def put(self, record: AgentRecord, *, now: float) -> AgentRecord | None:
        previous = self._records.get(record.agent_id)
        self._records[record.agent_id] = record
        if previous is None:
            bisect.insort(self._ids, record.agent_id)
        else:
            self._unindex(previous)
        self._index(record)
        self._emit(ADDED if previous is None else UPDATED, record, previous, now)
        return previous

    async def renew(
        self, agent_id: str, lease_id: str, *, now: float, load: int, draining: bool
    ) -> AgentRecord:
        current = self._records.get(agent_id)
        if current is None:
            raise AgentNotFound(f"agent {agent_id!r} is not registered")
        if current.lease_id != lease_id:
            raise LeaseMismatch(
                f"lease {lease_id!r} is not the current lease of agent {agent_id!r}; "
                "register again",
                metadata={"agent_id": agent_id},
            )
        renewed = dataclasses.replace(
            current,
            lease_expire_s=now + current.lease_ttl_s,
            last_heartbeat_s=now,
            load=load,
            draining=draining,
            lapsed=False,
        )
        self._records[agent_id] = renewed
        self._emit(UPDATED, renewed, current, now)
        return renewed

    async def delete(self, agent_id: str, *, now: float) -> AgentRecord:
        record = self._records.get(agent_id)
        if record is None:
            raise AgentNotFound(f"agent {agent_id!r} is not registered")
        self._remove(record, now)
        return record

    async def get(self, agent_id: str) -> AgentRecord | None:
        return self._records.get(agent_id)

    async def list(self, query: AgentQuery) -> Listing:
        out: list[AgentRecord] = []
        if query.limit is None or query.limit > 0:
            for agent_id in self._candidates(query):
                record = self._records[agent_id]
                if query.tag and query.tag not in record.tag_keys:
                    continue
                if query.state != ANY_STATE and record.state_at(query.now) != query.state:
                    continue
                out.append(record)
                if query.limit is not None and len(out) >= query.limit:
                    break
        return Listing(records=out, revision=self._revision)

    async def sweep(self, *, now: float, deregister_after_s: float) -> SweepResult:
        lapsed: list[AgentRecord] = []
        removed: list[AgentRecord] = []
        for record in list(self._records.values()):
            if now < record.lease_expire_s:
                continue
            if now - record.lease_expire_s >= deregister_after_s:
                self._remove(record, now)
                removed.append(record)
            elif not record.lapsed:
                marked = dataclasses.replace(record, lapsed=True)
                self._records[record.agent_id] = marked
                self._emit(UPDATED, marked, record, now)
                lapsed.append(marked)
        return SweepResult(lapsed=lapsed, removed=removed)

    def subscribe(self, listener: ChangeListener) -> Callable[[], None]:
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def _candidates(self, query: AgentQuery) -> Iterable[str]:
        if query.skill:
            ids: Iterable[str] = sorted(self._by_skill.get(query.skill, ()))
            if query.after is not None:
                after = query.after
                ids = (i for i in ids if i > after)
            return ids
        start = 0 if query.after is None else bisect.bisect_right(self._ids, query.after)
        # No copy: list() does not await, so nothing changes _ids while it iterates.
        return itertools.islice(self._ids, start, None)

    def _remove(self, record: AgentRecord, now: float) -> None:
        del self._records[record.agent_id]
        del self._ids[bisect.bisect_left(self._ids, record.agent_id)]
        self._unindex(record)
        self._emit(REMOVED, record, None, now)

    def _index(self, record: AgentRecord) -> None:
        for key in record.skill_keys:
            self._by_skill.setdefault(key, set()).add(record.agent_id)

    def _unindex(self, record: AgentRecord) -> None:
        for key in record.skill_keys:
            ids = self._by_skill.get(key)
            if ids is not None:
                ids.discard(record.agent_id)
                if not ids:
                    del self._by_skill[key]

    def _emit(
        self,
        kind: registry_pb2.AgentEventType,
        record: AgentRecord,
        previous: AgentRecord | None,
        now: float,
    ) -> None:
        self._revision += 1
        if not self._listeners:
            return
        change = Change(
            kind=kind, record=record, previous=previous, revision=self._revision, time_s=now
        )
        for listener in tuple(self._listeners):
            try:
                listener(change)
            except Exception:  # one broken listener must not undo an applied change
                log.exception("registry change listener failed")

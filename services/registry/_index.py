"""The records a backend serves, indexed for ``list``: by id in order, and by skill.

Both backends keep one: the memory backend as its state, the Consul backend as
its mirror of Consul. Nothing here awaits, so under asyncio every call is atomic.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterable, Iterator

from meshwright.registry.records import ANY_STATE, AgentQuery, AgentRecord
from meshwright.registry.v1 import registry_pb2


class RecordIndex:
    """Agent records by id, with the ids sorted (pages are a bisect) and a skill index
    (the scheduler's "who offers skill X" is the hot read), its ids sorted too: a
    listing by skill must not sort a thousand ids per call (it was 37% of one)."""

    def __init__(self) -> None:
        self._records: dict[str, AgentRecord] = {}
        self._ids: list[str] = []
        self._by_skill: dict[str, list[str]] = {}

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._records

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def get(self, agent_id: str) -> AgentRecord | None:
        return self._records.get(agent_id)

    def count_by_state(self, now: float) -> dict[registry_pb2.AgentState, int]:
        """How many records are in each state at ``now``."""
        counts: dict[registry_pb2.AgentState, int] = {}
        for record in self._records.values():
            state = record.state_at(now)
            counts[state] = counts.get(state, 0) + 1
        return counts

    def values(self) -> list[AgentRecord]:
        """A copy of every record, so the caller may change the index while it walks."""
        return list(self._records.values())

    def put(self, record: AgentRecord) -> AgentRecord | None:
        """Add or replace the record of ``record.agent_id``; returns the one replaced."""
        agent_id = record.agent_id
        previous = self._records.get(agent_id)
        self._records[agent_id] = record
        if previous is None:
            bisect.insort(self._ids, agent_id)
            self._index(agent_id, record.skill_keys)
        elif previous.skill_keys != record.skill_keys:
            self._unindex(agent_id, previous.skill_keys)
            self._index(agent_id, record.skill_keys)
        return previous

    def remove(self, agent_id: str) -> AgentRecord | None:
        """Drop the record of ``agent_id``; returns it (None when there was none)."""
        record = self._records.pop(agent_id, None)
        if record is not None:
            del self._ids[bisect.bisect_left(self._ids, agent_id)]
            self._unindex(agent_id, record.skill_keys)
        return record

    def select(
        self,
        query: AgentQuery,
        show: Callable[[AgentRecord], AgentRecord] | None = None,
    ) -> list[AgentRecord]:
        """The records ``query`` asks for, in agent_id order, each passed through
        ``show`` (when given) after it matched."""
        out: list[AgentRecord] = []
        if query.limit is not None and query.limit <= 0:
            return out
        records = self._records
        for agent_id in self._candidates(query):
            record = records[agent_id]
            if query.tag and query.tag not in record.tag_keys:
                continue
            if not query.stopped and record.stopped_s is not None:
                continue
            if query.state != ANY_STATE and record.state_at(query.now) != query.state:
                continue
            out.append(record if show is None else show(record))
            if query.limit is not None and len(out) >= query.limit:
                break
        return out

    def _candidates(self, query: AgentQuery) -> Iterable[str]:
        ids = self._by_skill.get(query.skill, []) if query.skill else self._ids
        start = 0 if query.after is None else bisect.bisect_right(ids, query.after)
        # No copy: select() does not await, so nothing changes the list while it iterates.
        return itertools.islice(ids, start, None)

    def _index(self, agent_id: str, keys: frozenset[str]) -> None:
        for key in keys:
            ids = self._by_skill.setdefault(key, [])
            at = bisect.bisect_left(ids, agent_id)
            if at == len(ids) or ids[at] != agent_id:
                ids.insert(at, agent_id)

    def _unindex(self, agent_id: str, keys: frozenset[str]) -> None:
        for key in keys:
            ids = self._by_skill.get(key)
            if ids is None:
                continue
            at = bisect.bisect_left(ids, agent_id)
            if at < len(ids) and ids[at] == agent_id:
                del ids[at]
            if not ids:
                del self._by_skill[key]

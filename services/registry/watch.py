"""Fan-out of registry changes to watchers, each behind a bounded queue.

Publishing never awaits: a change is offered to every watcher's queue and a
watcher whose queue is full is cut off (it ends with ``WatchOverflow`` and
watches again, getting a fresh snapshot) instead of slowing the registry or
the other watchers down. Events are built once per change and shared by every
watcher; their ``Agent`` message is built on first use, so a heartbeat costs
one queue append per matching watcher.
"""

from __future__ import annotations

import asyncio
from collections import deque

from meshwright.mesh.errors import MeshError
from meshwright.registry._convert import to_agent
from meshwright.registry.errors import WatchOverflow
from meshwright.registry.records import ADDED, ANY_STATE, REMOVED, UPDATED, AgentRecord, Change
from meshwright.registry.v1 import registry_pb2


class AgentEvent:
    """One change as a watcher sees it."""

    __slots__ = ("_agent", "_public", "record", "revision", "state", "time_s", "type")

    def __init__(
        self,
        type: registry_pb2.AgentEventType,
        record: AgentRecord,
        time_s: float,
        revision: int,
    ) -> None:
        self.type = type
        """ADDED, UPDATED or REMOVED."""
        self.record = record
        """The registration after the change (as it was, for REMOVED)."""
        self.time_s = time_s
        """When its state is judged (``announced_at`` of the change)."""
        self.state = record.state_at(time_s)
        """The agent's state when the change happened."""
        self.revision = revision
        """The backend revision of the change."""
        self._agent: registry_pb2.Agent | None = None
        self._public: AgentEvent | None = None

    @property
    def agent(self) -> registry_pb2.Agent:
        """The registration as a message; shared by every watcher, so treat it as read-only."""
        if self._agent is None:
            self._agent = to_agent(self.record, self.time_s)
        return self._agent

    def public(self) -> AgentEvent:
        """This event as anyone but the lease holder sees it: ``agent.lease_id`` cleared.

        Built once and shared, like ``agent``, by every watcher that may not see the lease.
        """
        if self._public is None:
            agent = registry_pb2.Agent()
            agent.CopyFrom(self.agent)
            agent.lease_id = ""
            public = AgentEvent(self.type, self.record, self.time_s, self.revision)
            public._agent = agent
            public._public = public
            self._public = public
        return self._public

    def __repr__(self) -> str:
        kind = registry_pb2.AgentEventType.Name(self.type)
        return f"AgentEvent({kind}, {self.record.agent_id!r}, revision={self.revision})"


def announced_at(record: AgentRecord, time_s: float) -> float:
    """The time to judge ``record``'s state at for a change applied at ``time_s``.

    A lease that ran out is announced by the sweeper (which marks the record
    ``lapsed``); until then changes judge the record as if the lease were
    current, so a filtered watch sees an agent leave at the lapse event, once,
    and a watcher's view never depends on how late a change was applied.
    """
    if record.lapsed or time_s < record.lease_expire_s:
        return time_s
    return min(time_s, record.lease_expire_s - 1e-6)


class WatchFilter:
    """Which agents a watch concerns: skill, tag and state filters."""

    __slots__ = ("skill", "state", "tag")

    def __init__(
        self, *, skill: str = "", tag: str = "", state: registry_pb2.AgentState = ANY_STATE
    ) -> None:
        self.skill = skill
        """A ``skill_key``, or empty for any."""
        self.tag = tag
        self.state = state
        """A state, or UNSPECIFIED for any."""

    def matches(self, record: AgentRecord, time_s: float) -> bool:
        """Whether ``record`` (its state judged at ``time_s``) passes the filter."""
        if not record.matches(self.skill, self.tag):
            return False
        return self.state == ANY_STATE or record.state_at(time_s) == self.state

    def kind_of(self, change: Change) -> registry_pb2.AgentEventType | None:
        """What ``change`` is to this watch, or None when it does not concern it.

        A change can move an agent into or out of a filtered watch (a
        re-registration with other skills, a state change under a state
        filter); the watcher then sees ADDED or REMOVED, so a cache built from
        the watch stays exactly the set of matching agents.
        """
        record, previous = change.record, change.previous
        now_matches = self.matches(record, announced_at(record, change.time_s))
        if change.kind != UPDATED or previous is None:
            return change.kind if now_matches else None
        was_matching = self.matches(previous, announced_at(previous, change.time_s))
        if now_matches:
            return UPDATED if was_matching else ADDED
        return REMOVED if was_matching else None


class Watcher(WatchFilter):
    """One watch: its filters and its queue of events not yet consumed."""

    __slots__ = ("_error", "_events", "_wake", "queue_size")

    def __init__(
        self,
        *,
        skill: str,
        tag: str,
        state: registry_pb2.AgentState = ANY_STATE,
        queue_size: int,
    ) -> None:
        super().__init__(skill=skill, tag=tag, state=state)
        self.queue_size = queue_size
        self._events: deque[AgentEvent] = deque()
        self._wake = asyncio.Event()
        self._error: MeshError | None = None

    def offer(self, event: AgentEvent) -> bool:
        """Queue an event; False when the queue is full."""
        if len(self._events) >= self.queue_size:
            return False
        self._events.append(event)
        self._wake.set()
        return True

    def fail(self, error: MeshError) -> None:
        """End the watch with ``error`` at its next read; queued events are dropped."""
        self._error = error
        self._events.clear()
        self._wake.set()

    async def next(self, after_revision: int) -> AgentEvent:
        """The next queued event newer than ``after_revision`` (older ones were in the snapshot)."""
        while True:
            if self._error is not None:
                raise self._error
            while self._events:
                event = self._events.popleft()
                if event.revision > after_revision:
                    return event
            self._wake.clear()
            await self._wake.wait()


class WatchHub:
    """The set of live watchers and the fan-out of changes to them."""

    def __init__(self, *, queue_size: int) -> None:
        if queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self.queue_size = queue_size
        self._watchers: set[Watcher] = set()

    def __len__(self) -> int:
        return len(self._watchers)

    def add(
        self, *, skill: str = "", tag: str = "", state: registry_pb2.AgentState = ANY_STATE
    ) -> Watcher:
        """A new watcher that receives every later change matching its filters."""
        watcher = Watcher(skill=skill, tag=tag, state=state, queue_size=self.queue_size)
        self._watchers.add(watcher)
        return watcher

    def discard(self, watcher: Watcher) -> None:
        """Stop delivering to ``watcher``."""
        self._watchers.discard(watcher)

    def close(self, error: MeshError) -> None:
        """End every watch with ``error``."""
        watchers, self._watchers = self._watchers, set()
        for watcher in watchers:
            watcher.fail(error)

    def publish(self, change: Change) -> None:
        """Offer ``change`` to every watcher whose filters it concerns."""
        if not self._watchers:
            return
        # At most one event object per kind, shared by every watcher it goes to.
        shared: dict[int, AgentEvent] = {}
        overflowed: list[Watcher] = []
        for watcher in self._watchers:
            kind = watcher.kind_of(change)
            if kind is None:
                continue
            event = shared.get(kind)
            if event is None:
                event = event_of(kind, change)
                shared[kind] = event
            if not watcher.offer(event):
                overflowed.append(watcher)
        for watcher in overflowed:
            self._watchers.discard(watcher)
            watcher.fail(
                WatchOverflow(
                    f"watch fell more than {watcher.queue_size} events behind; watch again",
                    metadata={"queue_size": str(watcher.queue_size)},
                )
            )


def event_of(kind: registry_pb2.AgentEventType, change: Change) -> AgentEvent:
    """The event a watcher gets for ``change`` (``kind`` as ``WatchFilter.kind_of`` says)."""
    record = change.record  # after the change: a watcher told REMOVED sees why it left
    return AgentEvent(kind, record, announced_at(record, change.time_s), change.revision)

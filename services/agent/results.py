"""What an agent remembers of the tasks it finished, so a re-dispatch is not run twice.

A caller that lost its answer (its process died, a new owner took the work
over) sends the same task id again; the agent answers with the task it
recorded instead of running the skill a second time. Memory is bounded in
entries (the oldest go first) and in time (each entry lives ``ttl_s`` from
when its task finished).
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from meshwright.agent.v1 import agent_pb2

DEFAULT_RESULT_MEMORY = 10_000
"""Finished tasks an agent remembers by default."""
DEFAULT_RESULT_TTL_S = 900.0
"""How long (seconds) an agent remembers a finished task by default: 15 minutes."""


def request_fingerprint(
    request: agent_pb2.ExecuteTaskRequest | agent_pb2.StreamTaskRequest,
) -> bytes:
    """A digest of everything the skill sees: skill, input, upstream outputs, context id and
    metadata (not the task id).

    The same for an ExecuteTask and a StreamTask request, whatever the order of
    map entries, and whether an empty input is sent or left out: the skill
    cannot tell those apart, so neither does a re-dispatch.
    """
    digest = hashlib.sha256()

    def part(data: bytes) -> None:
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)

    part(request.skill.encode())
    part(request.input.SerializeToString(deterministic=True))
    part(request.context_id.encode())
    upstream = request.upstream_outputs
    part(str(len(upstream)).encode())
    for key in sorted(upstream):
        part(key.encode())
        part(upstream[key].SerializeToString(deterministic=True))
    metadata = request.metadata
    part(str(len(metadata)).encode())
    for key in sorted(metadata):
        part(key.encode())
        part(metadata[key].encode())
    return digest.digest()


@dataclass(frozen=True, slots=True)
class RecordedTask:
    """A finished task, the request that ran it, and when it is forgotten."""

    task: agent_pb2.Task
    """The task in its terminal state (shared: do not change it)."""
    fingerprint: bytes
    """``request_fingerprint`` of the request that ran it."""
    expires_at: float
    """On the memory's clock."""


class ResultMemory:
    """Finished tasks by task id: at most ``max_entries``, each for ``ttl_s``.

    ``max_entries=0`` (or ``ttl_s=0``) remembers nothing. ``clock`` must not
    go backwards (``time.monotonic`` by default).
    """

    def __init__(
        self,
        *,
        max_entries: int = DEFAULT_RESULT_MEMORY,
        ttl_s: float = DEFAULT_RESULT_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 0:
            raise ValueError("max_entries must not be negative (0 remembers nothing)")
        if ttl_s < 0:
            raise ValueError("ttl_s must not be negative (0 remembers nothing)")
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._clock = clock
        # Oldest first: entries are added when their task finishes and all live
        # equally long, so insertion order is also expiry order.
        self._entries: OrderedDict[str, RecordedTask] = OrderedDict()

    def __len__(self) -> int:
        """Entries held now, counting expired ones not yet dropped."""
        return len(self._entries)

    def get(self, task_id: str) -> RecordedTask | None:
        """The task recorded under ``task_id``, unless there is none or it expired."""
        entry = self._entries.get(task_id)
        if entry is None:
            return None
        if self._clock() >= entry.expires_at:
            self._drop_expired()
            return None
        return entry

    def put(self, task_id: str, fingerprint: bytes, task: agent_pb2.Task) -> None:
        """Remember a finished task, dropping expired entries and then the oldest beyond the cap."""
        if self.max_entries == 0 or self.ttl_s == 0:
            return
        self._drop_expired()
        self._entries.pop(task_id, None)
        while len(self._entries) >= self.max_entries:
            self._entries.popitem(last=False)
        self._entries[task_id] = RecordedTask(task, fingerprint, self._clock() + self.ttl_s)

    def _drop_expired(self) -> None:
        now = self._clock()
        entries = self._entries
        while entries:
            oldest = next(iter(entries.values()))
            if now < oldest.expires_at:
                break
            entries.popitem(last=False)

"""Idempotency keys: replay the first result of a retried mutation.

A key is the caller's ``request_id`` plus a fingerprint of the operation and
its parameters (not of generated ids or the clock, which differ per retry).
Stores check and record keys inside the same atomic operation that applies
the change, so two racing retries cannot both apply it. Only successes are
recorded: a failed call changed nothing, so running it again is safe.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import TypeVar

from meshwright.mesh.errors import InvalidArgument

T = TypeVar("T")

DEFAULT_CAPACITY = 100_000
"""Keys remembered; older ones are forgotten first (a retry after that re-applies)."""


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """What a store needs to deduplicate one mutation."""

    request_id: str
    fingerprint: str
    """Digest of the operation name and its request parameters."""


def idempotency_key(request_id: str, operation: str, *params: object) -> IdempotencyKey | None:
    """The key for a mutation; ``None`` when the caller sent no request_id."""
    if not request_id:
        return None
    # A fixed-size digest keeps the cache's memory bounded whatever the memo sizes.
    raw = "\x1f".join([operation, *(repr(p) for p in params)]).encode()
    return IdempotencyKey(request_id, hashlib.blake2b(raw, digest_size=16).hexdigest())


class IdempotencyCache:
    """A bounded LRU of ``request_id -> (fingerprint, result)``; not thread-safe.

    Meant to be used by a store inside its atomic section, with no ``await``
    between ``replay`` and ``remember``.
    """

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity <= 0:
            raise ValueError("capacity must be > 0")
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[str, object]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def replay(self, key: IdempotencyKey | None, result_type: type[T]) -> T | None:
        """The recorded result for ``key``, or ``None`` if it is new.

        Raises INVALID_ARGUMENT on ``request_id`` if the key was used for
        different parameters.
        """
        if key is None:
            return None
        entry = self._entries.get(key.request_id)
        if entry is None:
            return None
        fingerprint, result = entry
        if fingerprint != key.fingerprint or not isinstance(result, result_type):
            raise InvalidArgument.field(
                "request_id", "was already used for a request with different parameters"
            )
        self._entries.move_to_end(key.request_id)
        return result

    def remember(self, key: IdempotencyKey | None, result: T) -> T:
        """Record ``result`` under ``key`` (if any) and return it."""
        if key is not None:
            self._entries[key.request_id] = (key.fingerprint, result)
            self._entries.move_to_end(key.request_id)
            if len(self._entries) > self.capacity:
                self._entries.popitem(last=False)
        return result

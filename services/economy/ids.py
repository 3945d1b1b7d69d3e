"""Generated ids: short, unique and sortable by creation time.

``<prefix>_`` + 10 characters of milliseconds + 8 random characters, in a
lower-case Crockford base32 whose digits sort like their values. Within one
process ids strictly increase (a repeat millisecond bumps the random part, as
ULID does); across processes 40 random bits keep collisions negligible.
"""

from __future__ import annotations

import secrets
import time

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_RANDOM_BITS = 40
_RANDOM_MAX = (1 << _RANDOM_BITS) - 1


def _b32(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return "".join(reversed(chars))


class IdGenerator:
    """Makes ids; one per process is enough."""

    def __init__(self) -> None:
        self._last_ms = -1
        self._last_rand = 0

    def new(self, prefix: str) -> str:
        """A fresh id such as ``tx_01j2k3m4n5p6q7r8s9``."""
        ms = time.time_ns() // 1_000_000
        if ms <= self._last_ms and self._last_rand < _RANDOM_MAX:
            # Same (or a stepped-back) clock: keep order by counting up.
            ms, rand = self._last_ms, self._last_rand + 1
        else:
            rand = secrets.randbits(_RANDOM_BITS - 1)  # headroom for counting up
        self._last_ms, self._last_rand = ms, rand
        return f"{prefix}_{_b32(ms, 10)}{_b32(rand, 8)}"


_default = IdGenerator()


def new_id(prefix: str) -> str:
    """A fresh id from the process-wide generator."""
    return _default.new(prefix)

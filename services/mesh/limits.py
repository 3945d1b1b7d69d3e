"""Hard limits on every input, and rate limits per principal.

``check_request`` walks any request message by its descriptor before domain
code sees it: every string, bytes, repeated field, map and
``google.protobuf.Struct``/``Value`` (depth, size, finite numbers) is bounded,
and an enum value the contract does not define is refused, so whatever is
stored can always be rendered and read back. Domain validation still applies
its own tighter rules (id patterns, name lengths) on top.
"""

from __future__ import annotations

import functools
import math
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

from google.protobuf import descriptor, message, struct_pb2

from meshwright.mesh.errors import FieldViolation, InvalidArgument, ResourceExhausted

FD = descriptor.FieldDescriptor

MAX_MESSAGE_BYTES = 8 * 1024 * 1024
"""Largest message any meshwright server or client sends or accepts."""


@dataclass(frozen=True, slots=True, kw_only=True)
class InputLimits:
    """Bounds every request must respect."""

    max_string_chars: int = 4096
    """A string field (outside Structs), unless ``string_overrides`` names it."""
    string_overrides: Mapping[str, int] = field(
        default_factory=lambda: {"description": 16_384, "reason": 1024}
    )
    """Per field name, a different string bound."""
    max_bytes: int = 1024 * 1024
    """A bytes field."""
    max_repeated: int = 10_000
    """Elements of one repeated field."""
    max_map_entries: int = 10_000
    """Entries of one map field: as many as a workflow has tasks, since a join task gets one
    upstream output per dependency (``upstream_outputs``)."""
    max_struct_depth: int = 32
    """Nesting of Struct/ListValue inside one value."""
    max_struct_bytes: int = 1024 * 1024
    """Serialized size of one Struct (a task input or output)."""
    max_struct_key_chars: int = 256
    """A key inside a Struct."""
    max_violations: int = 50
    """Walking stops after this many problems (the error reports the first ones)."""


DEFAULT_LIMITS = InputLimits()


# A field path, built without string formatting while walking (most requests are
# fine, so most paths are never shown): (parent, segment), segment a field name,
# a list index (int) or a map key (tuple of one key); None is the request itself.
_Path = tuple[object, object] | None


def _render(path: _Path) -> str:
    parts: list[str] = []
    while path is not None:
        parent, seg = path
        if isinstance(seg, int):
            parts.append(f"[{seg}]")
        elif isinstance(seg, tuple):
            parts.append(f"[{seg[0]!r:.40}]")
        else:
            parts.append(f".{seg}" if parent is not None else str(seg))
        path = parent  # type: ignore[assignment]
    return "".join(reversed(parts))


class _Walk:
    __slots__ = ("full", "limits", "violations")

    def __init__(self, limits: InputLimits) -> None:
        self.limits = limits
        self.violations: list[FieldViolation] = []
        self.full = False
        """Whether ``max_violations`` problems are in (walking stops)."""

    def add(self, path: _Path, text: str) -> None:
        # Some walks add several problems between two checks of ``full`` (a map
        # entry's key and value, a Struct's keys): the bound holds here for all.
        if not self.full:
            self.violations.append(FieldViolation(_render(path), text))
            self.full = len(self.violations) >= self.limits.max_violations


def check_request(request: message.Message, limits: InputLimits = DEFAULT_LIMITS) -> None:
    """``InvalidArgument`` naming every field (up to a bound) that breaks a limit."""
    if not _has_value_checks(request.DESCRIPTOR) and request.ByteSize() <= _smallest_bound(limits):
        # Fast path (a payment, a lookup): no string, bytes field, list or map can be
        # longer than the whole message, and no field of it has a value to check.
        return
    walk = _Walk(limits)
    _message(request, None, walk)
    if walk.violations:
        first = walk.violations[0]
        raise InvalidArgument(
            f"invalid request: {first.field}: {first.description}"
            + (f" (and {len(walk.violations) - 1} more)" if len(walk.violations) > 1 else ""),
            violations=walk.violations,
        )


@functools.cache
def _has_value_checks(msg: descriptor.Descriptor) -> bool:
    """Whether a message (or one inside it) has fields checked by value, not only by
    length: enums, floats, Structs."""
    seen: set[str] = set()
    stack = [msg]
    while stack:
        d = stack.pop()
        if d.full_name in seen:
            continue
        seen.add(d.full_name)
        if d.full_name.startswith("google.protobuf.") and d.full_name in _STRUCT_TYPES:
            return True
        for fd in d.fields:
            if fd.type in (FD.TYPE_ENUM, FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
                return True
            if fd.message_type is not None:
                stack.append(fd.message_type)
    return False


_STRUCT_TYPES = frozenset(
    {"google.protobuf.Struct", "google.protobuf.Value", "google.protobuf.ListValue"}
)


def _smallest_bound(limits: InputLimits) -> int:
    return min(
        limits.max_string_chars,
        *limits.string_overrides.values(),
        limits.max_bytes,
        limits.max_repeated,
        limits.max_map_entries,
    )


_NUMBERS_AND_BOOLS = frozenset(
    {
        FD.TYPE_INT32,
        FD.TYPE_INT64,
        FD.TYPE_UINT32,
        FD.TYPE_UINT64,
        FD.TYPE_SINT32,
        FD.TYPE_SINT64,
        FD.TYPE_FIXED32,
        FD.TYPE_FIXED64,
        FD.TYPE_SFIXED32,
        FD.TYPE_SFIXED64,
        FD.TYPE_BOOL,
    }
)
"""Field types with nothing to check: every value of them can be stored and sent."""


def _message(msg: message.Message, path: _Path, walk: _Walk) -> None:
    full = msg.DESCRIPTOR.full_name
    if full == "google.protobuf.Struct" or full == "google.protobuf.Value":
        _struct_root(msg, path, walk)  # type: ignore[arg-type]
        return
    for fd, value in msg.ListFields():
        if walk.full:
            return
        if fd.type in _NUMBERS_AND_BOOLS:
            continue
        fpath = (path, fd.name)
        if (
            fd.is_repeated
            and fd.message_type is not None
            and fd.message_type.GetOptions().map_entry
        ):
            _map(fd, value, fpath, walk)
        elif fd.is_repeated:
            if len(value) > walk.limits.max_repeated:
                walk.add(fpath, f"has {len(value)} items; at most {walk.limits.max_repeated}")
                continue
            for i, item in enumerate(value):
                _scalar_or_message(fd, item, (fpath, i), walk)
                if walk.full:
                    return
        else:
            _scalar_or_message(fd, value, fpath, walk)


def _map(fd: FD, value: object, path: _Path, walk: _Walk) -> None:
    entries = value  # a mapping
    if len(entries) > walk.limits.max_map_entries:  # type: ignore[arg-type]
        walk.add(path, f"has {len(entries)} entries; at most {walk.limits.max_map_entries}")  # type: ignore[arg-type]
        return
    entry = fd.message_type
    assert entry is not None
    key_fd = entry.fields_by_name["key"]
    value_fd = entry.fields_by_name["value"]
    for k in entries:  # type: ignore[attr-defined]
        where = (path, (k,))
        _scalar_or_message(key_fd, k, where, walk, name=fd.name)
        _scalar_or_message(value_fd, entries[k], where, walk, name=fd.name)  # type: ignore[index]
        if walk.full:
            return


def _scalar_or_message(
    fd: FD, value: object, path: _Path, walk: _Walk, *, name: str | None = None
) -> None:
    t = fd.type
    if t == FD.TYPE_MESSAGE or t == FD.TYPE_GROUP:
        _message(value, path, walk)  # type: ignore[arg-type]
    elif t == FD.TYPE_STRING:
        limit = walk.limits.string_overrides.get(name or fd.name, walk.limits.max_string_chars)
        if len(value) > limit:  # type: ignore[arg-type]
            walk.add(path, f"is {len(value)} characters long; at most {limit}")  # type: ignore[arg-type]
    elif t == FD.TYPE_BYTES:
        if len(value) > walk.limits.max_bytes:  # type: ignore[arg-type]
            walk.add(path, f"is {len(value)} bytes long; at most {walk.limits.max_bytes}")  # type: ignore[arg-type]
    elif t == FD.TYPE_ENUM:
        enum = fd.enum_type
        assert enum is not None
        if enum.values_by_number.get(value) is None:  # type: ignore[call-overload]
            names = ", ".join(v.name for v in enum.values)
            walk.add(path, f"unknown enum value {value}; one of {names}")
    elif t in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        if not math.isfinite(value):  # type: ignore[arg-type]
            walk.add(path, "must be a finite number")


def _struct_root(msg: struct_pb2.Struct | struct_pb2.Value, path: _Path, walk: _Walk) -> None:
    size = msg.ByteSize()
    if size > walk.limits.max_struct_bytes:
        walk.add(path, f"is {size} bytes; at most {walk.limits.max_struct_bytes}")
        return
    limits = walk.limits
    stack: list[tuple[object, _Path, int]] = [(msg, path, 0)]
    while stack and not walk.full:
        node, where, depth = stack.pop()
        if depth > limits.max_struct_depth:
            walk.add(where, f"nests deeper than {limits.max_struct_depth} levels")
            return
        if isinstance(node, struct_pb2.Struct):
            for key, val in node.fields.items():
                if len(key) > limits.max_struct_key_chars:
                    walk.add(
                        where,
                        f"has a key of {len(key)} characters; at most "
                        f"{limits.max_struct_key_chars}",
                    )
                    continue
                kind = val.WhichOneof("kind")
                if kind == "string_value" or kind == "bool_value":
                    continue  # nothing to check: the Struct's size bounds them
                stack.append((val, (where, key), depth + 1))
        elif isinstance(node, struct_pb2.ListValue):
            for i, val in enumerate(node.values):
                stack.append((val, (where, i), depth + 1))
        elif isinstance(node, struct_pb2.Value):
            kind = node.WhichOneof("kind")
            if kind == "number_value":
                if not math.isfinite(node.number_value):
                    walk.add(where, "must be a finite number (NaN and Infinity cannot be stored)")
            elif kind == "struct_value":
                stack.append((node.struct_value, where, depth))
            elif kind == "list_value":
                stack.append((node.list_value, where, depth))
            elif kind == "null_value" and node.null_value != 0:
                walk.add(where, "unknown null value")


# -- rate limits ------------------------------------------------------------------


class RateLimited(ResourceExhausted):
    """The caller sent more calls than its rate allows; retry after RetryInfo's delay."""

    reason = "RATE_LIMITED"


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimit:
    """A token bucket per principal."""

    rate_per_s: float = 500.0
    """Calls per second sustained; 0 turns rate limiting off."""
    burst: int = 1000
    """Calls allowed at once after a quiet period."""


class RateLimiter:
    """Token buckets keyed by principal (bounded: the least recently seen are forgotten)."""

    def __init__(
        self, limit: RateLimit, *, max_keys: int = 100_000, clock: object = time.monotonic
    ) -> None:
        if limit.rate_per_s < 0 or limit.burst < 1:
            raise ValueError("rate_per_s must be >= 0 and burst >= 1")
        self.limit = limit
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()
        self._max_keys = max_keys
        self._clock = clock

    def take(self, key: str) -> None:
        """Spend one call of ``key``'s bucket, or raise ``RateLimited`` with a retry delay."""
        rate = self.limit.rate_per_s
        if rate <= 0:
            return
        now = self._clock()  # type: ignore[operator]
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = [float(self.limit.burst), now]
            self._buckets[key] = bucket
            if len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        else:
            self._buckets.move_to_end(key)
            bucket[0] = min(float(self.limit.burst), bucket[0] + (now - bucket[1]) * rate)
            bucket[1] = now
        if bucket[0] >= 1.0:
            bucket[0] -= 1.0
            return
        wait = (1.0 - bucket[0]) / rate
        raise RateLimited(
            f"rate limit of {rate:g} calls/s exceeded; retry in {wait:.3f}s",
            retry_after_s=wait,
        )


__all__ = [
    "DEFAULT_LIMITS",
    "MAX_MESSAGE_BYTES",
    "InputLimits",
    "RateLimit",
    "RateLimited",
    "RateLimiter",
    "check_request",
]

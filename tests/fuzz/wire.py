"""Hypothesis strategies for protobuf wire bytes, written by hand from a message descriptor.

The Python protobuf runtime refuses to build most of what a hostile client can
send (bad UTF-8 in a string field, a packed list of out-of-range enum numbers,
a field with the wrong wire type), so requests are encoded here field by field:
every field of the request type, at any depth, with values of its type drawn to
include the edges (huge strings, bad UTF-8, unknown enum numbers, NaN and
infinities, 64-bit extremes), plus unknown fields and wrong wire types.
"""

from __future__ import annotations

import math
import struct
from functools import cache

from google.protobuf import descriptor
from hypothesis import strategies as st

FD = descriptor.FieldDescriptor

VARINT, I64, LEN, I32 = 0, 1, 2, 5
PLAUSIBLE, EDGY, DIRTY = "plausible", "edgy", "dirty"
MAX_DEPTH = 3

ID_POOL = (
    "fz-alice",
    "fz-bob",
    "fz-alice\n",
    "alice",
    "client:alice",
    "client:bob",
    "agent:fz-agent",
    "fz-agent",
    "text.echo",
    "wf-1",
    "*",
    "",
)
"""Strings that name things the fuzzed node has (or nearly has), so requests get past
"not found" into the domains."""
# Loopback only: a registered endpoint is dialled by the router and the engine.
ENDPOINTS = ("127.0.0.1:1", "127.0.0.1:9", "127.0.0.1:0", "127.0.0.1", "no-port", "")
BAD_UTF8 = (b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"a\x80b", b"\xf4\x90\x80\x80", b"\xc0\xaf")
HUGE = (4097, 20_000, 300_000)
"""Sizes past the generic string bound and well beyond it."""
INT64_EDGES = (0, 1, -1, 2**31 - 1, -(2**31), 2**32 - 1, 2**63 - 1, -(2**63), 2**64 - 1)
FLOAT_EDGES = (math.nan, math.inf, -math.inf, -0.0, 1e308, -1e308, 5e-324, 3.4e38)


def varint(value: int) -> bytes:
    """Base-128 varint of ``value`` as a uint64 (negatives as ten-byte two's complement)."""
    value &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def tag(number: int, wire_type: int) -> bytes:
    return varint((number << 3) | wire_type)


def length_delimited(number: int, payload: bytes) -> bytes:
    return tag(number, LEN) + varint(len(payload)) + payload


def zigzag(value: int) -> int:
    return (value << 1) ^ (value >> 63)


def _text(name: str, mode: str) -> st.SearchStrategy[bytes]:
    bad = st.binary(max_size=16) | st.sampled_from(BAD_UTF8)
    if name.endswith("endpoint"):
        clean = st.sampled_from(ENDPOINTS).map(str.encode)
        return clean | bad if mode == DIRTY else clean
    if mode == PLAUSIBLE:
        return st.sampled_from(ID_POOL).map(str.encode) | st.from_regex(
            r"[a-z][a-z0-9.-]{0,11}", fullmatch=True
        ).map(str.encode)
    clean = st.one_of(
        st.text(max_size=24).map(str.encode),
        st.sampled_from(ID_POOL).map(str.encode),
        st.sampled_from(HUGE).map(lambda n: b"a" * n),
    )
    return clean | bad if mode == DIRTY else clean


def _ints(field: FD, mode: str) -> st.SearchStrategy[int]:
    if field.type == FD.TYPE_ENUM:
        known = st.sampled_from([v.number for v in field.enum_type.values])
        if mode == PLAUSIBLE:
            return known
        # Unknown numbers, negative ones and the known values alike.
        return known | st.integers(-3, 300) | st.sampled_from(INT64_EDGES)
    if field.type == FD.TYPE_BOOL:
        return st.integers(0, 1) if mode == PLAUSIBLE else st.integers(0, 3)
    if mode == PLAUSIBLE:
        return st.integers(0, 2000)
    edges = st.sampled_from(INT64_EDGES)
    return st.integers(-1000, 1000) | st.integers(-(2**63), 2**64 - 1) | edges


def _scalar(field: FD, mode: str) -> tuple[int, st.SearchStrategy[bytes]]:
    """Wire type and encoded values (without tag) of one scalar field."""
    t = field.type
    if t in (FD.TYPE_STRING, FD.TYPE_BYTES):
        text = _text(field.name, DIRTY if t == FD.TYPE_BYTES else mode)
        return LEN, text.map(lambda b: varint(len(b)) + b)
    ints = _ints(field, mode)
    if t in (FD.TYPE_SINT32, FD.TYPE_SINT64):
        return VARINT, ints.map(lambda v: varint(zigzag(max(-(2**63), min(v, 2**63 - 1)))))
    if mode == PLAUSIBLE and t in (FD.TYPE_DOUBLE, FD.TYPE_FLOAT):
        small = st.floats(-1e6, 1e6, width=64 if t == FD.TYPE_DOUBLE else 32)
        fmt = "<d" if t == FD.TYPE_DOUBLE else "<f"
        return (I64 if t == FD.TYPE_DOUBLE else I32), small.map(lambda f: struct.pack(fmt, f))
    if t in (FD.TYPE_DOUBLE, FD.TYPE_FIXED64, FD.TYPE_SFIXED64):
        floats = st.floats() | st.sampled_from(FLOAT_EDGES)
        return I64, floats.map(lambda f: struct.pack("<d", f)) | st.binary(min_size=8, max_size=8)
    if t in (FD.TYPE_FLOAT, FD.TYPE_FIXED32, FD.TYPE_SFIXED32):
        floats = st.floats(width=32) | st.sampled_from((math.nan, math.inf, -math.inf, -0.0))
        return I32, floats.map(lambda f: struct.pack("<f", f)) | st.binary(min_size=4, max_size=4)
    return VARINT, ints.map(varint)


def _field(field: FD, depth: int, mode: str) -> st.SearchStrategy[bytes]:
    """One or more occurrences of ``field`` on the wire, tags included."""
    n = field.number
    if field.message_type is not None:
        if depth >= MAX_DEPTH:
            return st.just(length_delimited(n, b""))
        inner = message_bytes(field.message_type, depth + 1, mode=mode)
        return inner.map(lambda b: length_delimited(n, b))
    wire_type, values = _scalar(field, mode)
    one = values.map(lambda v: tag(n, wire_type) + v)
    if field.is_repeated and wire_type != LEN:
        packed = st.lists(values, max_size=4).map(lambda vs: length_delimited(n, b"".join(vs)))
        return one | packed
    return one


# A field the contract does not have, or a known one with the wrong wire type.
_junk = st.one_of(
    st.tuples(st.integers(1, 2**29 - 1), st.binary(max_size=8)).map(
        lambda p: length_delimited(p[0], p[1])
    ),
    st.tuples(st.integers(1, 50), st.sampled_from((VARINT, I64, I32))).map(
        lambda p: tag(*p) + b"\x01" * {VARINT: 1, I64: 8, I32: 4}[p[1]]
    ),
)


@cache
def message_bytes(
    desc: descriptor.Descriptor, depth: int = 0, *, mode: str = EDGY
) -> st.SearchStrategy[bytes]:
    """Wire bytes of a ``desc`` message: a random subset of its fields, in any order.

    ``PLAUSIBLE`` values (ids from the pool, small numbers, known enum values)
    get past validation into the domains' own rules; ``EDGY`` ones (huge
    strings, unknown enum numbers, NaN, 64-bit extremes) still decode and test
    the limits; ``DIRTY`` adds bad UTF-8, unknown fields and wrong wire types,
    for the decoder.
    """
    fields = [_field(f, depth, mode) for f in desc.fields]
    if mode == PLAUSIBLE:
        # Most fields set, each once: required fields are rarely all there otherwise.
        present = [st.one_of(f, f, f, st.just(b"")) for f in fields]
        return st.tuples(*present).map(b"".join)
    if mode == DIRTY:
        fields.append(_junk)
    if not fields:
        return st.just(b"")
    return st.lists(st.one_of(*fields), max_size=6 if depth == 0 else 3).map(b"".join)


def request_bytes(desc: descriptor.Descriptor) -> st.SearchStrategy[bytes]:
    """Requests of type ``desc`` of every kind, and plain random bytes."""
    return st.one_of(
        message_bytes(desc, mode=PLAUSIBLE),
        message_bytes(desc, mode=PLAUSIBLE),
        message_bytes(desc, mode=EDGY),
        message_bytes(desc, mode=DIRTY),
        st.binary(max_size=64),
    )


__all__ = ["DIRTY", "EDGY", "ID_POOL", "PLAUSIBLE", "message_bytes", "request_bytes", "varint"]

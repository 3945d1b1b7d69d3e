"""Conversions between ``google.protobuf.Struct`` and plain Python values.

Hand-rolled rather than ``json_format`` because they run twice per task on the
hot path. Whole numbers come back as ``int`` (a Struct only holds doubles), the
way ``json_format`` renders them, so ``input["count"]`` is usable as a count.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import struct_pb2

_MAX_EXACT = 2**53


def value_to_python(value: struct_pb2.Value) -> Any:
    """The Python value of one ``Value``."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        n = value.number_value
        if n.is_integer() and -_MAX_EXACT <= n <= _MAX_EXACT:
            return int(n)
        return n
    if kind == "string_value":
        return value.string_value
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "bool_value":
        return value.bool_value
    if kind == "list_value":
        return [value_to_python(v) for v in value.list_value.values]
    return None


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as a dict of plain values."""
    return {k: value_to_python(v) for k, v in struct.fields.items()}


def dict_to_struct(
    data: Mapping[str, Any], into: struct_pb2.Struct | None = None
) -> struct_pb2.Struct:
    """Fill ``into`` (or a new Struct) from a JSON-like mapping.

    Raises ValueError (or TypeError) for values a Struct cannot hold.
    """
    struct = struct_pb2.Struct() if into is None else into
    struct.update(data)
    return struct

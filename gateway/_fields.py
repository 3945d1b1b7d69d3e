"""Request fields addressed by name and set from text (path and query values)."""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Sequence
from functools import cache
from typing import Any, cast

from google.protobuf import descriptor, json_format, message

FD = descriptor.FieldDescriptor

_INT_RANGES = {
    FD.CPPTYPE_INT32: (-(2**31), 2**31 - 1),
    FD.CPPTYPE_INT64: (-(2**63), 2**63 - 1),
    FD.CPPTYPE_UINT32: (0, 2**32 - 1),
    FD.CPPTYPE_UINT64: (0, 2**64 - 1),
}
_INTEGER = re.compile(r"[+-]?[0-9]+")
_TRUE = {"true", "1"}
_FALSE = {"false", "0"}
_WRAPPERS = {
    f"google.protobuf.{n}Value"
    for n in ("Double", "Float", "Int64", "UInt64", "Int32", "UInt32", "Bool", "String", "Bytes")
}


class FieldError(Exception):
    """One problem with one field (or the body); becomes a BadRequest violation."""

    def __init__(self, field: str, description: str) -> None:
        super().__init__(f"{field}: {description}")
        self.field = field
        self.description = description


@cache
def _fields_by_any_name(desc: descriptor.Descriptor) -> dict[str, FD]:
    out = {f.json_name: f for f in desc.fields}
    out.update((f.name, f) for f in desc.fields)
    return out


def descriptor_of(msg: message.Message) -> descriptor.Descriptor:
    """The descriptor of a message (typed; the stubs widen ``DESCRIPTOR``)."""
    return cast(descriptor.Descriptor, msg.DESCRIPTOR)


def find_field(desc: descriptor.Descriptor, name: str) -> FD | None:
    """The field called ``name`` (proto name or JSON name), if any."""
    return _fields_by_any_name(desc).get(name)


def is_map(field: FD) -> bool:
    """Whether ``field`` is a ``map<K, V>``."""
    return field.message_type is not None and field.message_type.GetOptions().map_entry


def is_well_known(desc: descriptor.Descriptor) -> bool:
    """Whether ``desc`` is one of google.protobuf's types with a special JSON form."""
    return desc.full_name.startswith("google.protobuf.")


def resolve(desc: descriptor.Descriptor, path: Sequence[str]) -> list[FD]:
    """The fields along a dotted path; every step but the last a singular message.

    Raises ``FieldError`` naming the path as written.
    """
    shown = ".".join(path)
    out: list[FD] = []
    current: descriptor.Descriptor | None = desc
    for i, name in enumerate(path):
        if current is None:
            raise FieldError(shown, f"{'.'.join(path[:i])} is not a message")
        field = find_field(current, name)
        if field is None:
            raise FieldError(shown, f"no field {name!r} in {current.full_name}")
        out.append(field)
        last = i == len(path) - 1
        if not last and (field.is_repeated or field.message_type is None):
            raise FieldError(shown, f"{name} is not a singular message")
        current = field.message_type
    return out


def settable_from_text(field: FD) -> bool:
    """Whether a path or query value can set ``field`` (scalars, enums, simple WKTs)."""
    if is_map(field):
        return False
    return field.message_type is None or is_well_known(field.message_type)


def parse_scalar(field: FD, text: str) -> object:
    """The value of a scalar or enum field written as ``text``; raises ValueError."""
    cpp = field.cpp_type
    if cpp == FD.CPPTYPE_STRING:
        if field.type == FD.TYPE_BYTES:
            return _parse_bytes(text)
        return text
    if cpp == FD.CPPTYPE_BOOL:
        low = text.lower()
        if low in _TRUE:
            return True
        if low in _FALSE:
            return False
        raise ValueError(f"{text!r} is not a bool (true or false)")
    if cpp in _INT_RANGES:
        if not _INTEGER.fullmatch(text):
            raise ValueError(f"{text!r} is not an integer")
        value = int(text)
        low_, high = _INT_RANGES[cpp]
        if not low_ <= value <= high:
            raise ValueError(f"{value} is out of range [{low_}, {high}]")
        return value
    if cpp in (FD.CPPTYPE_DOUBLE, FD.CPPTYPE_FLOAT):
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if cpp == FD.CPPTYPE_FLOAT and math.isfinite(number) and abs(number) > 3.4028235e38:
            raise ValueError(f"{text!r} is out of range for a float")
        return number
    if cpp == FD.CPPTYPE_ENUM and field.enum_type is not None:
        return _parse_enum(field.enum_type, text)
    raise ValueError(f"{field.name} cannot be set from text")


def _parse_bytes(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(padded)
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{text!r} is not base64") from None


def _parse_enum(enum: descriptor.EnumDescriptor, text: str) -> int:
    value = enum.values_by_name.get(text)
    if value is not None:
        return int(value.number)
    if _INTEGER.fullmatch(text) and int(text) in enum.values_by_number:
        return int(text)
    names = ", ".join(v.name for v in enum.values)
    raise ValueError(f"{text!r} is not a {enum.name} (one of {names})")


def set_from_text(msg: message.Message, path: Sequence[FD], values: Sequence[str]) -> None:
    """Set the field at ``path`` in ``msg`` from text values; raises ValueError.

    Repeated fields take every value; singular fields exactly one.
    """
    target = msg
    for field in path[:-1]:
        target = getattr(target, field.name)
    leaf = path[-1]
    if not settable_from_text(leaf):
        raise ValueError(f"{leaf.name} cannot be set from text; send it in a JSON body")
    if not leaf.is_repeated and len(values) != 1:
        raise ValueError(f"{leaf.name} takes one value, got {len(values)}")
    if leaf.message_type is not None:
        container = getattr(target, leaf.name)
        for text in values:
            sub = container.add() if leaf.is_repeated else container
            _set_well_known(sub, text)
        return
    parsed = [parse_scalar(leaf, text) for text in values]
    if leaf.is_repeated:
        getattr(target, leaf.name).extend(parsed)
    else:
        setattr(target, leaf.name, parsed[0])


def _set_well_known(msg: message.Message, text: str) -> None:
    desc = descriptor_of(msg)
    if desc.full_name in _WRAPPERS:
        inner = desc.fields_by_name["value"]
        setattr(msg, inner.name, parse_scalar(inner, text))
        return
    try:
        # Their JSON form is a string, which ParseDict takes as well.
        json_format.ParseDict(cast(Any, text), msg)
    except (json_format.ParseError, ValueError, TypeError) as err:
        raise ValueError(f"{text!r} is not a valid {desc.name}: {err}") from None


__all__ = [
    "descriptor_of",
    "FieldError",
    "find_field",
    "is_map",
    "is_well_known",
    "parse_scalar",
    "resolve",
    "set_from_text",
    "settable_from_text",
]

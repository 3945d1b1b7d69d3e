"""Building an RPC's request message from an HTTP request.

Order, as grpc-gateway: query parameters (unless the body is ``*``), then the
body, then path variables, which win over both. Every problem becomes a field
violation of one ``InvalidArgument``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from google.protobuf import descriptor, json_format, message

from meshwright.gateway._fields import (
    FieldError,
    descriptor_of,
    find_field,
    is_map,
    is_well_known,
    parse_scalar,
    resolve,
    set_from_text,
)
from meshwright.gateway.binding import HttpBinding
from meshwright.mesh.errors import FieldViolation, InvalidArgument

LAST_EVENT_ID = "Last-Event-ID"


def build_request(
    binding: HttpBinding,
    *,
    variables: Mapping[str, str],
    query: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    last_event_id: str | None = None,
) -> message.Message:
    """The request message for ``binding``; raises ``InvalidArgument``."""
    msg = binding.request_type()
    problems: list[FieldError] = []
    if binding.body != "*":
        problems.extend(_apply_query(msg, binding, query))
    if binding.body:
        try:
            _apply_body(msg, binding.body, body)
        except FieldError as err:
            problems.append(err)
    for name, value in variables.items():
        try:
            set_from_text(msg, binding.path_fields[name], [value])
        except ValueError as err:
            problems.append(FieldError(name, str(err)))
    resume = binding.resume_field
    if last_event_id is not None and resume is not None:
        try:
            setattr(msg, resume.name, parse_scalar(resume, last_event_id.strip()))
        except ValueError as err:
            problems.append(FieldError(LAST_EVENT_ID, f"not an event sequence: {err}"))
    if problems:
        raise InvalidArgument(
            "; ".join(f"{p.field}: {p.description}" for p in problems),
            violations=[FieldViolation(p.field, p.description) for p in problems],
        )
    return msg


def _apply_query(
    msg: message.Message, binding: HttpBinding, query: Sequence[tuple[str, str]]
) -> list[FieldError]:
    grouped: dict[str, list[str]] = {}
    for key, value in query:
        grouped.setdefault(key, []).append(value)
    bound = {tuple(f.number for f in fields) for fields in binding.path_fields.values()}
    problems: list[FieldError] = []
    for key, values in grouped.items():
        try:
            fields = resolve(descriptor_of(msg), key.split("."))
        except FieldError as err:
            problems.append(FieldError(key, f"unknown query parameter ({err.description})"))
            continue
        if tuple(f.number for f in fields) in bound:
            continue  # the path sets it
        if binding.body and fields[0].name == binding.body:
            problems.append(FieldError(key, f"is set by the request body ({binding.body})"))
            continue
        try:
            set_from_text(msg, fields, values)
        except ValueError as err:
            problems.append(FieldError(key, str(err)))
    return problems


def _apply_body(msg: message.Message, body_field: str, raw: bytes) -> None:
    if not raw.strip():
        return
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as err:
        raise FieldError("body", f"invalid JSON: {err}") from None
    if body_field == "*":
        if not isinstance(data, dict):
            raise FieldError("body", "must be a JSON object")
        wrapped: dict[str, Any] = data
    else:
        wrapped = {body_field: data}
    try:
        problem = _first_problem(descriptor_of(msg), wrapped, "")
    except RecursionError:
        raise FieldError("body", "nested too deeply") from None
    if problem is not None:
        raise problem
    try:
        json_format.ParseDict(wrapped, msg)
    except (json_format.ParseError, ValueError, TypeError, RecursionError) as err:
        raise FieldError("body", str(err)) from None


def _first_problem(
    desc: descriptor.Descriptor, obj: dict[str, Any], prefix: str
) -> FieldError | None:
    """The first key of ``obj`` naming no field, or message value of the wrong shape.

    json_format reports these without the field's path (and lets some, like a
    list where a message belongs, pass), so the gateway checks them itself.
    """
    for key, value in obj.items():
        here = f"{prefix}{key}"
        field = find_field(desc, key)
        if field is None:
            return FieldError(here, "unknown field")
        sub = field.message_type
        if sub is None or value is None:
            continue
        if is_map(field):
            if not isinstance(value, dict):
                return FieldError(here, "expected a JSON object (a map)")
            value_type = sub.fields_by_name["value"].message_type
            if value_type is None or is_well_known(value_type):
                continue
            found = _first_problem_in(value_type, [(f"{here}[{k}]", v) for k, v in value.items()])
        elif field.is_repeated:
            if not isinstance(value, list):
                return FieldError(here, "expected a JSON array")
            if is_well_known(sub):
                continue
            found = _first_problem_in(sub, [(f"{here}[{i}]", v) for i, v in enumerate(value)])
        elif is_well_known(sub):
            continue
        else:
            found = _first_problem_in(sub, [(here, value)])
        if found is not None:
            return found
    return None


def _first_problem_in(
    desc: descriptor.Descriptor, items: list[tuple[str, Any]]
) -> FieldError | None:
    for path, value in items:
        if not isinstance(value, dict):
            return FieldError(path, f"expected a JSON object ({desc.name})")
        found = _first_problem(desc, value, f"{path}.")
        if found is not None:
            return found
    return None


__all__ = ["LAST_EVENT_ID", "build_request"]

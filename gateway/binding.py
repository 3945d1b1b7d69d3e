"""HTTP bindings of RPCs, read from their ``google.api.http`` rules."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cache
from typing import Any, cast

from google.api import annotations_pb2
from google.protobuf import descriptor, message, message_factory

from meshwright.gateway._fields import FieldError, resolve, settable_from_text
from meshwright.gateway.status import message_json
from meshwright.gateway.template import PathTemplate

log = logging.getLogger(__name__)

FD = descriptor.FieldDescriptor

_INTEGER_TYPES = {FD.CPPTYPE_INT32, FD.CPPTYPE_INT64, FD.CPPTYPE_UINT32, FD.CPPTYPE_UINT64}
# Resumable streams: where a response carries its position, by field name.
_SEQUENCE_PATHS = (("sequence",), ("event", "sequence"))
RESUME_FIELD = "after_sequence"
"""Request field that a stream's ``Last-Event-ID`` sets."""


@dataclass(frozen=True, slots=True)
class HttpBinding:
    """One (HTTP method, path template) an RPC is reachable at."""

    http_method: str
    """Upper case, e.g. ``GET``; a ``custom`` rule's kind as written, upper-cased."""
    template: PathTemplate
    body: str
    """``""`` (no body), ``"*"`` (the whole request) or a top-level request field."""
    response_body: str
    """``""`` (the whole response) or the top-level response field to send."""
    method: descriptor.MethodDescriptor
    request_type: type[message.Message]
    response_type: type[message.Message]
    path_fields: dict[str, list[FD]] = field(default_factory=dict)
    """Resolved fields of the template's variables, by variable name."""

    @classmethod
    def for_method(
        cls,
        method: descriptor.MethodDescriptor,
        http_method: str,
        path: str,
        *,
        body: str = "",
        response_body: str = "",
    ) -> HttpBinding:
        """Bind ``method`` to ``http_method`` and the path template ``path``.

        Raises ``ValueError`` when the template or body names a field the
        request lacks, or a variable's field cannot take a path segment.
        """
        where = f"{method.full_name}: {http_method.upper()} {path}"
        template = PathTemplate.parse(path)
        request_desc = method.input_type
        path_fields: dict[str, list[FD]] = {}
        for var in template.variables:
            try:
                fields = resolve(request_desc, var.field_path)
            except FieldError as err:
                raise ValueError(f"{where}: {err}") from None
            leaf = fields[-1]
            if leaf.is_repeated or not settable_from_text(leaf):
                raise ValueError(f"{where}: {var.name} must be a singular scalar")
            if not template.single_segment(var) and leaf.type != FD.TYPE_STRING:
                raise ValueError(f"{where}: multi-segment {var.name} must be a string")
            path_fields[var.name] = fields
        if body not in ("", "*") and body not in request_desc.fields_by_name:
            raise ValueError(f"{where}: body {body!r} is not a field of {request_desc.full_name}")
        if response_body and response_body not in method.output_type.fields_by_name:
            raise ValueError(f"{where}: response_body {response_body!r} is not a response field")
        return cls(
            http_method=http_method.upper(),
            template=template,
            body=body,
            response_body=response_body,
            method=method,
            request_type=message_factory.GetMessageClass(request_desc),
            response_type=message_factory.GetMessageClass(method.output_type),
            path_fields=path_fields,
        )

    @property
    def rpc(self) -> str:
        """Short method name, as ``ServiceClient.call`` takes it."""
        return self.method.name

    @property
    def full_name(self) -> str:
        """``package.Service.Method``."""
        return self.method.full_name

    @property
    def server_streaming(self) -> bool:
        """Whether the RPC streams responses (served as Server-Sent Events)."""
        return self.method.server_streaming

    @property
    def resume_field(self) -> FD | None:
        """The request's integer ``after_sequence`` field, if it has one."""
        f = cast(FD | None, self.request_type.DESCRIPTOR.fields_by_name.get(RESUME_FIELD))
        if f is None or f.is_repeated or f.cpp_type not in _INTEGER_TYPES:
            return None
        return f

    def render(self, msg: message.Message) -> Any:
        """The JSON value sent for a response message (``response_body`` applied)."""
        if not self.response_body:
            return message_json(msg)
        f = self.response_type.DESCRIPTOR.fields_by_name[self.response_body]
        if f.message_type is not None and not f.is_repeated:
            # Unset message fields are left out of the parent's JSON; send {} instead.
            return message_json(getattr(msg, f.name))
        return message_json(msg)[f.json_name]

    def sequence(self, msg: message.Message) -> int | None:
        """The stream position a response carries (``sequence`` or ``event.sequence``)."""
        path = _sequence_path(self.response_type.DESCRIPTOR)
        if path is None:
            return None
        value: Any = msg
        for name in path:
            value = getattr(value, name)
        return int(value)


@cache
def _sequence_path(desc: descriptor.Descriptor) -> tuple[str, ...] | None:
    for path in _SEQUENCE_PATHS:
        current: descriptor.Descriptor | None = desc
        f: FD | None = None
        for name in path:
            f = None if current is None else current.fields_by_name.get(name)
            if f is None or f.is_repeated:
                break
            current = f.message_type
        else:
            if f is not None and f.cpp_type in _INTEGER_TYPES:
                return path
    return None


def bindings_of(service: descriptor.ServiceDescriptor) -> list[HttpBinding]:
    """Every HTTP binding of ``service``'s methods, additional bindings included.

    Methods without a ``google.api.http`` rule, and client-streaming methods,
    have none. Raises ``ValueError`` for a rule the gateway cannot serve (bad
    template, unknown field), so a broken contract fails at startup.
    """
    out: list[HttpBinding] = []
    for method in service.methods:
        options = method.GetOptions()
        if not options.HasExtension(annotations_pb2.http):
            continue
        if method.client_streaming:
            log.warning("%s is client-streaming; not exposed over HTTP", method.full_name)
            continue
        rule = options.Extensions[annotations_pb2.http]
        for r in (rule, *rule.additional_bindings):
            out.append(_binding(method, r))
    return out


def _binding(method: descriptor.MethodDescriptor, rule: Any) -> HttpBinding:
    kind = rule.WhichOneof("pattern")
    if kind is None:
        raise ValueError(f"{method.full_name}: google.api.http rule without a pattern")
    if kind == "custom":
        verb, path = str(rule.custom.kind), str(rule.custom.path)
    else:
        verb, path = kind, str(getattr(rule, kind))
    return HttpBinding.for_method(
        method, verb, path, body=str(rule.body), response_body=str(rule.response_body)
    )


__all__ = ["RESUME_FIELD", "HttpBinding", "bindings_of"]

"""Message classes and method paths read from service descriptors."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from google.protobuf import descriptor, message, message_factory


@dataclass(frozen=True, slots=True)
class MethodInfo:
    """What it takes to call or serve one RPC."""

    name: str
    """Short name, e.g. ``GetAgent``."""
    path: str
    """Full path, e.g. ``/meshwright.registry.v1.RegistryService/GetAgent``."""
    request_type: type[message.Message]
    response_type: type[message.Message]
    server_streaming: bool
    client_streaming: bool
    descriptor: descriptor.MethodDescriptor


@cache
def methods_of(service: descriptor.ServiceDescriptor) -> dict[str, MethodInfo]:
    """Every method of a service, by short name."""
    out: dict[str, MethodInfo] = {}
    for m in service.methods:
        out[m.name] = MethodInfo(
            name=m.name,
            path=f"/{service.full_name}/{m.name}",
            request_type=message_factory.GetMessageClass(m.input_type),
            response_type=message_factory.GetMessageClass(m.output_type),
            server_streaming=m.server_streaming,
            client_streaming=m.client_streaming,
            descriptor=m,
        )
    return out

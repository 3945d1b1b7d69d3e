"""Shared runtime: server bootstrap, clients, errors, configuration, paging."""

from meshwright.mesh.client import (
    ChannelPool,
    LocalServiceClient,
    RemoteServiceClient,
    ServiceClient,
)
from meshwright.mesh.config import MeshConfig
from meshwright.mesh.errors import (
    AlreadyExists,
    FailedPrecondition,
    FieldViolation,
    InvalidArgument,
    MeshError,
    NotFound,
    OutOfRange,
    ResourceExhausted,
    Unavailable,
)
from meshwright.mesh.server import MeshServer

__all__ = [
    "AlreadyExists",
    "ChannelPool",
    "FailedPrecondition",
    "FieldViolation",
    "InvalidArgument",
    "LocalServiceClient",
    "MeshConfig",
    "MeshError",
    "MeshServer",
    "NotFound",
    "OutOfRange",
    "RemoteServiceClient",
    "ResourceExhausted",
    "ServiceClient",
    "Unavailable",
]

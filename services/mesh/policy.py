"""Access policies: read from the contract, applied to every call.

Each RPC declares its policy with the ``(meshwright.mesh.v1.access)`` method
option (roles allowed, request fields that must belong to the caller, fields
only privileged callers may set); where the mesh serves a contract on behalf
of others (AgentService, routed by skill) ``mesh_access`` applies instead.
``policy_of`` refuses a method without one, so an RPC added without a policy
cannot be served (and the contract tests fail first).

Ownership is looked up by ``OwnerResolver``s the composition root registers
per resource kind (accounts and escrows from the economy, workflows from the
engine); agent ids are owned by the agent principal of the same subject, and a
principal name (a listing's ``owner`` filter) only by that principal.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

from google.protobuf import descriptor, message

from meshwright.mesh.auth import Principal, Role
from meshwright.mesh.errors import Internal, PermissionDenied
from meshwright.mesh.v1 import policy_pb2

OwnerResolver = Callable[[str], Awaitable[str | None]]
"""Owner (``role:subject``) of the resource with this id; None when it does not exist."""

ACCOUNT = policy_pb2.OWNER_KIND_ACCOUNT
AGENT = policy_pb2.OWNER_KIND_AGENT
WORKFLOW = policy_pb2.OWNER_KIND_WORKFLOW
ESCROW = policy_pb2.OWNER_KIND_ESCROW
PRINCIPAL = policy_pb2.OWNER_KIND_PRINCIPAL

_ROLE_OF = {
    policy_pb2.ROLE_ADMIN: Role.ADMIN,
    policy_pb2.ROLE_SERVICE: Role.SERVICE,
    policy_pb2.ROLE_AGENT: Role.AGENT,
    policy_pb2.ROLE_CLIENT: Role.CLIENT,
}


class RoleNotAllowed(PermissionDenied):
    """The caller's role may not call this RPC."""

    reason = "ROLE_NOT_ALLOWED"


class NotOwner(PermissionDenied):
    """A request field names a resource the caller does not own."""

    reason = "NOT_OWNER"


class PrivilegedField(PermissionDenied):
    """A request field only admins (or mesh services) may set was set."""

    reason = "PRIVILEGED_FIELD"


@dataclass(frozen=True, slots=True)
class OwnedField:
    """A request field that must name something the caller owns."""

    path: tuple[str, ...]
    kind: int
    strict: bool


@dataclass(frozen=True, slots=True)
class Policy:
    """Who may call one RPC, parsed from its option."""

    method: str
    roles: frozenset[Role]
    owned: tuple[OwnedField, ...]
    admin_only: tuple[tuple[str, ...], ...]
    service_only: tuple[tuple[str, ...], ...]

    def allows_role(self, role: Role) -> bool:
        return role in self.roles


_ACCESS: Any = policy_pb2.access
_MESH_ACCESS: Any = policy_pb2.mesh_access


def declared(method: descriptor.MethodDescriptor, *, mesh: bool = False) -> bool:
    """Whether the method carries an access policy (``mesh_access`` counts only with mesh)."""
    opts = method.GetOptions()
    if mesh and opts.HasExtension(_MESH_ACCESS):
        return True
    return bool(opts.HasExtension(_ACCESS))


@cache
def policy_of(method: descriptor.MethodDescriptor, *, mesh: bool = False) -> Policy:
    """The method's policy (``mesh_access`` first when ``mesh``); ValueError if it has none."""
    opts = method.GetOptions()
    raw: policy_pb2.AccessPolicy
    if mesh and opts.HasExtension(_MESH_ACCESS):
        raw = opts.Extensions[_MESH_ACCESS]
    elif opts.HasExtension(_ACCESS):
        raw = opts.Extensions[_ACCESS]
    else:
        raise ValueError(f"{method.full_name} declares no (meshwright.mesh.v1.access) policy")
    path = f"/{method.containing_service.full_name}/{method.name}"
    for f in [o.field for o in raw.owned_fields] + [
        *raw.admin_only_fields,
        *raw.service_only_fields,
    ]:
        _check_path(method.input_type, f, method.full_name)
    return Policy(
        method=path,
        roles=frozenset(_ROLE_OF[r] for r in raw.roles if r in _ROLE_OF),
        owned=tuple(
            OwnedField(tuple(o.field.split(".")), o.kind, o.strict) for o in raw.owned_fields
        ),
        admin_only=tuple(tuple(f.split(".")) for f in raw.admin_only_fields),
        service_only=tuple(tuple(f.split(".")) for f in raw.service_only_fields),
    )


def _check_path(msg: descriptor.Descriptor, path: str, where: str) -> None:
    for i, name in enumerate(path.split(".")):
        field = msg.fields_by_name.get(name)
        if field is None:
            raise ValueError(f"{where}: policy names unknown request field {path!r}")
        if i < len(path.split(".")) - 1:
            if field.message_type is None:
                raise ValueError(f"{where}: {path!r} goes through a non-message field")
            msg = field.message_type


def field_value(request: message.Message, path: tuple[str, ...]) -> object:
    """The value at ``path``; the default when a message on the way is unset."""
    current: message.Message = request
    for name in path[:-1]:
        if not current.HasField(name):
            return None
        current = getattr(current, name)
    return getattr(current, path[-1])


def _is_set(value: object) -> bool:
    if value is None:
        return False
    if isinstance(value, message.Message):
        return value.ByteSize() > 0
    try:
        return bool(value)  # scalars, repeated fields and maps: non-default is truthy
    except TypeError:
        return True


class Authorizer:
    """Applies policies: roles, privileged fields, ownership."""

    def __init__(self, resolvers: Mapping[int, OwnerResolver] | None = None) -> None:
        self.resolvers: dict[int, OwnerResolver] = dict(resolvers or {})

    def register(self, kind: int, resolver: OwnerResolver) -> None:
        """Look up owners of ``kind`` resources with ``resolver``."""
        self.resolvers[kind] = resolver

    async def authorize(self, policy: Policy, who: Principal, request: message.Message) -> None:
        """Return when ``who`` may make this call; ``PermissionDenied`` otherwise."""
        if not policy.allows_role(who.role):
            raise RoleNotAllowed(
                f"role {who.role.value!r} may not call {policy.method.rsplit('/', 1)[-1]}",
                metadata={"role": who.role.value},
            )
        if not who.is_admin:
            for path in policy.admin_only:
                if _is_set(field_value(request, path)):
                    raise PrivilegedField(
                        f"only admins may set {'.'.join(path)}", metadata={"field": ".".join(path)}
                    )
            if not who.is_trusted:
                for path in policy.service_only:
                    if _is_set(field_value(request, path)):
                        raise PrivilegedField(
                            f"only admins and mesh services may set {'.'.join(path)}",
                            metadata={"field": ".".join(path)},
                        )
        for owned in policy.owned:
            if who.is_trusted and not owned.strict:
                continue
            value = field_value(request, owned.path)
            if not isinstance(value, str) or not value:
                continue
            await self.require_owner(owned.kind, value, who, field=".".join(owned.path))

    async def require_owner(self, kind: int, value: str, who: Principal, *, field: str) -> None:
        """``NotOwner`` unless ``who`` owns the ``kind`` resource ``value``.

        A resource that does not exist is refused the same way, so callers learn
        nothing about others' ids and nobody can act on an id someone else
        creates between this check and the call. A ``PRINCIPAL`` value is owned
        by the principal of that name alone; callers that pass ownership checks
        (admins, mesh services) get here only for a strict field.
        """
        if kind == PRINCIPAL:
            if value == who.name:
                return
            raise NotOwner(
                f"{field}: {value!r} is not the caller's principal",
                metadata={"field": field},
            )
        if kind == AGENT:
            if who.role is Role.AGENT and who.subject == value:
                return
            if who.is_trusted:
                return
            raise NotOwner(
                f"{field}: agent {value!r} is not the caller's (agents act only as themselves)",
                metadata={"field": field},
            )
        resolver = self.resolvers.get(kind)
        if resolver is None:
            raise Internal(f"no owner lookup for {policy_pb2.OwnerKind.Name(kind)} configured")
        owner = await resolver(value)
        if owner is not None and owner == who.name:
            return
        if owner is None and who.is_trusted:
            return  # the RPC itself answers NOT_FOUND
        raise NotOwner(
            f"{field}: {value!r} does not exist or does not belong to the caller",
            metadata={"field": field},
        )


__all__ = [
    "ACCOUNT",
    "AGENT",
    "ESCROW",
    "PRINCIPAL",
    "WORKFLOW",
    "Authorizer",
    "NotOwner",
    "OwnerResolver",
    "Policy",
    "PrivilegedField",
    "RoleNotAllowed",
    "declared",
    "field_value",
    "policy_of",
]

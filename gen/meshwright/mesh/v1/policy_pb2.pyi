from google.protobuf import descriptor_pb2 as _descriptor_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Role(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ROLE_UNSPECIFIED: _ClassVar[Role]
    ROLE_ADMIN: _ClassVar[Role]
    ROLE_SERVICE: _ClassVar[Role]
    ROLE_AGENT: _ClassVar[Role]
    ROLE_CLIENT: _ClassVar[Role]

class OwnerKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OWNER_KIND_UNSPECIFIED: _ClassVar[OwnerKind]
    OWNER_KIND_ACCOUNT: _ClassVar[OwnerKind]
    OWNER_KIND_AGENT: _ClassVar[OwnerKind]
    OWNER_KIND_WORKFLOW: _ClassVar[OwnerKind]
    OWNER_KIND_ESCROW: _ClassVar[OwnerKind]
    OWNER_KIND_PRINCIPAL: _ClassVar[OwnerKind]
ROLE_UNSPECIFIED: Role
ROLE_ADMIN: Role
ROLE_SERVICE: Role
ROLE_AGENT: Role
ROLE_CLIENT: Role
OWNER_KIND_UNSPECIFIED: OwnerKind
OWNER_KIND_ACCOUNT: OwnerKind
OWNER_KIND_AGENT: OwnerKind
OWNER_KIND_WORKFLOW: OwnerKind
OWNER_KIND_ESCROW: OwnerKind
OWNER_KIND_PRINCIPAL: OwnerKind
ACCESS_FIELD_NUMBER: _ClassVar[int]
access: _descriptor.FieldDescriptor
MESH_ACCESS_FIELD_NUMBER: _ClassVar[int]
mesh_access: _descriptor.FieldDescriptor

class OwnedField(_message.Message):
    __slots__ = ("field", "kind", "strict")
    FIELD_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    STRICT_FIELD_NUMBER: _ClassVar[int]
    field: str
    kind: OwnerKind
    strict: bool
    def __init__(self, field: _Optional[str] = ..., kind: _Optional[_Union[OwnerKind, str]] = ..., strict: _Optional[bool] = ...) -> None: ...

class AccessPolicy(_message.Message):
    __slots__ = ("roles", "owned_fields", "admin_only_fields", "service_only_fields")
    ROLES_FIELD_NUMBER: _ClassVar[int]
    OWNED_FIELDS_FIELD_NUMBER: _ClassVar[int]
    ADMIN_ONLY_FIELDS_FIELD_NUMBER: _ClassVar[int]
    SERVICE_ONLY_FIELDS_FIELD_NUMBER: _ClassVar[int]
    roles: _containers.RepeatedScalarFieldContainer[Role]
    owned_fields: _containers.RepeatedCompositeFieldContainer[OwnedField]
    admin_only_fields: _containers.RepeatedScalarFieldContainer[str]
    service_only_fields: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, roles: _Optional[_Iterable[_Union[Role, str]]] = ..., owned_fields: _Optional[_Iterable[_Union[OwnedField, _Mapping]]] = ..., admin_only_fields: _Optional[_Iterable[str]] = ..., service_only_fields: _Optional[_Iterable[str]] = ...) -> None: ...

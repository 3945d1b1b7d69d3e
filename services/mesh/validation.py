"""Small checks shared by request validation across domains."""

from __future__ import annotations

import re

from google.protobuf import duration_pb2

from meshwright.mesh.auth import SUBJECT_PATTERN
from meshwright.mesh.errors import FieldViolation

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$")
"""Ids: 1-128 characters of letters, digits, '.', '_', ':', '-', not starting with a symbol."""


def check_id(value: str, field: str, *, required: bool = True) -> list[FieldViolation]:
    """Violations of an id field (empty list when fine)."""
    if not value:
        return [FieldViolation(field, "is required")] if required else []
    # fullmatch: "$" alone would accept "alice\n", a second account that looks like "alice".
    if not ID_PATTERN.fullmatch(value):
        return [
            FieldViolation(
                field,
                "must be 1-128 letters, digits, '.', '_', ':' or '-', starting with a letter "
                "or digit",
            )
        ]
    return []


PRINCIPAL_PATTERN = re.compile(r"(admin|service|agent|client):" + SUBJECT_PATTERN.pattern)
"""A principal's name: ``role:subject``."""


def check_principal(value: str, field: str) -> list[FieldViolation]:
    """Violations of a principal name field (``client:alice``); empty is fine."""
    if value and not PRINCIPAL_PATTERN.fullmatch(value):
        return [
            FieldViolation(
                field, "must be 'role:subject' with role admin, service, agent or client"
            )
        ]
    return []


def duration_s(value: duration_pb2.Duration) -> float:
    """A Duration in seconds."""
    return value.seconds + value.nanos / 1e9

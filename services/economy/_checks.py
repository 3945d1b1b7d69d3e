"""Shape checks on economy inputs; each returns violations, never raises."""

from __future__ import annotations

from meshwright.economy.model import INT64_MAX
from meshwright.mesh.errors import FieldViolation

MAX_NAME = 256
"""display_name and title."""
MAX_MEMO = 1024
"""memo and reference."""
MAX_DESCRIPTION = 16_384
MAX_REQUEST_ID = 256


def positive_amount(value: int, field: str) -> list[FieldViolation]:
    """An amount moved: 1..int64 max."""
    if value <= 0:
        return [FieldViolation(field, "must be positive")]
    if value > INT64_MAX:
        return [FieldViolation(field, "must fit in int64")]
    return []


def non_negative(value: int, field: str) -> list[FieldViolation]:
    """A count that may be zero: 0..int64 max."""
    if value < 0:
        return [FieldViolation(field, "must not be negative")]
    if value > INT64_MAX:
        return [FieldViolation(field, "must fit in int64")]
    return []


def text(value: str, field: str, max_len: int, *, required: bool = False) -> list[FieldViolation]:
    """Free text with a length bound (keeps ledger entries and the replay cache small)."""
    if required and not value.strip():
        return [FieldViolation(field, "is required")]
    if len(value) > max_len:
        return [FieldViolation(field, f"must be at most {max_len} characters")]
    return []


def request_id(value: str) -> list[FieldViolation]:
    """An idempotency key: optional, bounded."""
    return text(value, "request_id", MAX_REQUEST_ID)

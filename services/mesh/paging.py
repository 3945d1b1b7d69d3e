"""Page tokens and page sizes shared by every List RPC.

A page token is the opaque, url-safe encoding of the sort key of the last item
returned; tampered or foreign tokens are INVALID_ARGUMENT on ``page_token``.
"""

from __future__ import annotations

import base64
import binascii

from meshwright.mesh.errors import InvalidArgument

_PREFIX = "mw1:"


def encode_page_token(last_key: str) -> str:
    """The token that resumes after ``last_key``."""
    return base64.urlsafe_b64encode((_PREFIX + last_key).encode()).decode().rstrip("=")


def decode_page_token(token: str, *, field: str = "page_token") -> str | None:
    """The key a token resumes after; ``None`` for an empty token."""
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidArgument.field(field, "not a page token from this service") from None
    if not raw.startswith(_PREFIX):
        raise InvalidArgument.field(field, "not a page token from this service")
    return raw[len(_PREFIX) :]


def decode_position_token(token: str, *, field: str = "page_token") -> int | None:
    """A token whose key is a positive position number (a sequence, a creation count)."""
    key = decode_page_token(token, field=field)
    if key is None:
        return None
    # isascii: str.isdigit accepts digits like '²' that int() refuses; 19 digits
    # bound it to int64 (and below Python's int-from-string length limit).
    if not (key.isascii() and key.isdigit() and 0 < len(key) <= 19 and int(key) > 0):
        raise InvalidArgument.field(field, "not a page token from this service")
    return int(key)


def page_size(requested: int, *, default: int, maximum: int, field: str = "page_size") -> int:
    """The page size to use: ``default`` for 0, capped at ``maximum``."""
    if requested < 0:
        raise InvalidArgument.field(field, "must not be negative")
    if requested == 0:
        return default
    return min(requested, maximum)

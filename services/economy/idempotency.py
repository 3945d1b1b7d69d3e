"""Idempotency keys: a retried mutation replays its first result.

The kernel stores the key with the first result for a documented time
(``DEFAULT_IDEMPOTENCY_TTL_S``, 24 h) inside the same atomic step that applies
the change. A key is scoped by who sent it, so one client's request ids can
neither collide with nor reveal another's; the mesh's services share one
scope, so a workflow replica that takes over retries its predecessor's calls.
The fingerprint covers the operation and its request parameters (not generated
ids or the clock, which differ per retry).
"""

from __future__ import annotations

import hashlib

from meshwright.mesh.auth import Principal, Role


def fingerprint(operation: str, *params: object) -> str:
    """A fixed-size digest of the operation and its parameters."""
    raw = "\x1f".join([operation, *(repr(p) for p in params)]).encode()
    return hashlib.blake2b(raw, digest_size=16).hexdigest()


def scope_of(who: Principal | None) -> str:
    """Whose request ids a key belongs to: the principal, or ``service`` for any mesh service."""
    if who is None:
        return "internal"
    if who.role is Role.SERVICE:
        return "service"
    return who.name


def request_key(who: Principal | None, request_id: str) -> str:
    """The kernel key of a caller's request id."""
    return f"req:{scope_of(who)}:{request_id}"


__all__ = ["fingerprint", "request_key", "scope_of"]

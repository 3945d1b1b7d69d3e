"""The per-call context domain code reads: who calls, until when, with what metadata.

The call pipeline sets it for every call (gRPC, gateway, in-process), so
domain code never sees a gRPC context. Outgoing calls made while serving a
call carry its deadline and its propagated metadata (trace context, request
id) on; work that outlives the call (a workflow run) is started in a
``detached()`` context that keeps the metadata but not the deadline.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace

from meshwright.mesh.auth import Principal

PROPAGATED_KEYS = frozenset({"traceparent", "tracestate", "baggage", "x-request-id"})
"""Incoming metadata that outgoing calls carry on (never credentials)."""


@dataclass(frozen=True, slots=True)
class CallContext:
    """One call being served."""

    method: str
    """Full method path, ``/meshwright.economy.v1.EconomyService/GetAccount``."""
    principal: Principal
    """The authenticated caller."""
    deadline: float | None
    """``time.monotonic()`` value the call must end by; None when it has none."""
    metadata: tuple[tuple[str, str], ...] = ()
    """Incoming metadata (the credentials removed)."""
    peer: str = "local"
    """Where the call came from (``ipv4:127.0.0.1:5123``, or ``local`` in-process)."""

    def time_remaining(self) -> float | None:
        """Seconds left before the deadline (never negative), None without one."""
        if self.deadline is None:
            return None
        return max(0.0, self.deadline - time.monotonic())

    def propagated(self) -> tuple[tuple[str, str], ...]:
        """The metadata outgoing calls carry on."""
        return tuple((k, v) for k, v in self.metadata if k in PROPAGATED_KEYS)


_current: contextvars.ContextVar[CallContext | None] = contextvars.ContextVar(
    "meshwright_call", default=None
)


def current_call() -> CallContext | None:
    """The call being served in this task, None outside any call."""
    return _current.get()


def caller() -> Principal | None:
    """The principal of the call being served, None outside any call (internal work)."""
    call = _current.get()
    return None if call is None else call.principal


def enter(call: CallContext) -> None:
    """Make ``call`` current in this context for good (a context made for one call)."""
    _current.set(call)


@contextmanager
def serving(call: CallContext) -> Iterator[CallContext]:
    """Make ``call`` the current call for the block."""
    token = _current.set(call)
    try:
        yield call
    finally:
        _current.reset(token)


def detached() -> contextvars.Context:
    """A copy of the current context for work that outlives the call.

    The caller and metadata stay (for ownership and trace context); the deadline
    goes, so a workflow run started by CreateWorkflow is not cut off when the
    create call's deadline passes.
    """
    ctx = contextvars.copy_context()
    call = ctx.get(_current)
    if call is not None and call.deadline is not None:
        ctx.run(_current.set, replace(call, deadline=None))
    return ctx


__all__ = [
    "PROPAGATED_KEYS",
    "CallContext",
    "caller",
    "current_call",
    "detached",
    "enter",
    "serving",
]

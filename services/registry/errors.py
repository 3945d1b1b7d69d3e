"""Errors of the registry domain (codes come from meshwright.mesh.errors' table)."""

from __future__ import annotations

from meshwright.mesh.errors import (
    FailedPrecondition,
    NotFound,
    OutOfRange,
    PermissionDenied,
    Unavailable,
)


class AgentNotFound(NotFound):
    """No agent is registered under that id; the agent SDK registers again."""

    reason = "AGENT_NOT_FOUND"


class AgentStopped(AgentNotFound):
    """The agent deregistered (it is kept, STOPPED, for a while); register again."""

    reason = "AGENT_STOPPED"


class HistoryTrimmed(OutOfRange):
    """A watch asked to resume after a revision the registry no longer keeps the
    changes after (or one from before it restarted): list again, then watch."""

    reason = "WATCH_HISTORY_TRIMMED"


class LeaseMismatch(FailedPrecondition):
    """The heartbeat carried a lease that is not the agent's current one.

    The agent was registered again (by itself after a restart, or by someone
    else with the same id); the holder of the stale lease must register again.
    """

    reason = "LEASE_MISMATCH"


class WatchOverflow(Unavailable):
    """The watcher fell too far behind and its stream was ended; watch again."""

    reason = "WATCH_OVERFLOW"


class RegistryStopped(Unavailable):
    """The registry is shutting down; watch again elsewhere or later."""

    reason = "REGISTRY_STOPPED"


class PayoutNotOwn(PermissionDenied):
    """An agent named a payout account other than its own.

    An agent's pay goes to the account named after it (which it creates and
    owns); only admins may point a registration at another account, so nobody
    can redirect an agent's pay by registering it.
    """

    reason = "PAYOUT_NOT_OWN"

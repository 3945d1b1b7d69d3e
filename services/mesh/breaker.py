"""A circuit breaker per endpoint: stop sending work where it keeps failing.

The knobs are Dapr's resiliency circuit breakers: ``failure_threshold`` is its
``trip: consecutiveFailures >= N`` (Dapr writes ``> N - 1``), ``open_s`` its
``timeout`` (how long the breaker stays open before it lets probes through),
``half_open_max_probes`` its ``maxRequests`` (calls let through while
half-open). Dapr's ``interval`` (clear the counts every so often while closed)
has no counterpart: only *consecutive* failures trip this breaker, and any
success resets them.

States::

    CLOSED --failure_threshold consecutive failures--> OPEN
    OPEN --open_s elapsed--> HALF_OPEN (read lazily: no timer runs)
    HALF_OPEN --a probe succeeds--> CLOSED
    HALF_OPEN --a probe fails--> OPEN (for another open_s)

A caller asks for a ``Permit`` before each call and settles it afterwards
with exactly one of ``record_success``, ``record_failure`` or ``release``
(the call said nothing about the endpoint: cancelled, or a placement miss).
Permits remember the breaker's generation (it changes at every transition),
so the late outcome of a call admitted before the breaker opened or closed
does not move it again: a slow failure of the old generation must not re-open
a breaker a probe just closed, nor a slow success close one that opened since.

What counts as a failure is the caller's business (the balancer counts
UNAVAILABLE and DEADLINE_EXCEEDED, the dispatcher its own transport rule).
Not thread-safe: one event loop uses it, with no await between ``allows``,
``try_acquire`` and the settling calls.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class BreakerPolicy:
    """When an endpoint stops being offered calls after failures, and how it comes back."""

    failure_threshold: int = 3
    """Consecutive failures that open the breaker (at least 1; Dapr's ``consecutiveFailures``)."""
    open_s: float = 5.0
    """How long it stays open before probes are let through (> 0; Dapr's ``timeout``)."""
    half_open_max_probes: int = 1
    """Calls allowed in flight while half-open (at least 1; Dapr's ``maxRequests``)."""

    def __post_init__(self) -> None:
        if self.failure_threshold < 1:
            raise ValueError(f"failure_threshold must be >= 1, not {self.failure_threshold}")
        # ``not (x > 0)`` refuses NaN as well; an infinite open period never recovers.
        if not (self.open_s > 0) or math.isinf(self.open_s):
            raise ValueError(f"open_s must be a finite number > 0, not {self.open_s}")
        if self.half_open_max_probes < 1:
            raise ValueError(f"half_open_max_probes must be >= 1, not {self.half_open_max_probes}")


class BreakerState(enum.Enum):
    """Where a breaker is."""

    CLOSED = "closed"
    """Calls flow; consecutive failures are counted."""
    OPEN = "open"
    """No calls until ``open_s`` has passed since it opened."""
    HALF_OPEN = "half_open"
    """Up to ``half_open_max_probes`` calls at a time decide: one success closes, one failure
    re-opens."""


class Permit:
    """Leave to make one call through a breaker; settle it exactly once."""

    __slots__ = ("_breaker", "_generation", "_probe", "_settled")

    def __init__(self, breaker: CircuitBreaker, generation: int, probe: bool) -> None:
        self._breaker = breaker
        self._generation = generation
        self._probe = probe
        self._settled = False

    @property
    def probe(self) -> bool:
        """Whether the permit was given while half-open (its outcome decides the state)."""
        return self._probe

    @property
    def settled(self) -> bool:
        """Whether the permit was recorded or released already."""
        return self._settled

    def __repr__(self) -> str:
        return f"Permit(generation={self._generation}, probe={self._probe})"


class CircuitBreaker:
    """One endpoint's breaker under a ``BreakerPolicy``, on an injectable monotonic clock."""

    def __init__(
        self,
        policy: BreakerPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock``: monotonic seconds (tests pass a fake one to move through ``open_s``)."""
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self._state = BreakerState.CLOSED
        self._generation = 0
        self._consecutive_failures = 0
        self._opened_at = 0.0
        self._probes = 0
        self._times_opened = 0

    # -- counters (metrics) --------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The state now: an open breaker whose ``open_s`` has passed reads HALF_OPEN."""
        if self._state is BreakerState.OPEN and self._open_elapsed():
            return BreakerState.HALF_OPEN
        return self._state

    @property
    def consecutive_failures(self) -> int:
        """Failures in a row recorded since the last success (or since it closed)."""
        return self._consecutive_failures

    @property
    def times_opened(self) -> int:
        """How often the breaker has opened (a failed probe re-opening it counts again)."""
        return self._times_opened

    @property
    def probes_in_flight(self) -> int:
        """Half-open permits given and not settled yet."""
        return self._probes

    # -- admission -----------------------------------------------------------

    def allows(self) -> bool:
        """Whether ``try_acquire`` would give a permit now; changes nothing."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.OPEN:
            return False
        # A breaker still OPEN internally whose period is over has no probes out yet.
        probes = self._probes if self._state is BreakerState.HALF_OPEN else 0
        return probes < self.policy.half_open_max_probes

    def try_acquire(self) -> Permit | None:
        """A permit for one call, or None while open (or while half-open with every probe out)."""
        if self._state is BreakerState.OPEN:
            if not self._open_elapsed():
                return None
            self._enter(BreakerState.HALF_OPEN)
        if self._state is BreakerState.CLOSED:
            return Permit(self, self._generation, probe=False)
        if self._probes >= self.policy.half_open_max_probes:
            return None
        self._probes += 1
        return Permit(self, self._generation, probe=True)

    # -- outcomes ------------------------------------------------------------

    def record_success(self, permit: Permit) -> None:
        """The call went through: the endpoint works (closes a half-open breaker)."""
        if not self._settle(permit):
            return
        if permit.probe:
            self._enter(BreakerState.CLOSED)
        else:
            self._consecutive_failures = 0

    def record_failure(self, permit: Permit) -> None:
        """The call failed in a way that counts against the endpoint.

        The ``failure_threshold``-th failure in a row opens the breaker; a failed
        probe re-opens it for another ``open_s``.
        """
        if not self._settle(permit):
            return
        self._consecutive_failures += 1
        if permit.probe or self._consecutive_failures >= self.policy.failure_threshold:
            self._enter(BreakerState.OPEN)

    def release(self, permit: Permit) -> None:
        """The call said nothing about the endpoint (cancelled, refused before it ran):
        give the permit back without judging. A released probe frees its slot."""
        self._settle(permit)

    def _settle(self, permit: Permit) -> bool:
        """Mark ``permit`` settled; whether its outcome still counts (current generation)."""
        if permit._breaker is not self:
            raise ValueError("the permit belongs to another breaker")
        if permit._settled:
            return False
        permit._settled = True
        if permit._generation != self._generation:
            return False  # admitted before the last transition: stale news
        if permit.probe:
            self._probes -= 1
        return True

    def _enter(self, state: BreakerState) -> None:
        self._state = state
        self._generation += 1
        self._probes = 0
        if state is BreakerState.OPEN:
            self._opened_at = self._clock()
            self._times_opened += 1
        elif state is BreakerState.CLOSED:
            self._consecutive_failures = 0

    def _open_elapsed(self) -> bool:
        return self._clock() - self._opened_at >= self.policy.open_s

    def __repr__(self) -> str:
        return (
            f"CircuitBreaker(state={self.state.value}, "
            f"consecutive_failures={self._consecutive_failures}, "
            f"times_opened={self._times_opened})"
        )


__all__ = ["BreakerPolicy", "BreakerState", "CircuitBreaker", "Permit"]

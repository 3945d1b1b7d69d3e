"""The circuit breaker state machine, on a clock the tests move.

The breaker is pure bookkeeping (no I/O), so these tests drive it directly;
tests/mesh/test_balancer.py and tests/workflow/test_dispatch_breaker.py show
it against real servers.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from meshwright.mesh.breaker import BreakerPolicy, BreakerState, CircuitBreaker, Permit


class Clock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, **policy: Any) -> CircuitBreaker:
    return CircuitBreaker(BreakerPolicy(**policy), clock=clock)


def fail(cb: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        permit = cb.try_acquire()
        assert permit is not None
        cb.record_failure(permit)


def opened(
    threshold: int = 3, open_s: float = 5.0, probes: int = 1
) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    cb = breaker(clock, failure_threshold=threshold, open_s=open_s, half_open_max_probes=probes)
    fail(cb, threshold)
    assert cb.state is BreakerState.OPEN
    return cb, clock


# -- the policy ----------------------------------------------------------------------------


def test_the_defaults_are_dapr_like() -> None:
    policy = BreakerPolicy()
    assert (policy.failure_threshold, policy.open_s, policy.half_open_max_probes) == (3, 5.0, 1)
    assert CircuitBreaker().policy == policy


@pytest.mark.parametrize(
    "fields",
    [
        {"failure_threshold": 0},
        {"failure_threshold": -1},
        {"open_s": 0.0},
        {"open_s": -1.0},
        {"open_s": math.nan},
        {"open_s": math.inf},
        {"half_open_max_probes": 0},
    ],
    ids=str,
)
def test_a_policy_out_of_range_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        BreakerPolicy(**fields)


def test_the_smallest_policy_is_accepted() -> None:
    policy = BreakerPolicy(failure_threshold=1, open_s=1e-9, half_open_max_probes=1)
    cb = CircuitBreaker(policy, clock=Clock())
    fail(cb)  # one failure is the threshold
    assert cb.state is BreakerState.OPEN


def test_the_policy_is_keyword_only_and_frozen() -> None:
    with pytest.raises(TypeError):
        BreakerPolicy(3)  # type: ignore[misc]
    with pytest.raises(AttributeError):
        BreakerPolicy().open_s = 1.0  # type: ignore[misc]


# -- closed --------------------------------------------------------------------------------


def test_it_opens_at_exactly_the_threshold() -> None:
    clock = Clock()
    cb = breaker(clock, failure_threshold=3)
    fail(cb, 2)  # threshold - 1
    assert cb.state is BreakerState.CLOSED and cb.allows()
    assert cb.consecutive_failures == 2 and cb.times_opened == 0
    fail(cb)  # the threshold
    assert cb.state is BreakerState.OPEN
    assert not cb.allows() and cb.try_acquire() is None
    assert cb.consecutive_failures == 3 and cb.times_opened == 1


def test_a_success_resets_the_consecutive_failures() -> None:
    cb = breaker(Clock(), failure_threshold=3)
    fail(cb, 2)
    permit = cb.try_acquire()
    assert permit is not None and not permit.probe
    cb.record_success(permit)
    assert cb.consecutive_failures == 0
    fail(cb, 2)
    assert cb.state is BreakerState.CLOSED


def test_a_release_judges_nothing() -> None:
    cb = breaker(Clock(), failure_threshold=2)
    fail(cb)
    for _ in range(5):
        permit = cb.try_acquire()
        assert permit is not None
        cb.release(permit)
        assert permit.settled
    assert cb.consecutive_failures == 1 and cb.state is BreakerState.CLOSED
    fail(cb)  # the failure before the releases still counts
    assert cb.state is BreakerState.OPEN


def test_closed_permits_are_unlimited() -> None:
    cb = breaker(Clock(), half_open_max_probes=1)
    permits = [cb.try_acquire() for _ in range(100)]
    assert all(p is not None and not p.probe for p in permits)
    assert cb.probes_in_flight == 0


# -- open and half-open --------------------------------------------------------------------


def test_it_half_opens_at_exactly_open_s() -> None:
    cb, clock = opened(open_s=5.0)
    clock.now += 4.999
    assert cb.state is BreakerState.OPEN and not cb.allows() and cb.try_acquire() is None
    clock.now += 0.001  # exactly open_s since it opened
    assert cb.state is BreakerState.HALF_OPEN and cb.allows()
    permit = cb.try_acquire()
    assert permit is not None and permit.probe


def test_allows_changes_nothing() -> None:
    cb, clock = opened(probes=1)
    clock.now += 5
    for _ in range(10):
        assert cb.allows()
    assert cb.probes_in_flight == 0
    assert cb.try_acquire() is not None
    assert not cb.allows()  # the one probe is out


@pytest.mark.parametrize("probes", [1, 3])
def test_half_open_lets_exactly_max_probes_through_at_a_time(probes: int) -> None:
    cb, clock = opened(probes=probes)
    clock.now += 5
    out = [cb.try_acquire() for _ in range(probes)]
    assert all(p is not None and p.probe for p in out)
    assert cb.probes_in_flight == probes
    assert not cb.allows() and cb.try_acquire() is None  # one past the limit
    first = out[0]
    assert first is not None
    cb.release(first)  # a probe that said nothing frees its slot
    assert cb.state is BreakerState.HALF_OPEN and cb.allows()
    assert cb.try_acquire() is not None
    assert cb.try_acquire() is None


def test_a_probe_success_closes_it() -> None:
    cb, clock = opened(threshold=2)
    clock.now += 5
    probe = cb.try_acquire()
    assert probe is not None
    cb.record_success(probe)
    assert cb.state is BreakerState.CLOSED and cb.consecutive_failures == 0
    assert cb.times_opened == 1 and cb.probes_in_flight == 0
    fail(cb)  # counting starts again from zero
    assert cb.state is BreakerState.CLOSED
    fail(cb)
    assert cb.state is BreakerState.OPEN and cb.times_opened == 2


def test_a_probe_failure_reopens_it_for_another_open_s() -> None:
    cb, clock = opened(open_s=5.0)
    clock.now += 7  # later than open_s: the new period counts from the failed probe
    probe = cb.try_acquire()
    assert probe is not None
    cb.record_failure(probe)
    assert cb.state is BreakerState.OPEN and cb.times_opened == 2
    clock.now += 4.999
    assert cb.try_acquire() is None
    clock.now += 0.001
    assert cb.state is BreakerState.HALF_OPEN and cb.try_acquire() is not None


def test_one_probe_decides_for_the_others_out() -> None:
    cb, clock = opened(probes=2)
    clock.now += 5
    a, b = cb.try_acquire(), cb.try_acquire()
    assert a is not None and b is not None
    cb.record_success(a)
    assert cb.state is BreakerState.CLOSED
    cb.record_failure(b)  # admitted under the half-open state that is over
    assert cb.state is BreakerState.CLOSED and cb.consecutive_failures == 0


# -- late and repeated outcomes ------------------------------------------------------------


def test_outcomes_of_calls_admitted_before_it_opened_change_nothing() -> None:
    clock = Clock()
    cb = breaker(clock, failure_threshold=2, open_s=5.0)
    slow_ok, slow_fail = cb.try_acquire(), cb.try_acquire()
    assert slow_ok is not None and slow_fail is not None
    fail(cb, 2)
    assert cb.state is BreakerState.OPEN
    clock.now += 3
    cb.record_success(slow_ok)  # a success from before: does not close it
    cb.record_failure(slow_fail)  # a failure from before: does not extend the period
    assert cb.state is BreakerState.OPEN and cb.times_opened == 1
    clock.now += 2
    assert cb.state is BreakerState.HALF_OPEN


def test_a_closed_permit_settled_while_half_open_does_not_decide() -> None:
    clock = Clock()
    cb = breaker(clock, failure_threshold=1, open_s=5.0)
    old = cb.try_acquire()
    assert old is not None
    fail(cb)
    clock.now += 5
    probe = cb.try_acquire()
    assert probe is not None
    cb.record_failure(old)
    assert cb.state is BreakerState.HALF_OPEN and cb.probes_in_flight == 1
    cb.record_success(probe)
    assert cb.state is BreakerState.CLOSED


def test_settling_a_permit_twice_does_nothing_the_second_time() -> None:
    cb = breaker(Clock(), failure_threshold=2)
    permit = cb.try_acquire()
    assert permit is not None
    cb.record_failure(permit)
    cb.record_failure(permit)
    cb.release(permit)
    cb.record_success(permit)
    assert cb.consecutive_failures == 1 and cb.state is BreakerState.CLOSED


def test_a_permit_of_another_breaker_is_refused() -> None:
    one, other = CircuitBreaker(clock=Clock()), CircuitBreaker(clock=Clock())
    permit = one.try_acquire()
    assert isinstance(permit, Permit)
    for settle in (other.record_success, other.record_failure, other.release):
        with pytest.raises(ValueError):
            settle(permit)
    assert not permit.settled


def test_repr_shows_the_counters() -> None:
    cb, _ = opened()
    assert repr(cb) == "CircuitBreaker(state=open, consecutive_failures=3, times_opened=1)"
    assert "probe=False" in repr(CircuitBreaker().try_acquire())

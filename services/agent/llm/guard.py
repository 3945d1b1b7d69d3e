"""Calls to the model server behind a circuit breaker, and the agent's degraded state.

``ModelGuard`` decides, per call, whether to try the server at all and keeps
what the rest of the agent reports:

- The breaker is the mesh's own (``meshwright.mesh.breaker``, the one the
  balancer and dispatcher use, Dapr's knobs): ``breaker_failures`` counted
  failures in a row open it; while open no call reaches the server and the
  answer comes from the fallback at once; after ``breaker_open_s`` one probe
  may go (half-open) and its outcome closes or re-opens it.
- Degraded is "the last thing the server did was fail": set by any counted
  failure, cleared by any success. While degraded a background probe (Ollama's
  tags, ``/v1/models``) asks every ``probe_interval_s`` whether the server is
  back — it takes the half-open permit like any call — so the agent recovers
  without waiting for traffic to find out.
- A timeout that only the task's own short deadline caused says nothing about
  the server: it is answered from the fallback but not counted.

Changes of the degraded state reach the registry as the agent's health detail
(``DEGRADED: ...``; the agent stays offered work) and the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge

from meshwright.agent.llm._model import (
    BREAKER_OPEN,
    DESCRIPTIONS,
    NO_TIME,
    TIMEOUT,
    ModelBackend,
    ModelFailure,
)
from meshwright.agent.llm.config import LlmConfig
from meshwright.mesh.breaker import BreakerPolicy, BreakerState, CircuitBreaker

log = logging.getLogger(__name__)

T = TypeVar("T")

BREAKER_CODES = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}
"""``meshwright_llm_breaker_state`` values."""
MIN_BUDGET_S = 0.05
"""Less time than this for a model call is no time: answer from the fallback."""


class Degraded(Exception):
    """The model gave no answer; answer from the fallback. ``reason`` names why."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class LlmMetrics:
    """The LLM agent's families, on the runtime's registry."""

    def __init__(self, registry: CollectorRegistry, guard: ModelGuard) -> None:
        self.degraded = Gauge(
            "meshwright_llm_degraded",
            "1 while the model server fails and answers come from the fallback, else 0",
            registry=registry,
        )
        self.degraded.set_function(lambda: 1.0 if guard.degraded else 0.0)
        self.breaker_state = Gauge(
            "meshwright_llm_breaker_state",
            "The model server's circuit breaker: 0 closed, 1 half-open, 2 open",
            registry=registry,
        )
        self.breaker_state.set_function(lambda: float(BREAKER_CODES[guard.breaker.state]))
        self.fallback = Counter(
            "meshwright_llm_fallback",
            "Answers given by the deterministic fallback, by skill and reason",
            ["skill", "reason"],
            registry=registry,
        )
        self.requests = Counter(
            "meshwright_llm_requests",
            "Calls made to the model server, by outcome (ok or the failure reason)",
            ["outcome"],
            registry=registry,
        )
        self.probes = Counter(
            "meshwright_llm_probes",
            "Background probes of a failing model server, by outcome",
            ["outcome"],
            registry=registry,
        )


class ModelGuard:
    """One model server's breaker, degraded state, probe and health reports."""

    def __init__(
        self,
        config: LlmConfig,
        backend: Callable[[], ModelBackend],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``backend`` makes the backend on first use (inside the event loop)."""
        self.config = config
        self._make_backend = backend
        self._backend: ModelBackend | None = None
        self.breaker = CircuitBreaker(
            BreakerPolicy(failure_threshold=config.breaker_failures, open_s=config.breaker_open_s),
            clock=clock,
        )
        self.degraded_reason = ""
        """Why the last counted call failed; empty while the server answers."""
        self.degraded_message = ""
        self.metrics: LlmMetrics | None = None
        self.calls = 0
        """Calls made to the server (probes not counted)."""
        self._report: Callable[[str], Awaitable[None]] | None = None
        self._reported = ""
        self._changed = asyncio.Event()
        self._failing = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def degraded(self) -> bool:
        return bool(self.degraded_reason)

    @property
    def backend(self) -> ModelBackend:
        if self._backend is None:
            self._backend = self._make_backend()
        return self._backend

    @property
    def health_detail(self) -> str:
        """What the registry shows: empty while the server answers."""
        if not self.degraded:
            return ""
        what = DESCRIPTIONS.get(self.degraded_reason, self.degraded_reason)
        return (
            f"DEGRADED: {what} ({self.config.backend} {self.config.model} at "
            f"{self.config.host}); answering from the fallback"
        )

    # -- lifecycle -------------------------------------------------------------

    def attach(
        self, registry: CollectorRegistry | None, report: Callable[[str], Awaitable[None]] | None
    ) -> None:
        """Start the probe and the health reporter; metrics on ``registry``; details to
        ``report`` (``AgentRuntime.report_health_detail``)."""
        if registry is not None:
            self.metrics = LlmMetrics(registry, self)
        self._report = report
        self._reported = ""
        self._tasks = [
            asyncio.create_task(self._first_probe(), name="llm-first-probe"),
            asyncio.create_task(self._probe_loop(), name="llm-probe"),
            asyncio.create_task(self._report_loop(), name="llm-health-detail"),
        ]
        if self.degraded:
            self._failing.set()
            self._changed.set()

    async def close(self) -> None:
        """Stop the background work and close the backend."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self._backend is not None:
            backend, self._backend = self._backend, None
            await backend.close()

    # -- calls -------------------------------------------------------------------

    async def call(self, fn: Callable[[ModelBackend], Awaitable[T]], budget_s: float) -> T:
        """``fn(backend)`` if the breaker lets it and there is time; else ``Degraded``.

        A ``ModelFailure`` becomes ``Degraded`` with its reason (counted against the
        server unless ``counts`` is False on it).
        """
        if budget_s < MIN_BUDGET_S:
            raise Degraded(NO_TIME, f"the task's deadline leaves {budget_s:.3f}s")
        permit = self.breaker.try_acquire()
        if permit is None:
            raise Degraded(
                BREAKER_OPEN,
                f"not calling the model server after {self.config.breaker_failures} failures "
                f"in a row (last: {self.degraded_reason or 'unknown'}: "
                f"{self.degraded_message}); it is tried again after "
                f"{self.config.breaker_open_s:g}s",
            )
        self.calls += 1
        try:
            result = await fn(self.backend)
        except ModelFailure as failure:
            if failure.counts:
                self.breaker.record_failure(permit)
                self._failed(failure)
            else:
                self.breaker.release(permit)
            self._count_request(failure.reason)
            raise Degraded(failure.reason, failure.message) from None
        except BaseException:
            self.breaker.release(permit)  # cancelled, or our own bug: says nothing
            raise
        self.breaker.record_success(permit)
        self._count_request("ok")
        self._recovered()
        return result

    def _count_request(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.requests.labels(outcome=outcome).inc()

    def count_fallback(self, skill: str, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.fallback.labels(skill=skill, reason=reason).inc()

    def _failed(self, failure: ModelFailure) -> None:
        if not self.degraded:
            log.warning(
                "model server failing (%s: %s); answering from the fallback",
                failure.reason,
                failure.message,
            )
        changed = failure.reason != self.degraded_reason
        self.degraded_reason, self.degraded_message = failure.reason, failure.message
        self._failing.set()
        if changed:
            self._changed.set()

    def _recovered(self) -> None:
        if not self.degraded:
            return
        log.info("model server answers again; the fallback is off")
        self.degraded_reason = self.degraded_message = ""
        self._failing.clear()
        self._changed.set()

    # -- background ---------------------------------------------------------------

    async def probe_once(self) -> bool:
        """One probe if the breaker gives a permit: True if the server is back."""
        permit = self.breaker.try_acquire()
        if permit is None:
            return False  # open and cooling down, or a half-open call is out already
        try:
            async with asyncio.timeout(self.config.first_token_timeout_s):
                await self.backend.probe()
        except TimeoutError:
            self.breaker.record_failure(permit)
            self._probed(TIMEOUT)
            self._failed(
                ModelFailure(
                    TIMEOUT, f"no answer to a probe within {self.config.first_token_timeout_s:g}s"
                )
            )
            return False
        except ModelFailure as failure:
            self.breaker.record_failure(permit)
            self._probed(failure.reason)
            self._failed(failure)
            return False
        except BaseException:
            self.breaker.release(permit)
            raise
        self.breaker.record_success(permit)
        self._probed("ok")
        self._recovered()
        return True

    def _probed(self, outcome: str) -> None:
        if self.metrics is not None:
            self.metrics.probes.labels(outcome=outcome).inc()

    async def _first_probe(self) -> None:
        # A server down or a model missing at start shows at once (DEGRADED in the
        # registry), not only when the first task fails.
        try:
            await self.probe_once()
        except Exception:
            log.exception("the model server probe failed unexpectedly")

    async def _probe_loop(self) -> None:
        while True:
            await self._failing.wait()
            # A periodic probe, not a test wait: the server gives no signal of its return.
            await asyncio.sleep(self.config.probe_interval_s)
            if self.degraded:
                try:
                    await self.probe_once()
                except Exception:
                    log.exception("the model server probe failed unexpectedly")

    async def _report_loop(self) -> None:
        while True:
            await self._changed.wait()
            self._changed.clear()
            detail = self.health_detail
            if self._report is None or detail == self._reported:
                continue
            try:
                await self._report(detail)
                self._reported = detail
            except Exception:
                log.exception("could not report the health detail")


__all__ = ["BREAKER_CODES", "MIN_BUDGET_S", "Degraded", "LlmMetrics", "ModelGuard"]

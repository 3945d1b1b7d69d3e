"""Active health checking for backends that do not do it themselves (memory).

Every ``interval_s`` the prober calls each live agent's ``grpc.health.v1.Health/Check``
(the overall status, service ""), as Consul's GRPC check does; a new registration is
probed at once, so STARTING lasts one round trip, not one interval. A SERVING answer
makes the agent healthy; ``unhealthy_threshold`` failures in a row (an error, a
timeout, any other status) make it unhealthy (INACTIVE, the failure as the reason)
until a probe passes again. Verdicts are tied to the lease they were made for, so a
late answer about a process that has since registered again changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2

from meshwright.mesh.client import ChannelPool
from meshwright.registry.backend import RegistryBackend
from meshwright.registry.records import ADDED, REMOVED, AgentQuery, AgentRecord, Change

log = logging.getLogger(__name__)

_CHECK = "/grpc.health.v1.Health/Check"
SERVING = health_pb2.HealthCheckResponse.SERVING


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthCheckPolicy:
    """How the registry probes agents."""

    interval_s: float = 5.0
    """Time between probes of one agent."""
    timeout_s: float = 2.0
    """Deadline of one probe."""
    unhealthy_threshold: int = 2
    """Failed probes in a row that make an agent unhealthy."""
    concurrency: int = 64
    """Probes in flight at once, whatever the number of agents."""

    def __post_init__(self) -> None:
        if self.interval_s <= 0 or self.timeout_s <= 0:
            raise ValueError("health check interval_s and timeout_s must be positive")
        if self.unhealthy_threshold < 1 or self.concurrency < 1:
            raise ValueError("health check unhealthy_threshold and concurrency must be >= 1")


class HealthProber:
    """Probes every registered agent and records verdicts in the backend."""

    def __init__(
        self,
        backend: RegistryBackend,
        channels: ChannelPool,
        policy: HealthCheckPolicy,
        *,
        clock: Callable[[], float],
    ) -> None:
        """``channels`` is the prober's own pool (the prober closes what it opened)."""
        self._backend = backend
        self._channels = channels
        self.policy = policy
        self._clock = clock
        self._failures: dict[tuple[str, str], int] = {}  # (agent, lease) -> failures in a row
        self._endpoints: dict[str, int] = {}  # endpoint -> agents probed there
        self._limit = asyncio.Semaphore(policy.concurrency)
        self._task: asyncio.Task[None] | None = None
        self._probes: set[asyncio.Task[Any]] = set()
        self._unsubscribe: Callable[[], None] | None = None
        self.probes = 0
        """Probes made so far."""

    async def start(self) -> None:
        """Probe new registrations at once and everything every interval."""
        if self._task is None:
            self._unsubscribe = self._backend.subscribe(self._on_change)
            self._task = asyncio.create_task(self._loop(), name="registry-health-prober")

    async def stop(self) -> None:
        """Stop probing and close the probe channels."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        tasks = [t for t in (self._task, *self._probes) if t is not None]
        self._task = None
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        await self._channels.close()

    def _on_change(self, change: Change) -> None:
        record, previous = change.record, change.previous
        if change.kind == REMOVED:
            self._failures.pop((record.agent_id, record.lease_id), None)
            return
        if change.kind == ADDED or (previous is not None and previous.lease_id != record.lease_id):
            if previous is not None:
                self._failures.pop((previous.agent_id, previous.lease_id), None)
            self._spawn(record)

    def _spawn(self, record: AgentRecord) -> None:
        task = asyncio.create_task(self.probe(record), name=f"health-probe-{record.agent_id}")
        self._probes.add(task)
        task.add_done_callback(self._probes.discard)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.policy.interval_s)
            try:
                listing = await self._backend.list(AgentQuery(now=self._clock(), stopped=False))
            except Exception:  # a failing backend must not end probing for good
                log.exception("health prober could not list agents")
                continue
            results = await asyncio.gather(
                *(self.probe(r) for r in listing.records), return_exceptions=True
            )
            for err in results:  # one failed verdict must not end probing for good
                if isinstance(err, Exception):
                    log.warning("health probe failed: %r", err)
            self._forget_endpoints({r.endpoint for r in listing.records})

    async def probe(self, record: AgentRecord) -> bool:
        """Probe one agent now and record the verdict; returns whether it passed."""
        async with self._limit:
            ok, reason = await self._check(record.endpoint)
        self.probes += 1
        key = (record.agent_id, record.lease_id)
        if ok:
            self._failures.pop(key, None)
            await self._backend.set_health(
                record.agent_id, record.lease_id, healthy=True, reason="", now=self._clock()
            )
            return True
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        if failures >= self.policy.unhealthy_threshold:
            await self._backend.set_health(
                record.agent_id,
                record.lease_id,
                healthy=False,
                reason=f"health check failing: {reason}",
                now=self._clock(),
            )
        return False

    async def _check(self, endpoint: str) -> tuple[bool, str]:
        self._endpoints.setdefault(endpoint, 0)
        check = self._channels.get(endpoint).unary_unary(
            _CHECK,
            request_serializer=health_pb2.HealthCheckRequest.SerializeToString,
            response_deserializer=health_pb2.HealthCheckResponse.FromString,
        )
        try:
            reply = await check(health_pb2.HealthCheckRequest(), timeout=self.policy.timeout_s)
        except grpc.aio.AioRpcError as err:
            return False, f"{err.code().name}: {err.details() or ''}".rstrip(": ")
        except (grpc.aio.UsageError, OSError) as err:
            return False, str(err)
        if reply.status != SERVING:
            return False, health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
        return True, ""

    def _forget_endpoints(self, live: set[str]) -> None:
        for endpoint in [e for e in self._endpoints if e not in live]:
            del self._endpoints[endpoint]
            task = asyncio.create_task(self._channels.discard(endpoint))
            self._probes.add(task)
            task.add_done_callback(self._probes.discard)

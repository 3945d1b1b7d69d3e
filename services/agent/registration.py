"""Keeping an agent registered: register, heartbeat, re-register, drain, deregister.

Talks to the registry (and, once, to the economy for the payout account)
only through their contracts. A registry that cannot be reached is retried
with capped backoff while the agent keeps serving; a registry that forgot the
agent (restart, lapsed lease) gets a fresh registration.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from google.protobuf import duration_pb2

from meshwright.agent.heartbeats import HeartbeatStream
from meshwright.economy.v1 import economy_pb2
from meshwright.mesh.client import ServiceClient
from meshwright.mesh.errors import (
    AlreadyExists,
    Cancelled,
    DeadlineExceeded,
    FailedPrecondition,
    MeshError,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
    Unimplemented,
)
from meshwright.registry.v1 import registry_pb2

log = logging.getLogger(__name__)

REGISTRY_SERVICE = registry_pb2.DESCRIPTOR.services_by_name["RegistryService"]
ECONOMY_SERVICE = economy_pb2.DESCRIPTOR.services_by_name["EconomyService"]

_TRANSIENT = (Unavailable, DeadlineExceeded)


def lease_duration(ttl_s: float) -> duration_pb2.Duration:
    """A Duration of ``ttl_s`` seconds."""
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(ttl_s * 1e9))
    return d


def _forgotten(err: MeshError) -> bool:
    """The registry no longer holds our lease: register again."""
    return isinstance(err, NotFound) or (
        isinstance(err, FailedPrecondition) and err.reason == "LEASE_MISMATCH"
    )


class Registration:
    """One agent's registration, kept alive by a background heartbeat loop."""

    def __init__(
        self,
        registry: ServiceClient,
        request: registry_pb2.RegisterAgentRequest,
        *,
        load: Callable[[], int],
        economy: ServiceClient | None = None,
        min_backoff_s: float = 0.2,
        max_backoff_s: float = 5.0,
        stream: bool = True,
    ) -> None:
        """``stream``: heartbeat over a ``StreamHeartbeats`` stream where the registry
        client can open one (unary ``Heartbeat`` calls otherwise, and after the
        registry answered that it does not serve the stream)."""
        if not request.agent_id:
            raise ValueError("the registration request needs an agent_id")
        self._registry = registry
        self._economy = economy
        self._request = request
        self._load = load
        ttl_s = request.lease_ttl.seconds + request.lease_ttl.nanos / 1e9
        self.interval_s = max(0.05, ttl_s / 3) if ttl_s > 0 else 10.0 / 3
        """Time between heartbeats: a third of the lease."""
        self._call_timeout_s = min(5.0, max(0.5, self.interval_s))
        self._min_backoff_s = min_backoff_s
        self._max_backoff_s = max_backoff_s
        self.lease_id = ""
        """The current lease; empty while not registered."""
        self.draining = False
        """Heartbeats ask for no new work."""
        self.error = ""
        """A failure heartbeats report (the registry shows the agent ERROR while set)."""
        self.health_detail = ""
        """Reduced quality heartbeats report (shown as the agent's ``health_detail``; the
        agent keeps its state and is still offered work)."""
        self.registrations = 0
        """Successful RegisterAgent calls so far."""
        self.heartbeats = 0
        """Successful heartbeats so far."""
        self.registered = asyncio.Event()
        """Set once the first registration succeeded (and the payout account was tried)."""
        self._account_done = economy is None
        self._account_warned = False
        self._lock = asyncio.Lock()
        self._first_attempt = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stream = (
            HeartbeatStream(registry) if stream and hasattr(registry, "exchange") else None
        )

    @property
    def streaming(self) -> bool:
        """Heartbeats go over a stream (not unary calls)."""
        return self._stream is not None and not self._stream.unsupported

    @property
    def agent_id(self) -> str:
        """The id the agent registers under."""
        return self._request.agent_id

    async def start(self) -> None:
        """Start the loop; returns after the first attempt to register (whatever its outcome)."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"registration-{self.agent_id}")
        await self._first_attempt.wait()

    async def report_error(self, error: str) -> None:
        """Report ``error`` now and on every heartbeat until ``report_error("")`` clears it.

        The registry shows the agent ERROR (offered no work) with it as the reason.
        """
        self.error = error[:1024]
        await self._beat_now("error-reporting")

    async def report_health_detail(self, detail: str) -> None:
        """Report ``detail`` now and on every heartbeat until ``report_health_detail("")``.

        Unlike ``report_error`` the agent stays offered work: this says it works at
        reduced quality (e.g. ``DEGRADED: model server unreachable``). An unchanged
        detail sends nothing extra.
        """
        detail = detail[:1024]
        if detail == self.health_detail:
            return
        self.health_detail = detail
        await self._beat_now("health-detail")

    async def drain(self) -> None:
        """Tell the registry to send no new work; later heartbeats keep saying so."""
        self.draining = True
        await self._beat_now("draining")

    async def _beat_now(self, what: str) -> None:
        """Heartbeat now (not at the next interval) to report a change; logs a failure."""
        if not self.lease_id:
            return
        async with self._lock:
            try:
                await self._heartbeat()
            except MeshError as err:
                log.warning("%s heartbeat failed: %s", what, err.message)

    async def close(self, *, deregister: bool = True) -> None:
        """Stop heartbeating and (by default) remove the registration."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._stream is not None:
            await self._stream.close()
        if not deregister or not self.registrations:
            return
        try:
            await self._registry.call(
                "DeregisterAgent",
                registry_pb2.DeregisterAgentRequest(agent_id=self.agent_id),
                timeout=self._call_timeout_s,
            )
            log.info("deregistered %s", self.agent_id)
        except NotFound:
            pass
        except MeshError as err:
            log.warning("could not deregister %s: %s", self.agent_id, err.message)
        self.lease_id = ""

    async def _loop(self) -> None:
        backoff = self._min_backoff_s
        failing = False
        while True:
            delay = self.interval_s
            try:
                async with self._lock:
                    if self.lease_id:
                        await self._heartbeat()
                    elif not self.draining:
                        await self._register()
                if failing:
                    log.info("registry reachable again")
                failing = False
                backoff = self._min_backoff_s
            except MeshError as err:
                if self.lease_id and _forgotten(err):
                    log.info(
                        "registry forgot %s (%s); registering again", self.agent_id, err.reason
                    )
                    self.lease_id = ""
                    delay = 0.0
                else:
                    # Log the first failure of a run; the rest would be noise. A refused
                    # token is an operator's problem (wrong/expired token, agent id not the
                    # token's subject), not a flaky network: say so louder.
                    refused = isinstance(err, (PermissionDenied, Unauthenticated))
                    level = logging.ERROR if refused else logging.WARNING
                    if failing:
                        level = logging.DEBUG
                    log.log(
                        level,
                        "registry call failed (%s): %s; retrying%s",
                        err.reason,
                        err.message,
                        " (check this agent's --token)" if refused else "",
                    )
                    failing = True
                    delay = backoff
                    backoff = min(backoff * 2, self._max_backoff_s)
            finally:
                self._first_attempt.set()
            if not self._account_done and self.lease_id:
                await self._create_account()
            await asyncio.sleep(delay)

    async def _register(self) -> None:
        reply = await self._registry.call(
            "RegisterAgent", self._request, timeout=self._call_timeout_s
        )
        self.lease_id = reply.agent.lease_id
        self.registrations += 1
        if not self._account_done:
            # Before announcing the registration (READY): whoever sees the agent
            # registered finds its payout account open (unless the economy failed).
            await self._create_account()
        self.registered.set()
        log.info(
            "registered %s at %s (lease %s)",
            self.agent_id,
            self._request.endpoint,
            self.lease_id,
        )

    async def _heartbeat(self) -> None:
        request = registry_pb2.HeartbeatRequest(
            agent_id=self.agent_id,
            lease_id=self.lease_id,
            load=self._load(),
            draining=self.draining,
            error=self.error,
            health_detail=self.health_detail,
        )
        if self._stream is not None and not self._stream.unsupported:
            try:
                await self._stream.beat(request, timeout=self._call_timeout_s)
                self.heartbeats += 1
                return
            except Unimplemented:
                log.info("the registry serves no heartbeat stream; heartbeating by calls")
            except (Unavailable, Cancelled) as err:
                # The stream broke (its registry replica went away, say): this beat goes
                # as a call, which gRPC retries and the balancer sends elsewhere; the
                # next one opens a stream again.
                log.debug("heartbeat stream broke (%s); this heartbeat goes as a call", err)
        await self._registry.call("Heartbeat", request, timeout=self._call_timeout_s)
        self.heartbeats += 1

    async def _create_account(self) -> None:
        """Open the payout account, as this agent (the economy records it as the owner)."""
        assert self._economy is not None
        account_id = self._request.payout_account_id or self.agent_id
        try:
            await self._economy.call(
                "CreateAccount",
                economy_pb2.CreateAccountRequest(
                    account_id=account_id,
                    display_name=self._request.card.name,
                    request_id=f"agent-account-{self.agent_id}",
                ),
                timeout=self._call_timeout_s,
            )
            log.info("created payout account %s", account_id)
            self._account_done = True
        except AlreadyExists:
            self._account_done = True
            await self._check_account_owner(account_id)
        except MeshError as err:
            if not self._account_warned:
                log.warning(
                    "could not create payout account %s (%s): %s",
                    account_id,
                    err.reason,
                    err.message,
                )
                self._account_warned = True
            if not isinstance(err, _TRANSIENT):
                self._account_done = True  # retrying will not help (e.g. no economy there)
                # E.g. someone opened it first reusing our request id: is it still ours?
                await self._check_account_owner(account_id)

    async def _check_account_owner(self, account_id: str) -> None:
        """Warn when the payout account exists but is someone else's.

        It exists after a restart (ours) or because someone opened an account
        under our id first: then our pay would go to them. With auth on the
        economy refuses to show an account to anyone but its owner, so a refusal
        here means exactly that.
        """
        assert self._economy is not None
        try:
            await self._economy.call(
                "GetAccount",
                economy_pb2.GetAccountRequest(account_id=account_id),
                timeout=self._call_timeout_s,
            )
            log.info("payout account %s is open already and ours", account_id)
        except PermissionDenied:
            log.error(
                "payout account %s exists but does not belong to this agent: its pay would "
                "go to whoever opened it; ask an admin to resolve it",
                account_id,
            )
        except MeshError as err:
            log.debug("could not check payout account %s: %s", account_id, err.message)

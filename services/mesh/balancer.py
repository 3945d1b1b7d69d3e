"""One service over a changing set of endpoints: pick a healthy, lightly loaded replica.

``BalancedClient`` is a ``ServiceClient`` for one service whose replicas come
and go (``Endpoints``: a static list now, Consul's passing instances in a
cluster). Each call:

- picks an endpoint by *power of two choices*: two endpoints at random among
  those whose circuit breaker lets a call through, the one with fewer calls in
  flight wins (a tie, either). Cheap, needs no global view, and keeps away
  from a replica that is slow (its calls pile up) without herding everyone
  onto the single least loaded one;
- gets a deadline when the caller gives none (``default_timeout_s``), so a
  replica that hangs cannot hold a caller forever;
- goes through that endpoint's channel from the ``ChannelPool``, whose
  service-config retry policy already retries UNAVAILABLE on that channel with
  backoff. A unary call that still fails is NOT re-sent here by hand (that
  would multiply the attempts); the breaker records it and the next call picks
  again;
- settles the endpoint's breaker by ``BREAKER_OUTCOMES``: UNAVAILABLE and
  DEADLINE_EXCEEDED count against the endpoint, CANCELLED says nothing, any
  other answer (NOT_FOUND, INVALID_ARGUMENT, PERMISSION_DENIED...) shows the
  replica up and counts as a success.

Metadata, tokens and deadlines pass exactly as through ``RemoteServiceClient``
(the balancer calls through one per endpoint, which applies ``outgoing``).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc
from google.protobuf import descriptor, message

from meshwright.mesh._descriptors import methods_of
from meshwright.mesh.breaker import BreakerPolicy, BreakerState, CircuitBreaker, Permit
from meshwright.mesh.client import ChannelPool, Metadata, RemoteServiceClient
from meshwright.mesh.errors import MeshError, NotFound, Unavailable, grpc_code

log = logging.getLogger(__name__)


class Endpoints(Protocol):
    """A changing set of one service's endpoints (``host:port``), as discovery sees it.

    The contract an implementation (``StaticEndpoints``, a Consul follower, ...)
    keeps for ``BalancedClient``:

    - ``current()`` returns the latest known set at once, without I/O: an empty
      sequence until the first answer is in. Order carries no meaning and
      duplicates are ignored. Return the same object while nothing changes
      (a tuple kept between updates): callers may compare it on every call.
    - ``subscribe(listener)`` registers ``listener`` and returns a function that
      unregisters it. After every change the implementation calls
      ``listener(new_set)`` with the same value ``current()`` now returns, in the
      event loop's thread, one call at a time, never from inside ``subscribe``
      itself. A listener does not block or await; an exception it raises is the
      implementation's to log and swallow (one broken listener must not stop
      discovery for the others).
    - The set lists endpoints worth calling (Consul: passing checks only). An
      endpoint that leaves it has its channel closed once its calls finish, so a
      flapping health check costs a reconnect, nothing else.
    """

    def current(self) -> Sequence[str]:
        """The endpoints known now."""
        ...

    def subscribe(self, listener: Callable[[Sequence[str]], None]) -> Callable[[], None]:
        """Call ``listener(endpoints)`` after each change; returns the unsubscribe function."""
        ...


class StaticEndpoints:
    """A fixed list of endpoints (configuration), replaced only by ``update``."""

    def __init__(self, endpoints: Iterable[str]) -> None:
        self._endpoints = _unique(endpoints)
        self._listeners: list[Callable[[Sequence[str]], None]] = []

    def current(self) -> tuple[str, ...]:
        """The endpoints as given (duplicates dropped, first occurrence kept)."""
        return self._endpoints

    def subscribe(self, listener: Callable[[Sequence[str]], None]) -> Callable[[], None]:
        """Call ``listener`` after each ``update`` that changes the set."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def update(self, endpoints: Iterable[str]) -> None:
        """Replace the set (a reloaded configuration, a test) and tell the listeners."""
        new = _unique(endpoints)
        if set(new) == set(self._endpoints):
            return
        self._endpoints = new
        for listener in tuple(self._listeners):
            try:
                listener(new)
            except Exception:  # the contract: one broken listener must not stop the others
                log.exception("endpoint listener failed")


def _unique(endpoints: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(endpoints))


def _unreachable(ep: _Endpoint) -> bool:
    """Whether gRPC failed to connect to the endpoint (its channel in TRANSIENT_FAILURE)."""
    if ep.channel is None:
        return False
    state = ep.channel.get_state(try_to_connect=False)
    return bool(state == grpc.ChannelConnectivity.TRANSIENT_FAILURE)


class NoHealthyEndpoint(Unavailable):
    """Every endpoint of the service is behind an open breaker (or none is known)."""

    reason = "NO_HEALTHY_ENDPOINT"


class Outcome(enum.Enum):
    """What a finished call says about the endpoint it went to."""

    SUCCESS = "success"
    """The replica answered (a result, or an error about the request itself)."""
    FAILURE = "failure"
    """The replica could not be reached or did not answer in time."""
    NEUTRAL = "neutral"
    """Nothing: the call was cancelled."""


BREAKER_OUTCOMES: dict[grpc.StatusCode, Outcome] = {
    grpc.StatusCode.UNAVAILABLE: Outcome.FAILURE,
    grpc.StatusCode.DEADLINE_EXCEEDED: Outcome.FAILURE,
    grpc.StatusCode.CANCELLED: Outcome.NEUTRAL,
}
"""THE table: how a failed call's status code settles the endpoint's breaker. Codes not
listed are answers of a working replica (NOT_FOUND, INVALID_ARGUMENT, PERMISSION_DENIED,
INTERNAL...): ``Outcome.SUCCESS``."""


def outcome_of(err: MeshError) -> Outcome:
    """How ``err`` settles the breaker of the endpoint that raised it (``BREAKER_OUTCOMES``)."""
    return BREAKER_OUTCOMES.get(grpc_code(err), Outcome.SUCCESS)


@dataclass(frozen=True, slots=True, kw_only=True)
class BalancerOptions:
    """How a ``BalancedClient`` judges endpoints and bounds calls."""

    breaker: BreakerPolicy = field(default_factory=BreakerPolicy)
    """The policy of every endpoint's circuit breaker."""
    default_timeout_s: float | None = 10.0
    """Deadline of a unary call whose caller gives none (None: no deadline)."""
    default_stream_timeout_s: float | None = None
    """Deadline of a stream whose caller gives none (None: streams such as watches may
    last as long as they like)."""

    def __post_init__(self) -> None:
        for name in ("default_timeout_s", "default_stream_timeout_s"):
            value = getattr(self, name)
            if value is not None and (not (value > 0) or math.isinf(value)):
                raise ValueError(f"{name} must be None or a finite number > 0, not {value}")


@dataclass(frozen=True, slots=True)
class EndpointStats:
    """One endpoint as the balancer sees it (for tests and metrics)."""

    endpoint: str
    in_flight: int
    """Calls (and open streams) on it now."""
    calls: int
    """Calls sent to it since it joined the set."""
    failures: int
    """Calls that counted against it (``Outcome.FAILURE``)."""
    state: BreakerState
    consecutive_failures: int
    times_opened: int
    """How often its breaker opened."""
    leaving: bool
    """It left the set and waits for its calls to finish before its channel closes."""


class _Endpoint:
    """Book-keeping of one endpoint."""

    __slots__ = ("address", "breaker", "calls", "channel", "client", "failures", "in_flight")

    def __init__(self, address: str, breaker: CircuitBreaker) -> None:
        self.address = address
        self.breaker = breaker
        self.in_flight = 0
        self.calls = 0
        self.failures = 0
        self.channel: grpc.aio.Channel | None = None
        self.client: RemoteServiceClient | None = None


class BalancedClient:
    """Calls one service on the best of a changing set of endpoints (a ``ServiceClient``)."""

    def __init__(
        self,
        service: descriptor.ServiceDescriptor,
        endpoints: Endpoints,
        channels: ChannelPool,
        options: BalancerOptions | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        """``channels`` belongs to the caller: calls use its channels (and its token, TLS
        and retry policy); the channel of an endpoint that left the set is discarded
        from it once its calls here ended, the pool itself is never closed here. The
        pool keeps one channel per address, so another user of the same address (a
        second service served by the same process) loses that channel too: its next
        call opens a new one, calls it had under way there are cancelled. ``clock``
        (monotonic) times the breakers; ``rng`` picks the pairs (seed it in tests)."""
        self.service = service
        self.options = options or BalancerOptions()
        self._source = endpoints
        self._channels = channels
        self._clock = clock
        self._rng = rng or random.Random()
        infos = methods_of(service)
        self._unary = {n for n, info in infos.items() if not info.server_streaming}
        self._streams = {
            n for n, info in infos.items() if info.server_streaming and not info.client_streaming
        }
        self._exchanges = {n for n, info in infos.items() if info.client_streaming}
        self._endpoints: dict[str, _Endpoint] = {}
        self._leaving: dict[str, _Endpoint] = {}
        self._seen: Sequence[str] = ()
        self._background: set[asyncio.Task[None]] = set()
        self._sync(endpoints.current())
        self._unsubscribe = endpoints.subscribe(self._sync)

    # -- the endpoint set ----------------------------------------------------

    def _sync(self, endpoints: Sequence[str]) -> None:
        """Take the new set: new endpoints join with a closed breaker, gone ones leave."""
        self._seen = endpoints
        wanted = _unique(endpoints)
        for address in wanted:
            if address in self._endpoints:
                continue
            back = self._leaving.pop(address, None)  # came back before its calls ended
            self._endpoints[address] = back or _Endpoint(
                address, CircuitBreaker(self.options.breaker, clock=self._clock)
            )
        keep = set(wanted)
        for address in [a for a in self._endpoints if a not in keep]:
            ep = self._endpoints.pop(address)
            if ep.in_flight:
                self._leaving[address] = ep
            else:
                self._drop(ep)

    def _drop(self, ep: _Endpoint) -> None:
        if ep.channel is None:
            return  # never called: the pool holds no channel opened for it
        task = asyncio.get_running_loop().create_task(self._channels.discard(ep.address))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _done(self, ep: _Endpoint) -> None:
        ep.in_flight -= 1
        if ep.in_flight == 0 and self._leaving.get(ep.address) is ep:
            del self._leaving[ep.address]
            self._drop(ep)

    def endpoint_stats(self) -> dict[str, EndpointStats]:
        """Every endpoint in the set, and those leaving it, by address."""
        out: dict[str, EndpointStats] = {}
        for leaving, group in ((False, self._endpoints), (True, self._leaving)):
            for address, ep in group.items():
                out[address] = EndpointStats(
                    endpoint=address,
                    in_flight=ep.in_flight,
                    calls=ep.calls,
                    failures=ep.failures,
                    state=ep.breaker.state,
                    consecutive_failures=ep.breaker.consecutive_failures,
                    times_opened=ep.breaker.times_opened,
                    leaving=leaving,
                )
        return out

    async def close(self) -> None:
        """Stop following the endpoint set and let channel discards under way finish.

        Channels still in use stay in the pool (the pool's owner closes it).
        """
        self._unsubscribe()
        if self._background:
            await asyncio.wait(list(self._background))

    # -- picking -------------------------------------------------------------

    def _pick(self, avoid: _Endpoint | None = None) -> tuple[_Endpoint, Permit]:
        current = self._source.current()
        if current is not self._seen and current != self._seen:
            self._sync(current)  # a source that changed without telling: take it anyway
        allowed = [ep for ep in self._endpoints.values() if ep.breaker.allows() and ep is not avoid]
        # gRPC knows which replicas it cannot connect to (TRANSIENT_FAILURE): skip them
        # while another is reachable, instead of paying failures to open their breakers.
        reachable = [ep for ep in allowed if not _unreachable(ep)]
        allowed = reachable or allowed
        if not allowed:
            known = len(self._endpoints)
            why = f"all {known} behind open circuit breakers" if known else "none is known"
            raise NoHealthyEndpoint(
                f"no healthy endpoint of {self.service.full_name}: {why}",
                metadata={"service": self.service.full_name, "endpoints": str(known)},
            )
        if len(allowed) == 1:
            ep = allowed[0]
        else:
            # A tie goes to the first of the random pair: no tie-break on past failures,
            # which would starve a half-open endpoint of its probe (and a closed one with
            # a failure of the call that resets it) whenever the others are idle.
            a, b = self._rng.sample(allowed, 2)
            ep = b if b.in_flight < a.in_flight else a
        permit = ep.breaker.try_acquire()
        if permit is None:
            # allows() just said yes with no await since, and time only moves a
            # breaker toward letting calls through.
            raise RuntimeError(f"breaker of {ep.address} refused a permit it had allowed")
        ep.calls += 1
        ep.in_flight += 1
        return ep, permit

    def _client(self, ep: _Endpoint) -> RemoteServiceClient:
        channel = self._channels.get(ep.address)
        if ep.client is None or channel is not ep.channel:
            # First use, or the pool's channel was replaced (discarded by another user
            # of the pool and opened again): stubs are bound to one channel.
            ep.channel = channel
            ep.client = RemoteServiceClient(channel, self.service, token=self._channels.token)
        return ep.client

    def _settle(self, ep: _Endpoint, permit: Permit, err: BaseException | None) -> None:
        if err is None:
            ep.breaker.record_success(permit)
            return
        outcome = outcome_of(err) if isinstance(err, MeshError) else Outcome.NEUTRAL
        if outcome is Outcome.FAILURE:
            ep.failures += 1
            ep.breaker.record_failure(permit)
        elif outcome is Outcome.SUCCESS:
            ep.breaker.record_success(permit)
        else:
            ep.breaker.release(permit)

    # -- ServiceClient -------------------------------------------------------

    async def call(
        self,
        method: str,
        request: message.Message,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> Any:
        """Call a unary RPC on a picked endpoint; returns its response message.

        ``timeout`` None: ``default_timeout_s``. Raises NoHealthyEndpoint when every
        endpoint's breaker is open, else what the call raised (a MeshError). A call
        whose replica turned out unreachable (no connection) goes once to another.
        """
        if method not in self._unary:
            raise NotFound(f"{self.service.full_name} has no unary method {method}")
        if timeout is None:
            timeout = self.options.default_timeout_s
        ep, permit = self._pick()
        try:
            return await self._call_on(ep, permit, method, request, timeout, metadata)
        except Unavailable as err:
            if not (_unreachable(ep) and len(self._endpoints) > 1):
                raise
            # The replica could not even be connected to (a dead process), so the last
            # attempt reached no server: send it once to another replica, as gRPC's own
            # transparent retry would within one channel. Anything else is not re-sent.
            try:
                other, permit = self._pick(avoid=ep)
            except NoHealthyEndpoint:
                raise err from None
            return await self._call_on(other, permit, method, request, timeout, metadata)

    async def _call_on(
        self,
        ep: _Endpoint,
        permit: Permit,
        method: str,
        request: message.Message,
        timeout: float | None,
        metadata: Metadata,
    ) -> Any:
        try:
            reply = await self._client(ep).call(method, request, timeout=timeout, metadata=metadata)
        except BaseException as err:  # CancelledError too: the permit goes back unjudged
            self._settle(ep, permit, err)
            raise
        else:
            self._settle(ep, permit, None)
            return reply
        finally:
            self._done(ep)

    def stream(
        self,
        method: str,
        request: message.Message,
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> AsyncIterator[Any]:
        """Call a server-streaming RPC on a picked endpoint; yields its responses.

        ``timeout`` None: ``default_stream_timeout_s``. The first response settles the
        breaker as a success (a long watch must not hold a half-open probe for its
        whole life); a stream that fails before any response settles it by its error.
        A stream the caller stops reading judges nothing.
        """
        return self._streamed(
            method,
            self._streams,
            "streaming",
            timeout,
            lambda client, t: client.stream(method, request, timeout=t, metadata=metadata),
        )

    def exchange(
        self,
        method: str,
        requests: AsyncIterator[Any],
        *,
        timeout: float | None = None,
        metadata: Metadata = (),
    ) -> AsyncIterator[Any]:
        """Call a bidirectional RPC on a picked endpoint; yields its answers.

        As ``stream``: the same default deadline, the breaker judged the same way.
        The stream stays on the endpoint it was opened on (open another to be
        balanced afresh).
        """
        return self._streamed(
            method,
            self._exchanges,
            "bidirectional",
            timeout,
            lambda client, t: client.exchange(method, requests, timeout=t, metadata=metadata),
        )

    async def _streamed(
        self,
        method: str,
        known: set[str],
        kind: str,
        timeout: float | None,
        open_on: Callable[[RemoteServiceClient, float | None], AsyncIterator[Any]],
    ) -> AsyncIterator[Any]:
        if method not in known:
            raise NotFound(f"{self.service.full_name} has no {kind} method {method}")
        if timeout is None:
            timeout = self.options.default_stream_timeout_s
        ep, permit = self._pick()
        try:
            items = open_on(self._client(ep), timeout)
            try:
                async for item in items:
                    if not permit.settled:
                        self._settle(ep, permit, None)
                    yield item
            finally:
                await items.aclose()  # type: ignore[attr-defined]
        except MeshError as err:
            if not permit.settled:
                self._settle(ep, permit, err)
            raise
        else:
            if not permit.settled:  # ended with no response at all: still an answer
                self._settle(ep, permit, None)
        finally:
            if not permit.settled:  # the caller stopped reading, or was cancelled
                ep.breaker.release(permit)
            self._done(ep)


__all__ = [
    "BREAKER_OUTCOMES",
    "BalancedClient",
    "BalancerOptions",
    "EndpointStats",
    "Endpoints",
    "NoHealthyEndpoint",
    "Outcome",
    "StaticEndpoints",
    "outcome_of",
]

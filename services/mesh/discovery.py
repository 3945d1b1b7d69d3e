"""The mesh's own services in Consul: announcing each replica, finding the others.

With ``--registry consul://host:8500`` every process registers each service it
runs as a Consul service instance (``meshwright-registry``, ``meshwright-economy``,
``meshwright-workflow``, ``meshwright-gateway``; one instance per replica, ID
``<name>-<host>-<port>``) with Consul's native GRPC check against the service's
own ``grpc.health.v1`` status (the gateway: an HTTP check on ``/healthz``) and a
DeregisterCriticalServiceAfter, so a replica that dies leaves discovery when its
check fails and is reaped later; a replica that stops withdraws itself at once.

``ConsulEndpoints`` follows one service's passing instances with blocking
queries (``index``/``wait``, resets handled as Consul's docs say) and hands the
set to a ``BalancedClient``; nothing polls on a timer.

py-consul (and aiohttp under it) is imported only when Consul is configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlparse

from meshwright.mesh.errors import FieldViolation, InvalidArgument, Unavailable

log = logging.getLogger(__name__)

SERVICE_NAMES = {
    "registry": "meshwright-registry",
    "economy": "meshwright-economy",
    "workflow": "meshwright-workflow",
    "gateway": "meshwright-gateway",
}
"""Consul service name of each mesh service."""
GRPC_SERVICES = {
    "registry": "meshwright.registry.v1.RegistryService",
    "economy": "meshwright.economy.v1.EconomyService",
    "workflow": "meshwright.workflow.v1.WorkflowService",
}
"""The grpc.health.v1 service name each GRPC check asks about."""
CONSUL_MIN_DEREGISTER_S = 60.0
"""Consul never reaps a critical service sooner than this."""
WAIT = "30s"
"""How long one blocking query may hang (Consul caps it at 10 minutes)."""


def consul_settings(url: str) -> dict[str, Any]:
    """``consul://host:8500[?token=...]`` (``consuls://`` for HTTPS, port 8501 by default)
    as py-consul arguments.

    The ACL token comes from the URL's ``token`` query or ``CONSUL_HTTP_TOKEN``.
    """
    parsed = urlparse(url)
    if parsed.scheme not in ("consul", "consuls") or not parsed.hostname:
        raise InvalidArgument(
            f"{url!r} is not a Consul URL such as consul://127.0.0.1:8500",
            violations=[FieldViolation("registry_url", "must be consul://host:port")],
        )
    query = parse_qs(parsed.query)
    token = query.get("token", [os.environ.get("CONSUL_HTTP_TOKEN", "")])[0] or None
    return {
        "host": parsed.hostname,
        "port": parsed.port or (8501 if parsed.scheme == "consuls" else 8500),
        "scheme": "https" if parsed.scheme == "consuls" else "http",
        "token": token,
    }


def consul_client(
    host: str,
    port: int,
    *,
    scheme: str = "http",
    token: str | None = None,
    connections: int | None = None,
) -> Any:
    """A py-consul asyncio client (call ``close()`` on it when done); ``connections``
    caps its open HTTP connections (aiohttp's default, 100, when None)."""
    import warnings

    import consul.aio

    with warnings.catch_warnings():
        # py-consul 1.8 hands aiohttp its TLS settings in a form aiohttp deprecates.
        warnings.filterwarnings(
            "ignore", message=r"(ssl_context|verify_ssl) is deprecated", category=DeprecationWarning
        )
        client = consul.aio.Consul(
            host=host, port=port, scheme=scheme, connections_limit=connections
        )
    # py-consul would take CONSUL_HTTP_TOKEN over a token it is given; ours is resolved.
    client.token = token
    return client


def open_consul(url: str) -> Any:
    """A py-consul asyncio client for ``url`` (call ``close()`` on it when done)."""
    return consul_client(**consul_settings(url))


def go_duration(seconds: float) -> str:
    """Seconds as a Go duration string Consul parses ("1.5s", "60s")."""
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{round(seconds * 1000)}ms"


def _unavailable(action: str, err: BaseException) -> Unavailable:
    return Unavailable(f"Consul {action} failed: {type(err).__name__}: {err}")


def _is_transport(err: BaseException) -> bool:
    import aiohttp
    import consul

    return isinstance(err, aiohttp.ClientError | consul.ConsulException | OSError | TimeoutError)


class ServiceAnnouncer:
    """Registers this process's services in Consul and withdraws them at stop."""

    def __init__(
        self,
        consul: Any,
        *,
        check_interval_s: float = 5.0,
        check_timeout_s: float = 2.0,
        deregister_after_s: float = 300.0,
        tls: bool = False,
    ) -> None:
        """``consul``: a py-consul asyncio client (the announcer does not close it).
        ``tls``: the gRPC servers speak TLS (the checks then use it)."""
        self._consul = consul
        self.check_interval_s = check_interval_s
        self.check_timeout_s = check_timeout_s
        self.deregister_after_s = max(deregister_after_s, CONSUL_MIN_DEREGISTER_S)
        self._tls = tls
        self.announced: list[str] = []
        """Service ids registered by this announcer, in order."""
        self._registrations: dict[str, tuple[tuple[Any, ...], dict[str, Any]]] = {}
        self._upkeep: asyncio.Task[None] | None = None
        self.reannounced = 0
        """Registrations put back after Consul had lost them (see ``start_upkeep``)."""

    @staticmethod
    def service_id(kind: str, address: str) -> str:
        """The instance id of service ``kind`` served at ``address`` ("host:port")."""
        host, _, port = address.rpartition(":")
        return f"{SERVICE_NAMES[kind]}-{host}-{port}"

    async def announce(self, kind: str, address: str, *, http_url: str = "") -> str:
        """Register service ``kind`` at ``address``; ``http_url`` (the gateway's base URL)
        makes the check an HTTP GET of ``/healthz`` instead of a GRPC check."""
        host, _, port = address.rpartition(":")
        service_id = self.service_id(kind, address)
        check: dict[str, Any] = {
            "CheckID": f"{service_id}:health",
            "Name": f"{SERVICE_NAMES[kind]} health",
            "Interval": go_duration(self.check_interval_s),
            "Timeout": go_duration(self.check_timeout_s),
            "DeregisterCriticalServiceAfter": go_duration(self.deregister_after_s),
        }
        if http_url:
            check["HTTP"] = f"{http_url.rstrip('/')}/healthz"
        else:
            check["GRPC"] = f"{address}/{GRPC_SERVICES[kind]}"
            check["GRPCUseTLS"] = self._tls
        args = (SERVICE_NAMES[kind],)
        kwargs = {
            "service_id": service_id,
            "address": host,
            "port": int(port),
            "tags": ["meshwright", kind],
            "meta": {"mw_kind": kind},
            "check": check,
            "replace_existing_checks": True,
        }
        try:
            await self._consul.agent.service.register(*args, **kwargs)
        except Exception as err:
            if _is_transport(err):
                raise _unavailable(f"registration of {service_id}", err) from None
            raise
        self.announced.append(service_id)
        self._registrations[service_id] = (args, kwargs)
        log.info("announced %s at %s in Consul", service_id, address)
        return service_id

    def start_upkeep(self, interval_s: float = 30.0) -> None:
        """Every ``interval_s``, put back any announced registration the Consul agent no
        longer has: an agent that was replaced or restarted without its data (a node's
        client agent on Kubernetes) forgets what was registered with it, and a service
        that announced itself only at start would stay undiscoverable until restarted."""
        if self._upkeep is None:
            self._upkeep = asyncio.get_running_loop().create_task(
                self._keep(interval_s), name="consul-announcer-upkeep"
            )

    async def _keep(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                await self.reannounce_missing()
            except Exception as err:  # Consul away: the next round tries again
                log.debug("checking this process's Consul registrations failed: %s", err)

    async def reannounce_missing(self) -> list[str]:
        """Register again every announced instance the Consul agent does not list; the
        ids put back."""
        if not self._registrations:
            return []
        present = await self._consul.agent.services()
        back = []
        for service_id, (args, kwargs) in list(self._registrations.items()):
            if service_id in present:
                continue
            await self._consul.agent.service.register(*args, **kwargs)
            back.append(service_id)
            self.reannounced += 1
            log.warning("re-announced %s: the Consul agent had lost its registration", service_id)
        return back

    async def withdraw_all(self) -> None:
        """Deregister every announced instance (best effort: Consul reaps the rest)."""
        if self._upkeep is not None:
            self._upkeep.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._upkeep
            self._upkeep = None
        ids, self.announced = self.announced, []
        self._registrations.clear()
        for service_id in reversed(ids):
            try:
                await self._consul.agent.service.deregister(service_id)
            except Exception as err:  # shutting down: say so, do not fail the stop
                log.warning("could not withdraw %s from Consul: %s", service_id, err)


class ConsulEndpoints:
    """The passing instances of one Consul service, kept fresh by blocking queries.

    ``current()`` is the latest set ("host:port" strings, sorted); listeners
    registered with ``subscribe`` are called with it whenever it changes;
    ``wait_ready`` waits for the first answer.
    """

    def __init__(
        self,
        consul: Any,
        service: str,
        *,
        wait: str = WAIT,
        min_backoff_s: float = 0.1,
        max_backoff_s: float = 5.0,
    ) -> None:
        """``consul``: a py-consul asyncio client (not closed here)."""
        self._consul = consul
        self.service = service
        self._wait = wait
        self._min_backoff_s = min_backoff_s
        self._max_backoff_s = max_backoff_s
        self._endpoints: tuple[str, ...] = ()
        self._listeners: list[Callable[[tuple[str, ...]], None]] = []
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.index = 0
        """The X-Consul-Index of the last answer (0 after a reset)."""
        self.resets = 0
        """Times the index went backwards and the follower started over."""

    def current(self) -> tuple[str, ...]:
        """The passing instances as last seen."""
        return self._endpoints

    def subscribe(self, listener: Callable[[tuple[str, ...]], None]) -> Callable[[], None]:
        """Call ``listener(endpoints)`` on every change; returns the unsubscribe function."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    async def start(self) -> None:
        """Begin following (returns at once; ``wait_ready`` for the first answer)."""
        if self._task is None:
            self._task = asyncio.create_task(self._follow(), name=f"consul-follow-{self.service}")

    async def wait_ready(self, timeout_s: float) -> bool:
        """Whether a first answer came within ``timeout_s``."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout_s)
        return self._ready.is_set()

    async def stop(self) -> None:
        """Stop following."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _follow(self) -> None:
        backoff = self._min_backoff_s
        while True:
            try:
                index, entries = await self._consul.health.service(
                    self.service,
                    passing=True,
                    index=self.index or None,
                    wait=self._wait if self.index else None,
                )
            except asyncio.CancelledError:
                raise
            except Exception as err:
                if not _is_transport(err):
                    raise
                log.info("Consul query for %s failed (%s); retrying", self.service, err)
                # Jittered capped backoff after a failure only: an answer is waited for.
                await asyncio.sleep(backoff * (0.5 + random.random() / 2))
                backoff = min(backoff * 2, self._max_backoff_s)
                continue
            backoff = self._min_backoff_s
            new_index = int(index or 0)
            # Consul's rule: an index that went backwards (a restore, a new leader with
            # another history) or is 0 means start over from 0.
            if new_index < self.index or new_index <= 0:
                self.resets += 1
                self.index = 0
            else:
                self.index = new_index
            self._set(_endpoints_of(entries))

    def _set(self, endpoints: tuple[str, ...]) -> None:
        self._ready.set()
        if endpoints == self._endpoints:
            return
        self._endpoints = endpoints
        for listener in tuple(self._listeners):
            try:
                listener(endpoints)
            except Exception:  # one broken listener must not stop discovery
                log.exception("endpoint listener failed")


def _endpoints_of(entries: list[dict[str, Any]]) -> tuple[str, ...]:
    out = set()
    for entry in entries or ():
        service = entry.get("Service") or {}
        address = service.get("Address") or (entry.get("Node") or {}).get("Address", "")
        port = service.get("Port")
        if address and port:
            out.add(f"{address}:{port}")
    return tuple(sorted(out))

"""Ownership of live workflows by replicas: leases with fencing tokens.

A ``LeaseKeeper`` holds the leases of the workflows this replica runs. It
renews them every third of their TTL (one store call for all), learns there
which it lost and which have a cancel request, listens for cancel signals to
act at once, and scans for orphans (live workflows whose lease lapsed: their
owner died or handed them off) to claim and resume them.

Leases are not locks: a replica that stalls past its TTL may still be running
when another takes over, which is why every write carries the fencing token.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Awaitable, Callable

from meshwright.workflow.store import WorkflowStore

log = logging.getLogger(__name__)


def new_replica_id() -> str:
    """``host-pid-random``: unique per process, readable in logs and store records."""
    return f"{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"


class LeaseKeeper:
    """Renews this replica's leases, watches for cancels, adopts orphans."""

    def __init__(
        self,
        store: WorkflowStore,
        *,
        replica: str,
        ttl_s: float,
        scan_s: float,
        on_orphan: Callable[[str, int], Awaitable[None]],
        on_lost: Callable[[str], None],
        on_cancel: Callable[[str, str], None],
    ) -> None:
        if ttl_s <= 0 or scan_s <= 0:
            raise ValueError("ttl_s and scan_s must be positive")
        self.replica = replica
        self.ttl_s = ttl_s
        self._store = store
        self._scan_s = scan_s
        self._on_orphan = on_orphan
        self._on_lost = on_lost
        self._on_cancel = on_cancel
        self.held: dict[str, int] = {}
        """Workflow id -> fencing token of every lease this replica holds."""
        self._tasks: list[asyncio.Task[None]] = []
        self._renew_now = asyncio.Event()
        self._adopting: set[str] = set()

    def hold(self, workflow_id: str, token: int) -> None:
        """Track a lease this replica got (by create or claim)."""
        self.held[workflow_id] = token

    def drop(self, workflow_id: str) -> None:
        """Stop tracking a lease (the workflow ended, or it was released or lost)."""
        self.held.pop(workflow_id, None)

    async def start(self) -> None:
        """Start renewing, listening and scanning (adopts orphans at once)."""
        self._tasks = [
            asyncio.create_task(self._renewing(), name="lease-renew"),
            asyncio.create_task(self._scanning(), name="lease-orphans"),
            asyncio.create_task(self._listening(), name="lease-cancels"),
        ]

    async def stop_adopting(self) -> None:
        """Stop claiming orphans (a replica about to hand off keeps renewing what it
        holds until it releases it)."""
        scanning = [t for t in self._tasks if t.get_name() == "lease-orphans"]
        for t in scanning:
            t.cancel()
            try:
                await t
            except asyncio.CancelledError:
                pass
            self._tasks.remove(t)

    async def stop(self) -> None:
        """Stop the loops (leases still held stay held; release them first)."""
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass
        self._tasks = []

    async def release(self, workflow_id: str) -> None:
        """Hand a lease off now (graceful): another replica may claim it at once."""
        token = self.held.pop(workflow_id, None)
        if token is not None:
            await self._store.release(workflow_id, token)

    async def renew_once(self) -> None:
        """One renewal of every held lease; reports losses and cancel requests."""
        if not self.held:
            return
        snapshot = dict(self.held)
        renewal = await self._store.renew(self.replica, snapshot, self.ttl_s)
        for wf_id in renewal.lost:
            if self.held.get(wf_id) == snapshot[wf_id]:
                del self.held[wf_id]
                log.warning("lost the lease of workflow %s; another replica owns it", wf_id)
                self._on_lost(wf_id)
        for wf_id, reason in renewal.cancels.items():
            self._on_cancel(wf_id, reason)

    async def _renewing(self) -> None:
        interval = self.ttl_s / 3
        while True:
            try:
                await asyncio.wait_for(self._renew_now.wait(), interval)
            except TimeoutError:
                pass
            self._renew_now.clear()
            try:
                await self.renew_once()
            except Exception as err:  # the store unreachable (any backend's errors): retry
                log.warning("lease renewal failed (%s); retrying", err)

    async def _listening(self) -> None:
        backoff = 0.1
        while True:
            try:
                async for wf_id in self._store.cancel_signals():
                    backoff = 0.1
                    if wf_id in self.held:
                        self._renew_now.set()  # the renewal carries the reason
                return
            except Exception as err:  # the store unreachable: reconnect
                log.info("cancel signals interrupted (%s); reconnecting", err)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)

    async def scan_once(self, limit: int = 100) -> int:
        """Claim and resume lapsed workflows; returns how many were adopted."""
        adopted = 0
        for wf_id in await self._store.orphans(limit):
            if wf_id in self.held or wf_id in self._adopting:
                continue
            token = await self._store.claim(wf_id, self.replica, self.ttl_s)
            if token is None:
                continue  # another replica was faster
            self.held[wf_id] = token
            self._adopting.add(wf_id)
            try:
                log.info("taking over workflow %s (fencing token %d)", wf_id, token)
                await self._on_orphan(wf_id, token)
                adopted += 1
            finally:
                self._adopting.discard(wf_id)
        return adopted

    async def _scanning(self) -> None:
        while True:
            try:
                await self.scan_once()
            except Exception as err:  # the store unreachable: scan again later
                log.warning("orphan scan failed (%s); retrying", err)
            await asyncio.sleep(self._scan_s)


__all__ = ["LeaseKeeper", "new_replica_id"]

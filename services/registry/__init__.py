"""The registry domain: who is alive and what each agent can do.

``Registry`` holds registrations with leases behind a ``RegistryBackend``
(``MemoryRegistryBackend`` embedded, ``ConsulRegistryBackend`` on Consul);
``RegistryServicer`` serves it as ``meshwright.registry.v1.RegistryService``.

Names load on first use (PEP 562), so importing a contract such as
``meshwright.registry.v1`` does not start the runtime behind this package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshwright.mesh.lazy import lazy_exports

if TYPE_CHECKING:
    from meshwright.registry.backend import (
        ChangeListener,
        RegistryBackend,
    )
    from meshwright.registry.consul import ConsulRegistryBackend
    from meshwright.registry.errors import (
        AgentNotFound,
        AgentStopped,
        HistoryTrimmed,
        LeaseMismatch,
        PayoutNotOwn,
        RegistryStopped,
        WatchOverflow,
    )
    from meshwright.registry.health import HealthCheckPolicy, HealthProber
    from meshwright.registry.memory import MemoryRegistryBackend
    from meshwright.registry.records import (
        AgentQuery,
        AgentRecord,
        Change,
        Listing,
        SweepResult,
    )
    from meshwright.registry.registry import (
        AgentPage,
        Registry,
    )
    from meshwright.registry.servicer import (
        SERVICE,
        RegistryServicer,
    )
    from meshwright.registry.watch import AgentEvent

_EXPORTS: dict[str, str] = {
    "ChangeListener": "meshwright.registry.backend",
    "RegistryBackend": "meshwright.registry.backend",
    "ConsulRegistryBackend": "meshwright.registry.consul",
    "AgentNotFound": "meshwright.registry.errors",
    "AgentStopped": "meshwright.registry.errors",
    "HistoryTrimmed": "meshwright.registry.errors",
    "LeaseMismatch": "meshwright.registry.errors",
    "HealthCheckPolicy": "meshwright.registry.health",
    "HealthProber": "meshwright.registry.health",
    "PayoutNotOwn": "meshwright.registry.errors",
    "RegistryStopped": "meshwright.registry.errors",
    "WatchOverflow": "meshwright.registry.errors",
    "MemoryRegistryBackend": "meshwright.registry.memory",
    "AgentQuery": "meshwright.registry.records",
    "AgentRecord": "meshwright.registry.records",
    "Change": "meshwright.registry.records",
    "Listing": "meshwright.registry.records",
    "SweepResult": "meshwright.registry.records",
    "AgentPage": "meshwright.registry.registry",
    "Registry": "meshwright.registry.registry",
    "SERVICE": "meshwright.registry.servicer",
    "RegistryServicer": "meshwright.registry.servicer",
    "AgentEvent": "meshwright.registry.watch",
}
"""Each public name and the module that defines it."""

__all__ = [
    "SERVICE",
    "AgentEvent",
    "AgentNotFound",
    "AgentPage",
    "AgentQuery",
    "AgentStopped",
    "AgentRecord",
    "Change",
    "ChangeListener",
    "ConsulRegistryBackend",
    "HealthCheckPolicy",
    "HealthProber",
    "HistoryTrimmed",
    "LeaseMismatch",
    "Listing",
    "MemoryRegistryBackend",
    "PayoutNotOwn",
    "Registry",
    "RegistryBackend",
    "RegistryServicer",
    "RegistryStopped",
    "SweepResult",
    "WatchOverflow",
]


if not TYPE_CHECKING:  # mypy sees the imports above, and no catch-all attribute
    __getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

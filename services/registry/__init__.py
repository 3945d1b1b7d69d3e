"""The registry domain: who is alive and what each agent can do.

``Registry`` holds registrations with leases behind a ``RegistryBackend``
(``MemoryRegistryBackend`` embedded; Consul or Redis later);
``RegistryServicer`` serves it as ``meshwright.registry.v1.RegistryService``.
"""

from meshwright.registry.backend import ChangeListener, RegistryBackend
from meshwright.registry.errors import (
    AgentNotFound,
    LeaseMismatch,
    PayoutNotOwn,
    RegistryStopped,
    WatchOverflow,
)
from meshwright.registry.memory import MemoryRegistryBackend
from meshwright.registry.records import (
    AgentQuery,
    AgentRecord,
    Change,
    Listing,
    SweepResult,
)
from meshwright.registry.registry import AgentPage, Registry
from meshwright.registry.servicer import SERVICE, RegistryServicer
from meshwright.registry.watch import AgentEvent

__all__ = [
    "SERVICE",
    "AgentEvent",
    "AgentNotFound",
    "AgentPage",
    "AgentQuery",
    "AgentRecord",
    "Change",
    "ChangeListener",
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

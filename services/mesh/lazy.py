"""Package attributes that load on first use (PEP 562), for the domains' ``__init__``.

A domain package re-exports its public names, but importing a contract such
as ``meshwright.economy.v1`` runs the package's ``__init__`` first: made
eager, that would load the runtime behind it (and, for the agent SDK, the
engine and redis). Each package lists its names in a table and installs::

    if not TYPE_CHECKING:
        __getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

keeping real imports under ``if TYPE_CHECKING:`` so mypy sees every name.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    namespace: dict[str, Any], exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a package: ``exports`` maps each public name
    to the module that defines it; a name is imported on first access and cached in
    ``namespace`` (the package's globals), so later lookups skip the hook."""
    package = namespace["__name__"]

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*namespace, *exports})

    return __getattr__, __dir__


__all__ = ["lazy_exports"]

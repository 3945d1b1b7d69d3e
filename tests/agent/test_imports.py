"""Importing the agent SDK does not import the engine, the economy, the registry or redis.

An agent program is small: it needs the SDK, the mesh runtime and the
contracts it speaks, not the services behind them. Each check runs in a fresh
interpreter (this one has imported everything already), and each forbidden
module is shown to be detected when it is imported, so the check cannot pass
by looking in the wrong place.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

ROOT = Path(__file__).resolve().parents[2]

FORBIDDEN = (
    "meshwright.economy.economy",
    "meshwright.registry.registry",
    "meshwright.workflow.engine",
    "redis",
)
"""Modules an agent program must not load, named one by one."""

OTHER_DOMAINS = ("meshwright.economy", "meshwright.registry", "meshwright.workflow")
"""Of these packages an agent may load the package itself and its ``v1`` contracts only."""


def modules_after(statement: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``statement``."""
    code = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.splitlines()[-1]))


def forbidden_in(modules: set[str]) -> list[str]:
    """The forbidden modules (and runtime modules of other domains) among ``modules``."""
    found = [m for m in FORBIDDEN if m in modules]
    found += sorted(m for m in modules if m.startswith("redis."))
    for domain in OTHER_DOMAINS:
        found += sorted(
            m
            for m in modules
            if m.startswith(domain + ".")
            and m not in FORBIDDEN
            and not (m == domain + ".v1" or m.startswith(domain + ".v1."))
        )
    return found


@pytest.mark.parametrize(
    ("statement", "loads_sdk"),
    [
        ("import meshwright.agent", False),  # the package alone: names load on first use
        ("from meshwright.agent import Agent", True),
        ("from meshwright.agent import Agent, TaskContext, TaskFailed, TaskRejected", True),
        ("from meshwright.agent import *", True),  # every public name, the supervisor too
        ("import meshwright.agent.__main__", True),
        ("import meshwright.agent.samples", True),
    ],
)
def test_the_agent_sdk_loads_no_runtime_of_other_domains(statement: str, loads_sdk: bool) -> None:
    modules = modules_after(statement)
    assert "meshwright.agent" in modules
    if loads_sdk:  # it really loaded the SDK, and the contracts it speaks are fine
        assert {"meshwright.agent.runtime", "meshwright.economy.v1.economy_pb2"} <= modules
    assert forbidden_in(modules) == []


@pytest.mark.parametrize("module", FORBIDDEN)
def test_the_check_detects_each_forbidden_module(module: str) -> None:
    modules = modules_after(f"import meshwright.agent\nimport {module}")
    assert module in forbidden_in(modules)


def test_the_check_detects_any_runtime_module_of_another_domain() -> None:
    modules = modules_after("import meshwright.agent\nimport meshwright.economy.tiers")
    assert forbidden_in(modules) == ["meshwright.economy.tiers"]


def test_a_contract_import_does_not_start_its_domain() -> None:
    """The cause that was fixed: ``meshwright.economy.v1`` lives under ``meshwright.economy``,
    whose ``__init__`` imported the whole economy (likewise the registry)."""
    for contract in ("meshwright.economy.v1.economy_pb2", "meshwright.registry.v1.registry_pb2"):
        assert forbidden_in(modules_after(f"import {contract}")) == []


def test_a_contract_imported_first_does_not_import_the_sdk_half_way() -> None:
    """registry.v1 imports agent.v1; were ``meshwright.agent`` eager, that would load the
    SDK, whose registration imports registry.v1 again, half initialised."""
    modules = modules_after("import meshwright.registry.v1.registry_pb2")
    assert "meshwright.agent.v1.agent_pb2" in modules
    assert "meshwright.agent.agent" not in modules


@pytest.mark.parametrize(
    "package",
    ["meshwright.agent", "meshwright.economy", "meshwright.registry", "meshwright.workflow"],
)
def test_lazy_packages_export_every_name_from_where_mypy_sees_it(package: str) -> None:
    """The runtime table (``_EXPORTS``) and the ``TYPE_CHECKING`` imports are one list."""
    mod = importlib.import_module(package)
    source = Path(mod.__file__ or "").read_text()
    seen: dict[str, str] = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            for stmt in node.body:
                assert isinstance(stmt, ast.ImportFrom) and stmt.module
                seen.update({alias.name: stmt.module for alias in stmt.names})
    exports = vars(mod)["_EXPORTS"]
    assert seen == exports
    assert sorted(mod.__all__) == sorted(exports)
    for name, module in exports.items():
        assert getattr(mod, name) is getattr(importlib.import_module(module), name)
    assert set(mod.__all__) <= set(dir(mod))
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        getattr(mod, "Nope")  # noqa: B009 (the point is a dynamic lookup)

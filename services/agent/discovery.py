"""Agent packages found in a directory (seed 002's AgentDiscovery), as manager specs.

Each subdirectory holding an ``agent.toml`` is one managed agent::

    agents/
      echo/
        agent.toml        name = "echo"; module = "echo_agent:agent"; replicas = 2
        echo_agent.py
      search/
        agent.toml        a2a_card_url = "http://search.local/.well-known/agent-card.json"

``agent.toml`` keys: ``name`` (default: the directory's name), exactly one of
``module`` (``module:attr``, imported from the package's own directory), ``command``
(an argv list, run in that directory) or ``a2a_card_url``; ``replicas`` (1),
``restart`` (``always``, ``on-failure``, ``never``), ``args`` (a list), ``[env]`` (a
table of strings). Directories whose name
starts with ``_`` or ``.``, ``__pycache__`` and ``test``/``tests`` are skipped, as in
the seed. The manager checks each spec as it checks one sent over the RPC.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from meshwright.agent.v1 import manager_pb2 as M

MANIFEST = "agent.toml"
"""The file that makes a directory an agent package."""
SKIPPED = frozenset({"__pycache__", "test", "tests"})
_KEYS = frozenset(
    {"name", "module", "command", "a2a_card_url", "replicas", "restart", "args", "env"}
)
_RESTART = {
    "always": M.RESTART_POLICY_ALWAYS,
    "on-failure": M.RESTART_POLICY_ON_FAILURE,
    "never": M.RESTART_POLICY_NEVER,
}


def _skipped(path: Path) -> bool:
    return path.name in SKIPPED or path.name.startswith(("_", "."))


def discover_agents(directory: str | Path) -> list[tuple[str, M.ManagedAgentSpec]]:
    """(name, spec) of every agent package under ``directory``, sorted by directory name.

    Raises ValueError naming the file for a manifest that cannot be read or is malformed,
    and for two packages of the same name."""
    root = Path(directory)
    if not root.is_dir():
        raise ValueError(f"agents directory {str(root)!r} is not a directory")
    found: list[tuple[str, M.ManagedAgentSpec]] = []
    seen: dict[str, Path] = {}
    for package in sorted(p for p in root.iterdir() if p.is_dir() and not _skipped(p)):
        manifest = package / MANIFEST
        if not manifest.is_file():
            continue
        name, spec = _read(manifest)
        if name in seen:
            raise ValueError(f"{manifest}: name {name!r} is taken by {seen[name]}")
        seen[name] = manifest
        found.append((name, spec))
    return found


def _read(manifest: Path) -> tuple[str, M.ManagedAgentSpec]:
    try:
        data = tomllib.loads(manifest.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"{manifest}: {err}") from None
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ValueError(f"{manifest}: unknown keys {', '.join(unknown)}")

    def typed(key: str, kind: type, default: Any) -> Any:
        value = data.get(key, default)
        if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
            raise ValueError(f"{manifest}: {key} must be a {kind.__name__}")
        return value

    name = typed("name", str, manifest.parent.name)
    targets = [k for k in ("module", "command", "a2a_card_url") if k in data]
    if len(targets) != 1:
        raise ValueError(f"{manifest}: set exactly one of module, command, a2a_card_url")
    spec = M.ManagedAgentSpec(replicas=typed("replicas", int, 1))
    restart = typed("restart", str, "on-failure")
    if restart not in _RESTART:
        raise ValueError(f"{manifest}: restart must be one of {', '.join(_RESTART)}")
    spec.restart_policy = _RESTART[restart]
    args = typed("args", list, [])
    env = typed("env", dict, {})
    if not all(isinstance(a, str) for a in args):
        raise ValueError(f"{manifest}: args must be strings")
    if not all(isinstance(v, str) for v in env.values()):
        raise ValueError(f"{manifest}: env values must be strings")
    spec.args.extend(args)
    spec.env.update(env)
    if targets[0] == "module":
        spec.module = typed("module", str, "")
        spec.app_dir = str(manifest.parent.resolve())
    elif targets[0] == "command":
        argv = typed("command", list, [])
        if not all(isinstance(a, str) for a in argv):
            raise ValueError(f"{manifest}: command must be a list of strings")
        spec.command.argv.extend(argv)
        spec.command.SetInParent()
        spec.app_dir = str(manifest.parent.resolve())  # the command runs in its package
    else:
        spec.a2a_card_url = typed("a2a_card_url", str, "")
    return name, spec


__all__ = ["MANIFEST", "discover_agents"]

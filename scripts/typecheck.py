"""Run mypy on the hand-written code under its installed names.

The editable install maps folders into ``meshwright`` with an import hook mypy
cannot follow, so this mirrors the mapping from pyproject.toml as a tree of
symlinks in .typecheck/ and points mypy at it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FARM = ROOT / ".typecheck"


def build_farm() -> Path:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    package_dir: dict[str, str] = config["tool"]["setuptools"]["package-dir"]
    if FARM.exists():
        shutil.rmtree(FARM)
    packages: list[str] = config["tool"]["setuptools"]["packages"]
    for package in sorted(packages):
        # A package without a folder of its own lives under its nearest mapped parent,
        # as setuptools finds it (meshwright.agent.a2a -> services/agent/a2a).
        parts = package.split(".")
        for n in range(len(parts), 0, -1):
            if ".".join(parts[:n]) in package_dir:
                folder = str(Path(package_dir[".".join(parts[:n])], *parts[n:]))
                break
        else:
            continue
        dest = FARM.joinpath(*parts)
        dest.mkdir(parents=True, exist_ok=True)
        for src in (ROOT / folder).iterdir():
            if src.suffix in (".py", ".pyi", ".typed") and src.is_file():
                (dest / src.name).symlink_to(src)
    return FARM


def main() -> int:
    farm = build_farm()
    env = {**os.environ, "MYPYPATH": str(farm)}
    cmd = [sys.executable, "-m", "mypy", "-p", "meshwright", *sys.argv[1:]]
    return subprocess.call(cmd, env=env, cwd=ROOT)


if __name__ == "__main__":
    sys.exit(main())

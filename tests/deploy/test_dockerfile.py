"""The Dockerfile and .dockerignore, read with buildkit's own parser and hadolint, and the
image's HEALTHCHECK run for real against a `meshwright serve`.

No Docker engine is needed: the build context is rebuilt from .dockerignore's rules and
the wheel the image installs is built from it with pip, as the Dockerfile's build stage
does.
"""

from __future__ import annotations

import asyncio
import importlib.util
import os
import posixpath
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from tests.deploy._mesh import (
    DOCKERFILE,
    ROOT,
    closed_port,
    dockerfile_commands,
    final_stage,
    healthcheck_argv,
    image_env,
    run_probe,
    run_tool,
    tool,
)
from tests.e2e._proc import serve

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def _resolve_args(text: str) -> str:
    """``${NAME}`` replaced by the ARG defaults declared before the first FROM."""
    defaults = {}
    for c in dockerfile_commands():
        if c.cmd == "FROM":
            break
        if c.cmd == "ARG":
            name, _, value = c.value[0].partition("=")
            defaults[name] = value
    return re.sub(r"\$\{(\w+)\}", lambda m: defaults[m.group(1)], text)


def _copied() -> set[str]:
    """The sources of the COPY lines that read the build context (not another stage)."""
    return {
        posixpath.normpath(src)
        for c in dockerfile_commands()
        if c.cmd == "COPY" and not any(f.startswith("--from") for f in c.flags)
        for src in c.value[:-1]
    }


def _runs() -> list[str]:
    return [c.value[0] for c in dockerfile_commands() if c.cmd == "RUN"]


def test_base_images_are_pinned_python_312_slim() -> None:
    images = [_resolve_args(c.value[0]) for c in dockerfile_commands() if c.cmd == "FROM"]
    assert images, "no FROM"
    for image in images:
        name, _, tag = image.partition(":")
        assert name == "python", image
        assert re.fullmatch(r"3\.12\.\d+-slim(-\w+)?", tag), f"{image}: pin 3.12.x-slim"


def test_it_builds_the_repository_package_without_dev_extras() -> None:
    runs = _runs()
    wheel = [r for r in runs if re.search(r"\bpip wheel\b", r)]
    assert len(wheel) == 1 and wheel[0].split()[-1] == ".", f"one `pip wheel ... .`: {runs}"
    install = [r for r in runs if re.search(r"\bpip install\b", r)]
    assert len(install) == 1, runs
    # the runtime stage installs the wheel built from `.`, and nothing from an index
    assert "/wheels/meshwright-" in install[0] and "--no-index" in install[0], install
    for text in runs:
        assert "[dev]" not in text and not re.search(r"\[\s*\w", text), f"extras in: {text}"
        assert not re.search(r"(^|\s)(-e|--editable)\s", text), f"editable install: {text}"
        assert "requirements" not in text, text


def test_copies_what_pyproject_packages() -> None:
    """The COPY lines bring every folder pyproject's package-dir maps, the readme and
    pyproject.toml itself: a missing one would only show when the image is built."""
    sources = _copied()
    folders = {
        Path(folder).parts[0] for folder in PYPROJECT["tool"]["setuptools"]["package-dir"].values()
    }
    needed = folders | {"pyproject.toml", PYPROJECT["project"]["readme"]}
    assert needed <= sources, f"not copied: {needed - sources}"
    assert "." not in sources, "COPY . copies the whole context"


def test_runs_as_a_non_root_user_before_the_entrypoint() -> None:
    stage = final_stage()
    kinds = [c.cmd for c in stage]
    users = [c for c in stage if c.cmd == "USER"]
    assert users, "the runtime stage sets a USER"
    user = users[-1].value[0]
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"USER {user}: a numeric, non-zero uid"
    last_user = max(i for i, k in enumerate(kinds) if k == "USER")
    assert last_user < kinds.index("ENTRYPOINT")
    assert all(k != "RUN" for k in kinds[last_user:]), "nothing runs as root after USER"


def test_entrypoint_healthcheck_and_ports() -> None:
    stage = final_stage()
    entry = [c for c in stage if c.cmd == "ENTRYPOINT"]
    assert len(entry) == 1 and entry[0].json and list(entry[0].value) == ["meshwright"]
    exposed = {p.split("/")[0] for c in stage if c.cmd == "EXPOSE" for p in c.value}
    assert {"50051", "8080", "9464"} <= exposed, exposed
    argv = healthcheck_argv()
    assert argv[:2] == ["python", "-c"], argv
    assert "meshwright" not in argv[2], "the probe imports no meshwright code"
    check = next(c for c in stage if c.cmd == "HEALTHCHECK")
    assert any(f.startswith("--interval=") for f in check.flags), check.flags
    env = image_env()
    assert env["MESHWRIGHT_HOST"] == "0.0.0.0" and env["MESHWRIGHT_AGENT_HOST"] == "0.0.0.0"
    assert env["MESHWRIGHT_GRPC_PORT"] == "50051" and env["MESHWRIGHT_HTTP_PORT"] == "8080"


def test_hadolint_passes() -> None:
    result = run_tool("hadolint", "--no-color", str(DOCKERFILE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_is_a_real_linter() -> None:
    """The binary the test above trusts does flag a bad Dockerfile (an untagged base,
    `apt-get` without pinning, no USER)."""
    bad = "FROM python\nRUN apt-get install curl\n"
    result = subprocess.run(
        [tool("hadolint"), "--no-color", "-"],
        input=bad,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "DL3006" in result.stdout, result.stdout


# -- .dockerignore --------------------------------------------------------------------


def _dockerignore() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore's rules as (is an exception, regex), with the Go patternmatcher's
    syntax: `*` and `?` within a segment, `[...]` classes, `**` across segments, `!`
    re-includes."""
    rules = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = posixpath.normpath(line.lstrip("!").strip().lstrip("/"))
        out, i = "", 0
        while i < len(pattern):
            ch = pattern[i]
            if pattern.startswith("**/", i):
                out, i = out + "(.*/)?", i + 3
                continue
            if pattern.startswith("**", i):
                out, i = out + ".*", i + 2
                continue
            if ch == "[":  # a character class, as filepath.Match has them
                end = pattern.index("]", i + 1)
                out, i = out + pattern[i : end + 1], end + 1
                continue
            out += {"*": "[^/]*", "?": "[^/]"}.get(ch, re.escape(ch))
            i += 1
        rules.append((negate, re.compile(out + "$")))
    return rules


def _excluded(path: str, rules: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Whether the build context leaves ``path`` out: the last rule matching it or one
    of its parent folders decides (moby's MatchesOrParentMatches)."""
    parts = path.split("/")
    candidates = ["/".join(parts[: k + 1]) for k in range(len(parts))]
    excluded = False
    for negate, rule in rules:
        if any(rule.match(c) for c in candidates):
            excluded = not negate
    return excluded


def _tracked_files() -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=30
    ).stdout.decode()
    return [p for p in out.split("\0") if p and (ROOT / p).is_file()]


def _context() -> list[str]:
    rules = _dockerignore()
    return [p for p in _tracked_files() if not _excluded(p, rules)]


def test_dockerignore_leaves_out_venv_git_artifacts_and_secrets() -> None:
    rules = _dockerignore()
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        "build/lib/meshwright/cli.py",
        "dist/meshwright-0.1.0-py3-none-any.whl",
        "meshwright.egg-info/PKG-INFO",
        "services/__pycache__/cli.cpython-312.pyc",
        "gateway/app.pyc",
        ".mypy_cache/3.11/x.json",
        ".typecheck/meshwright/cli.py",
        "deploy/secrets/signing-key.pem",
        "deploy/secrets/admin.token",
        "tests/conftest.py",
        "bench/registry.py",
    ):
        assert _excluded(path, rules), f"{path} would be sent to the build"
    for path in ("pyproject.toml", "README.md", "services/cli.py", "gen/meshwright/mesh/v1/x.py"):
        assert not _excluded(path, rules), f"{path} is needed by the build"


def test_the_context_holds_exactly_what_the_copies_need() -> None:
    context = _context()
    sources = _copied()
    outside = [p for p in context if not any(p == s or p.startswith(s + "/") for s in sources)]
    assert not outside, f"sent to the build but copied by nothing: {outside[:10]}"
    for source in sources:
        assert any(p == source or p.startswith(source + "/") for p in context), source


def test_the_context_builds_a_complete_wheel(tmp_path: Path) -> None:
    """`pip wheel .` on the context .dockerignore leaves, as the build stage runs it
    (without dependencies: pip resolves those in the image build): the wheel has every
    module, the package data pyproject declares and the console script."""
    ctx = tmp_path / "ctx"
    for rel in _context():
        dest = ctx / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, dest)
    out = tmp_path / "wheels"
    # this venv's setuptools when it has one (fast, offline); else pip's isolated build
    # fetches the build-system requirements, as the image build does
    isolation = ["--no-build-isolation"] if importlib.util.find_spec("setuptools") else []
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", *isolation, "-q"]
        + ["--wheel-dir", str(out), str(ctx)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert build.returncode == 0, build.stdout + build.stderr
    (wheel,) = out.glob("meshwright-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    setuptools = PYPROJECT["tool"]["setuptools"]
    for package, folder in setuptools["package-dir"].items():
        inside = package.replace(".", "/")
        for module in (ROOT / folder).glob("*.py"):
            assert f"{inside}/{module.name}" in names, f"{inside}/{module.name} not in the wheel"
    for package, patterns in setuptools["package-data"].items():
        folder = ROOT / setuptools["package-dir"][package]
        for pattern in patterns:
            for data in folder.glob(pattern):
                rel = f"{package.replace('.', '/')}/{data.relative_to(folder).as_posix()}"
                assert rel in names, f"{rel} (package data) not in the wheel"
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    scripts = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "meshwright = meshwright.cli:main" in scripts, scripts


# -- the HEALTHCHECK, run -------------------------------------------------------------


async def test_the_healthcheck_passes_on_a_serving_registry_and_fails_on_aclosed_port() -> None:
    argv = healthcheck_argv()
    proc, address = await serve(
        "--services", "registry", "--insecure-no-auth", env={"MESHWRIGHT_LOG_LEVEL": "ERROR"}
    )
    try:
        port = address.rsplit(":", 1)[1]
        ok = await asyncio.to_thread(run_probe, argv, MESHWRIGHT_GRPC_PORT=port)
        assert ok.returncode == 0, ok.stderr
        # an agent container: its own port wins over the image's MESHWRIGHT_GRPC_PORT
        agent = await asyncio.to_thread(
            run_probe,
            argv,
            MESHWRIGHT_AGENT_PORT=port,
            MESHWRIGHT_GRPC_PORT=str(closed_port()),
        )
        assert agent.returncode == 0, agent.stderr
        closed = await asyncio.to_thread(run_probe, argv, MESHWRIGHT_GRPC_PORT=str(closed_port()))
        assert closed.returncode != 0, "the probe passed with nothing listening"
    finally:
        proc.terminate()
        await proc.communicate()


def test_the_healthcheck_reads_the_status_not_just_the_connection() -> None:
    """A server that answers NOT_SERVING (a process shutting down) fails the probe; the
    same server answering SERVING passes it."""
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        down = run_probe(healthcheck_argv(), MESHWRIGHT_GRPC_PORT=str(port))
        assert down.returncode == 1, down.stderr
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        up = run_probe(healthcheck_argv(), MESHWRIGHT_GRPC_PORT=str(port))
        assert up.returncode == 0, up.stderr
    finally:
        server.stop(0)


def test_the_healthcheck_fails_on_a_malformed_port() -> None:
    result = run_probe(healthcheck_argv(), MESHWRIGHT_GRPC_PORT="not-a-port")
    assert result.returncode != 0

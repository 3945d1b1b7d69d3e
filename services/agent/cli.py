"""``python -m meshwright.agent run MODULE:ATTR --registry HOST:PORT``.

Every flag also reads a ``MESHWRIGHT_*`` variable (the flag wins). Once the
agent is registered it prints one machine-readable line to stdout,
``READY agent_id=<id> endpoint=<host:port>`` (then ``metrics=<url>`` and ``a2a=<url>``
when those are served), which the supervisor waits for;
logs go to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence

from meshwright.agent.agent import Agent
from meshwright.agent.results import DEFAULT_RESULT_MEMORY, DEFAULT_RESULT_TTL_S
from meshwright.agent.runtime import AgentRuntime
from meshwright.mesh import telemetry
from meshwright.mesh.config import add_tls_flags, env_default, env_flag
from meshwright.mesh.logs import configure_logging
from meshwright.mesh.tls import TlsConfig

READY_PREFIX = "READY "
"""Start of the line printed once the agent is registered."""


def load_agent(target: str, app_dir: str | None = ".") -> Agent:
    """The ``Agent`` named by ``module:attr`` (an Agent, or a callable returning one).

    ``module`` is imported from ``app_dir`` first (the current directory by default, as
    uvicorn and celery do: ``mymodule:agent`` run next to ``mymodule.py`` works without
    PYTHONPATH), then from the installed packages; None leaves ``sys.path`` alone."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(
            f"{target!r}: expected MODULE:ATTR, e.g. meshwright.agent.samples:sysinfo_agent"
        )
    if app_dir is not None:
        path = os.path.abspath(app_dir)
        if not os.path.isdir(path):
            raise ValueError(f"--app-dir {app_dir!r} is not a directory")
        if path not in sys.path:
            sys.path.insert(0, path)
    obj: object = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not isinstance(obj, Agent) and callable(obj):
        obj = obj()
    if not isinstance(obj, Agent):
        raise TypeError(f"{target} is a {type(obj).__name__}, not a meshwright.agent.Agent")
    return obj


def ready_line(runtime: AgentRuntime) -> str:
    """The READY line for a runtime."""
    line = f"{READY_PREFIX}agent_id={runtime.agent_id} endpoint={runtime.endpoint}"
    if runtime.metrics_server is not None:
        line += f" metrics={runtime.metrics_server.url}"
    if runtime.a2a is not None:
        line += f" a2a={runtime.a2a.url}"
    return line


def parse_ready_line(line: str) -> dict[str, str] | None:
    """The fields of a READY line, or None if ``line`` is not one."""
    if not line.startswith(READY_PREFIX):
        return None
    fields = dict(p.split("=", 1) for p in line[len(READY_PREFIX) :].split() if "=" in p)
    return fields if "agent_id" in fields and "endpoint" in fields else None


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``run`` (for CLIs that embed it as a subcommand)."""
    parser.add_argument("target", metavar="MODULE:ATTR", help="the Agent to serve")
    parser.add_argument(
        "--app-dir",
        default=env_default("app_dir", "."),
        help="directory MODULE is imported from first (env MESHWRIGHT_APP_DIR; the current "
        "directory)",
    )
    add_serve_arguments(parser)


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that serve any agent: those of ``run`` but MODULE:ATTR and --app-dir
    (shared by the commands that make their agent another way, such as ``a2a``)."""
    parser.add_argument(
        "--registry",
        default=env_default("registry", None),
        help="registry address host:port, or several replicas a:1,b:2 (env MESHWRIGHT_REGISTRY)",
    )
    parser.add_argument(
        "--economy",
        default=env_default("economy", None),
        help="economy address for the payout account, or several replicas a:1,b:2; the "
        "registry's by default (env MESHWRIGHT_ECONOMY)",
    )
    parser.add_argument(
        "--host",
        default=env_default("agent_host", "127.0.0.1"),
        help="interface to bind (env MESHWRIGHT_AGENT_HOST)",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(env_default("agent_port", 0)),
        help="port to bind, 0 picks one (env MESHWRIGHT_AGENT_PORT)",
    )
    parser.add_argument(
        "--advertise-host",
        default=env_default("advertise_host", None),
        help="host in the registered endpoint (env MESHWRIGHT_ADVERTISE_HOST)",
    )
    parser.add_argument(
        "--lease-ttl",
        type=float,
        default=float(env_default("lease_ttl_s", 10.0)),
        help="lease length in seconds (env MESHWRIGHT_LEASE_TTL_S)",
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=float(env_default("grace_s", 5.0)),
        help="seconds in-flight tasks may finish at shutdown (env MESHWRIGHT_GRACE_S)",
    )
    parser.add_argument(
        "--result-memory",
        type=int,
        default=int(env_default("result_memory", DEFAULT_RESULT_MEMORY)),
        help="finished tasks remembered by task id, so a re-dispatch is answered without "
        "running the skill again; 0 remembers none (env MESHWRIGHT_RESULT_MEMORY)",
    )
    parser.add_argument(
        "--result-ttl",
        type=float,
        default=float(env_default("result_ttl_s", DEFAULT_RESULT_TTL_S)),
        help="seconds a finished task is remembered (env MESHWRIGHT_RESULT_TTL_S)",
    )
    parser.add_argument(
        "--agent-id",
        default=env_default("agent_id", None),
        help="registry id; the subject of an agent --token by default (and then it must be "
        "that subject), else the name plus a random suffix (env MESHWRIGHT_AGENT_ID)",
    )
    parser.add_argument(
        "--token",
        default=env_default("token", None),
        help="this agent's bearer token (role agent; its subject is the agent id), sent on "
        "its calls to the registry and the economy (env MESHWRIGHT_TOKEN, or a file holding "
        "it: MESHWRIGHT_TOKEN_FILE)",
    )
    parser.add_argument(
        "--auth-public-key",
        default=env_default("auth_public_key", ""),
        help="PEM public key that verifies callers' tokens (env MESHWRIGHT_AUTH_PUBLIC_KEY)",
    )
    parser.add_argument(
        "--insecure-no-auth",
        action="store_true",
        default=env_flag("insecure_no_auth"),
        help="serve without checking tokens: anyone reaching the port gets work done "
        "(env MESHWRIGHT_INSECURE_NO_AUTH)",
    )
    add_tls_flags(parser)
    parser.add_argument(
        "--stop-on-stdin-eof",
        action="store_true",
        help="stop gracefully when stdin closes (set by the supervisor, so agents do not "
        "outlive it)",
    )
    parser.add_argument(
        "--log-level",
        default=env_default("log_level", "INFO"),
        help="logging level (env MESHWRIGHT_LOG_LEVEL)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=env_default("agent_metrics_port", None),
        metavar="PORT",
        help="serve Prometheus metrics at http://HOST:PORT/metrics, 0 picks a port; off by "
        "default (env MESHWRIGHT_AGENT_METRICS_PORT)",
    )
    parser.add_argument(
        "--a2a-port",
        type=int,
        default=env_default("agent_a2a_port", None),
        metavar="PORT",
        help="also serve the A2A protocol at http://HOST:PORT/ (agent card at "
        "/.well-known/agent-card.json), 0 picks a port; off by default "
        "(env MESHWRIGHT_AGENT_A2A_PORT)",
    )
    parser.add_argument(
        "--log-format",
        choices=("human", "json"),
        default=env_default("log_format", "human"),
        help="human-readable lines or one JSON object a line, with trace and span ids "
        "(env MESHWRIGHT_LOG_FORMAT)",
    )


class AgentLoadError(Exception):
    """No agent to serve; the message says why. ``exit_code``: 2 for bad input, 1 for a
    source that could not be reached."""

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _load_target(args: argparse.Namespace) -> Agent:
    try:
        return load_agent(args.target, args.app_dir)
    except (ImportError, AttributeError, ValueError, TypeError) as err:
        raise AgentLoadError(f"cannot load {args.target}: {err}") from None


def run_command(
    args: argparse.Namespace, load: Callable[[argparse.Namespace], Agent] = _load_target
) -> int:
    """Serve the agent ``load(args)`` makes (MODULE:ATTR's by default) until
    SIGTERM/SIGINT; the exit code."""
    try:
        configure_logging(args.log_level, json=args.log_format == "json", service="agent")
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not args.registry:
        print("error: --registry (or MESHWRIGHT_REGISTRY) is required", file=sys.stderr)
        return 2
    try:
        agent = load(args)
    except AgentLoadError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code

    try:
        tls = TlsConfig.maybe(args.tls_cert, args.tls_key, args.tls_ca)
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not args.insecure_no_auth and not args.auth_public_key:
        print(
            "error: --auth-public-key (or MESHWRIGHT_AUTH_PUBLIC_KEY) is required to check "
            "who calls this agent; --insecure-no-auth turns checking off",
            file=sys.stderr,
        )
        return 2

    try:  # spans go where the OTEL_* variables say; nowhere when they say nothing
        telemetry.setup_tracing(
            agent.name, instance_id=args.agent_id or f"{socket.gethostname()}:{os.getpid()}"
        )
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    def announce(runtime: AgentRuntime) -> None:
        print(ready_line(runtime), flush=True)

    async def serve() -> None:
        watcher = asyncio.create_task(_stop_on_stdin_eof()) if args.stop_on_stdin_eof else None
        try:
            await agent.serve(
                args.registry,
                economy=args.economy,
                host=args.host,
                port=args.port,
                advertise_host=args.advertise_host,
                lease_ttl_s=args.lease_ttl,
                grace_s=args.grace,
                result_memory=args.result_memory,
                result_ttl_s=args.result_ttl,
                metrics_port=args.metrics_port,
                a2a_port=args.a2a_port,
                agent_id=args.agent_id,
                token=args.token,
                auth_public_key=args.auth_public_key,
                insecure_no_auth=args.insecure_no_auth,
                tls=tls,
                on_registered=announce,
            )
        finally:
            if watcher is not None:
                watcher.cancel()

    try:
        asyncio.run(serve())
    except (OSError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    finally:
        telemetry.shutdown_tracing()  # exports what is left
    return 0


async def _stop_on_stdin_eof() -> None:
    """SIGTERM ourselves (the graceful path) once stdin reaches end of file."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), sys.stdin
    )
    try:
        while await reader.read(4096):
            pass
    finally:
        transport.close()
    logging.getLogger(__name__).info("stdin closed; stopping")
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``python -m meshwright.agent``; returns the exit code."""
    parser = argparse.ArgumentParser(prog="python -m meshwright.agent", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    from meshwright.agent.a2a import _bridge_cli  # a2a-sdk itself only loads when it runs
    from meshwright.agent.llm import cli as llm_cli  # ollama and httpx load only when it runs

    try:  # defaults come from the environment (secrets from files)
        add_run_arguments(commands.add_parser("run", help="serve an agent and register it"))
        _bridge_cli.add_arguments(
            commands.add_parser(
                "a2a",
                help="serve an external A2A agent (by its card URL) as an agent of the mesh",
                description=_bridge_cli.DESCRIPTION,
            )
        )
        llm = commands.add_parser(
            "llm",
            help="serve the LLM sample agent (Ollama or OpenAI-compatible, degrades gracefully)",
            description=llm_cli.__doc__,
        )
        llm_cli.add_llm_arguments(llm)
        add_serve_arguments(llm)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    if args.command == "a2a":
        return _bridge_cli.run(args)
    if args.command == "llm":
        return llm_cli.llm_command(args)
    return run_command(args)

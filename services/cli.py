"""The ``meshwright`` command line.

``up`` runs the whole mesh on this machine; ``serve`` runs chosen services
(distributed mode); ``token create`` mints a token; the other commands are
clients of a running mesh. Every flag has a ``MESHWRIGHT_*`` environment
variable.

Client commands find their bearer token by themselves, first match wins:
``--token``; ``--as admin|client`` (that development token file);
``$MESHWRIGHT_TOKEN``; else the development token file ``meshwright up``
wrote to the config directory: ``admin.token`` for what only admins may do
(``account create --balance N`` or ``--gov N``, ``account mint``, ``ledger
audit``), ``client.token`` for everything else.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import re
import shlex
import socket
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from google.protobuf import json_format
from rich.console import Console
from rich.markup import escape as esc

from meshwright.economy.v1 import economy_pb2
from meshwright.mesh import telemetry
from meshwright.mesh.auth import Role
from meshwright.mesh.client import ChannelPool, LocalServiceClient, ServiceClient
from meshwright.mesh.config import MeshConfig, add_tls_flags, env_default, env_value
from meshwright.mesh.errors import MeshError, PermissionDenied, Unauthenticated
from meshwright.mesh.logs import configure_logging
from meshwright.mesh.security import config_dir
from meshwright.mesh.server import install_signal_handlers
from meshwright.mesh.tls import TlsConfig
from meshwright.registry.v1 import registry_pb2
from meshwright.workflow.v1 import workflow_pb2

if TYPE_CHECKING:
    from meshwright.agent.supervisor import AgentSpec
    from meshwright.mesh.security import DevCredentials
    from meshwright.node import Node

W = workflow_pb2
SAMPLE_AGENTS = (
    "meshwright.agent.samples:sysinfo_agent",
    "meshwright.agent.samples:analyst_agent",
)
TOKEN_ROLES = ("admin", "client")
"""Development token files a client command can pick with ``--as``."""

console = Console(highlight=False)
SERVE_CHOICES = ("registry", "economy", "workflow", "gateway")
"""What ``meshwright serve --services`` may name."""
err_console = Console(stderr=True, highlight=False)


def demo_definition() -> workflow_pb2.WorkflowDefinition:
    """The packaged demo workflow (a diamond: snapshot → load, memory → report)."""
    text = resources.files("meshwright").joinpath("examples/system-report.json").read_text()
    return json_format.Parse(text, workflow_pb2.WorkflowDefinition())


def load_definition(path: str) -> workflow_pb2.WorkflowDefinition:
    """A workflow definition from a JSON file (proto3 JSON of WorkflowDefinition)."""
    if path == "demo":
        return demo_definition()
    text = sys.stdin.read() if path == "-" else Path(path).read_text()
    try:
        return json_format.Parse(text, workflow_pb2.WorkflowDefinition())
    except json_format.ParseError as err:
        raise SystemExit(f"{path}: not a WorkflowDefinition: {err}") from None


# -- up / serve -----------------------------------------------------------------


def _security_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Config fields given as flags (None where the flag was not given: the env decides)."""
    names = (
        "insecure_no_auth",
        "auth_public_key",
        "auth_private_key",
        "token",
        "tls_cert",
        "tls_key",
        "tls_ca",
        "rate_limit_rps",
        "cors_origins",
    )
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def sample_specs(count: int) -> list[AgentSpec]:
    """``count`` sample agents, alternating sysinfo and analyst (copies named ``-2``, ...)."""
    from meshwright.agent.supervisor import AgentSpec

    specs: list[AgentSpec] = []
    seen: dict[str, int] = {}
    for i in range(count):
        target = SAMPLE_AGENTS[i % len(SAMPLE_AGENTS)]
        base = target.rpartition(":")[2].removesuffix("_agent")
        seen[base] = seen.get(base, 0) + 1
        name = base if seen[base] == 1 else f"{base}-{seen[base]}"
        specs.append(AgentSpec(target=target, name=name))
    return specs


def _tls_env(config: MeshConfig) -> dict[str, str]:
    """The TLS settings as environment for child agents (which serve and call with them)."""
    pairs = (("CERT", config.tls_cert), ("KEY", config.tls_key), ("CA", config.tls_ca))
    return {f"MESHWRIGHT_TLS_{k}": v for k, v in pairs if v}


def _as(node: Node, service: str, token: str | None) -> ServiceClient:
    """A client of an in-process service calling with ``token`` (through the pipeline)."""
    client = node.clients[service]
    assert isinstance(client, LocalServiceClient), "meshwright up runs every service here"
    return client.with_token(token)


def _print_auth(config: MeshConfig, node: Node, creds: DevCredentials | None) -> None:
    """How to call the mesh: where the tokens are, with grpcurl and curl lines to copy."""
    if creds is None:
        console.print(
            "[bold red]auth OFF[/bold red] (--insecure-no-auth): every caller is an admin; "
            "anyone who can reach these ports can mint money",
            soft_wrap=True,
        )
        return
    client_file = shlex.quote(str(creds.client_token_file))
    console.print(
        f"[bold]meshwright[/bold] auth  ON; development keys and tokens in "
        f"{esc(str(creds.directory))} (files mode 0600)",
        soft_wrap=True,
    )
    console.print(
        esc(f"  client token {creds.client_token_file}: the CLI's default identity"),
        soft_wrap=True,
    )
    console.print(
        esc(f"  admin token  {creds.admin_token_file}: mints money (CLI: --as admin)"),
        soft_wrap=True,
    )
    tls = (
        f"-cacert {shlex.quote(config.tls_ca)} -cert {shlex.quote(config.tls_cert)} "
        f"-key {shlex.quote(config.tls_key)}"
        if config.tls_ca
        else "-plaintext"
    )
    header = f'-H "authorization: Bearer $(cat {client_file})"'
    console.print(
        esc(
            f"  grpcurl {tls} {header} {node.grpc_address} "
            "meshwright.workflow.v1.WorkflowService/ListWorkflows"
        ),
        soft_wrap=True,
    )
    if node.http_url:
        console.print(esc(f"  curl {header} {node.http_url}/v1/workflows"), soft_wrap=True)


def _store_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The store and economy settings given as flags (None: the env or the default)."""
    return {
        "store_url": args.store,
        "workflow_retention_s": args.workflow_retention,
        "workflow_lease_ttl_s": args.workflow_lease_ttl,
        "economy_params": args.economy_params,
        "idempotency_ttl_s": args.idempotency_ttl,
        "registry_url": args.registry,
        "health_check_interval_s": args.health_check_interval,
        "stopped_retention_s": args.stopped_retention,
        "deregister_after_s": args.deregister_after,
    }


async def _up(args: argparse.Namespace) -> int:
    from meshwright._demo import DemoClients, run_demo, wait_for_agents
    from meshwright.agent.manager import AgentManager
    from meshwright.agent.supervisor import AgentStartError, AgentSupervisor
    from meshwright.agent.v1.manager_pb2 import PROCESS_STATE_RUNNING, ManagedAgentSpec
    from meshwright.mesh.auth import verifier_from_files
    from meshwright.mesh.security import DevCredentials, Security
    from meshwright.node import start_node

    config = MeshConfig.from_env(
        host=args.host,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        **_store_overrides(args),
        **_security_overrides(args),
    )
    # `up` is its own issuer: it calls as a service token it mints, never as a
    # MESHWRIGHT_TOKEN the user exported for the client commands.
    config = dataclasses.replace(config, token="")
    creds: DevCredentials | None = None
    if config.insecure_no_auth:
        security = Security.from_config(config)  # logs the warning
    else:
        creds = DevCredentials.ensure(config_dir(config))
        config = dataclasses.replace(
            config,
            auth_public_key=str(creds.public_key),
            auth_private_key=str(creds.private_key),
            auth_hs256_secret="",
        )
        security = Security.from_config(config, issuer=creds.issuer())
    _start_tracing("meshwright", args.trace_buffer, DEFAULT_UP_TRACE_BUFFER)
    # The sample agents (and any started with `meshwright agents start`) run under the
    # agent manager this node serves; its supervisor learns the registry address below.
    supervisor = AgentSupervisor(
        registry="",
        echo=args.agent_logs,
        # Each agent serves its own /metrics on a port it picks (its READY line names
        # it, the manager's metrics summary reads it, and the list below shows it).
        env={**_tls_env(config), "MESHWRIGHT_AGENT_METRICS_PORT": "0"},
        issuer=security.issuer if creds is not None else None,
        auth_public_key=str(creds.public_key) if creds is not None else "",
        insecure_no_auth=creds is None,
        # Restart crashed agents for as long as the mesh runs, with capped backoff.
        max_restarts=None,
    )
    manager = AgentManager(supervisor)
    try:
        node = await start_node(
            config,
            gateway=not args.no_gateway,
            security=security,
            metrics_port=_port_or_none(args.metrics_port),
            manager=manager,
        )
    except BaseException:
        telemetry.shutdown_tracing()
        raise
    _settle_heap()
    stop = asyncio.Event()
    install_signal_handlers(stop.set)
    try:
        console.print(
            f"[bold]meshwright[/bold] gRPC  {node.grpc_address}  "
            f"(registry, economy, workflow, agent router, health, reflection)"
        )
        if node.http_url:
            console.print(
                f"[bold]meshwright[/bold] REST  {node.http_url}  (gateway, /v1/routes, /metrics)"
            )
            console.print(
                f"[bold]meshwright[/bold] A2A   {node.http_url}/a2a/mesh  (the mesh as one A2A "
                f"agent; every agent's card: {node.http_url}/.well-known/api-catalog)",
                soft_wrap=True,
            )
        if node.metrics_server is not None:
            console.print(f"[bold]meshwright[/bold] metrics  {node.metrics_server.url}")
        _print_auth(config, node, creds)
        supervisor.registry = node.grpc_address
        # A crashed agent shows ERROR at once, reported as the admin.
        supervisor.failures = _as(node, "registry", creds.admin_token if creds else None)
        managed = [(s.label, ManagedAgentSpec(module=s.target)) for s in sample_specs(args.agents)]
        if args.agents_dir:
            from meshwright.agent.discovery import discover_agents

            managed += discover_agents(args.agents_dir)
        async with supervisor as sup:
            expected = 0
            for name, spec in managed:
                started = await manager.create(name, spec, start=True)
                failed = [p for p in started.processes if p.state != PROCESS_STATE_RUNNING]
                if failed:
                    process = f"{name}/{failed[0].replica}"
                    tail = "\n".join(sup.output(process)[-20:])
                    raise AgentStartError(
                        f"agent {process} did not start: {failed[0].reason}\n{tail}"
                    )
                expected += len(started.processes)
            if managed:
                agents = await wait_for_agents(node.clients["registry"], expected)
                metrics = {p.agent_id: p.metrics_url for p in sup.statuses() if p.metrics_url}
                for a in agents:
                    skills = ", ".join(f"{s.id} ({s.price})" for s in a.card.skills)
                    console.print(
                        f"  agent [bold]{esc(a.agent_id)}[/bold] at {a.endpoint}: {esc(skills)}"
                        + (f"; metrics {metrics[a.agent_id]}" if a.agent_id in metrics else "")
                    )
            if args.demo:
                admin = creds.admin_token if creds is not None else None
                client = creds.client_token if creds is not None else None
                owner = ""
                if creds is not None and client is not None:
                    owner = (
                        verifier_from_files(public_key=str(creds.public_key)).verify(client).name
                    )
                demo = DemoClients(
                    admin_economy=_as(node, "economy", admin),
                    economy=_as(node, "economy", client),
                    workflows=_as(node, "workflow", client),
                    owner=owner,
                )
                ok = await run_demo(demo, console)
                if args.exit_after_demo:
                    return 0 if ok else 1
            console.print("[dim]ready; Ctrl-C stops the mesh[/dim]")
            await stop.wait()
            console.print("stopping...")
            if node.engine is not None:
                # Workflows first: handed off (attempts under way finish within a
                # grace), so none waits for agents that are going away.
                await node.engine.stop()
    finally:
        await node.stop()
        telemetry.shutdown_tracing()
    return 0


def _cluster_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "meshwright" / "cluster"


async def _cluster(args: argparse.Namespace) -> int:
    """``cluster up``: the distributed mesh as local processes (meshwright.cluster)."""
    from meshwright._demo import DemoClients, run_demo, wait_for_agents
    from meshwright.cluster import DEFAULT_AGENTS, Cluster, ClusterConfig
    from meshwright.mesh.client import ChannelPool

    if not args.registry:
        raise ValueError(
            "cluster up needs a Consul for its replicas to share: --registry "
            "consul://127.0.0.1:8500 (env MESHWRIGHT_REGISTRY_URL), e.g. `consul agent -dev`"
        )
    analysts = max(args.agents - 1, 0)
    agents = [(f"analyst-{i}", DEFAULT_AGENTS[0][1]) for i in range(1, analysts + 1)]
    if args.agents > 0:
        agents.append(("sysinfo-1", DEFAULT_AGENTS[-1][1]))
    config = ClusterConfig(
        directory=Path(args.dir),
        registry_url=args.registry,
        store_url=args.store or "",
        replicas={k: args.replicas for k in ("registry", "economy", "workflow")},
        agents=agents,
        host=args.host,
        http_port=args.http_port,
    )
    stop = asyncio.Event()
    install_signal_handlers(stop.set)
    console.print(f"starting a cluster in {esc(str(config.directory))} ...")
    async with Cluster(config) as cluster:
        from rich.table import Table

        table = Table(box=None, show_header=True, header_style="bold")
        for col in ("process", "pid", "address", "log"):
            table.add_column(col)
        for m in cluster.members.values():
            table.add_row(m.name, str(m.pid), m.address, str(m.log_path))
        assert cluster.agents is not None
        for st in cluster.agents.statuses():
            table.add_row(f"agent {st.name}", str(st.pid), st.endpoint, "")
        console.print(table)
        keys = cluster.directory / "keys"
        console.print(
            f"store {cluster.store_url}; registry {config.registry_url}; processes in "
            f"{cluster.directory / 'cluster.json'}"
        )
        console.print(
            f'REST   curl -H "Authorization: Bearer $(cat {keys}/client.token)" '
            f"{cluster.gateway_url}/v1/agents"
        )
        console.print(
            f"CLI    meshwright --log-level WARNING workflow --target "
            f"{cluster.targets('workflow')} --token $(cat {keys}/client.token) list"
        )
        clients = ChannelPool(token=cluster.token("client"))
        admin = ChannelPool(token=cluster.token("admin"))
        try:
            if agents:
                registry = _client(
                    admin, cluster.targets("registry"), registry_pb2, "RegistryService"
                )
                await wait_for_agents(registry, len(agents))
            if args.demo:
                demo = DemoClients(
                    admin_economy=_client(
                        admin, cluster.targets("economy"), economy_pb2, "EconomyService"
                    ),
                    economy=_client(
                        clients, cluster.targets("economy"), economy_pb2, "EconomyService"
                    ),
                    workflows=_client(
                        clients, cluster.targets("workflow"), workflow_pb2, "WorkflowService"
                    ),
                    owner="client:dev",
                )
                ok = await run_demo(demo, console)
                if args.exit_after_demo:
                    return 0 if ok else 1
            console.print("[dim]ready; Ctrl-C stops the cluster[/dim]")
            await stop.wait()
            console.print("stopping...")
        finally:
            await clients.close()
            await admin.close()
    return 0


def _port_or_none(value: int | str | None) -> int | None:
    return None if value is None or value == "" else int(value)


DEFAULT_UP_TRACE_BUFFER = 1000
"""Traces `up` keeps in memory by default (the spans of each bounded too)."""


def _start_tracing(service: str, buffer: int | str | None, default: int) -> None:
    """Tracing for this process: a span store of ``buffer`` traces (``default`` when
    None; 0 for none) and the exporters the OTEL_* variables configure. Bad settings
    raise ``ValueError`` (the CLI prints it)."""
    traces = default if buffer is None else int(buffer)
    if traces < 0:
        raise ValueError(f"--trace-buffer must be 0 or more, not {traces}")
    store = telemetry.SpanStore(max_traces=traces) if traces else None
    instance = f"{socket.gethostname()}:{os.getpid()}"
    telemetry.setup_tracing(service, instance_id=instance, store=store)


def _settle_heap() -> None:
    """Move everything made at start-up (modules, descriptors, the node) out of the
    collector's way: full collections then walk only what serving made. They were the
    registry's worst pauses under heartbeat load (bench/registry.py --gc-log)."""
    import gc

    gc.collect()
    gc.freeze()


async def _serve(args: argparse.Namespace) -> int:
    from meshwright.node import start_node

    config = MeshConfig.from_env(
        host=args.host,
        grpc_port=args.grpc_port,
        http_port=args.http_port,
        **_store_overrides(args),
        **_security_overrides(args),
    )
    named = [s.strip() for s in args.services.split(",") if s.strip()]
    if not named:
        raise ValueError(f"--services: name at least one of {', '.join(SERVE_CHOICES)}")
    unknown = [s for s in named if s not in SERVE_CHOICES]
    if unknown:
        raise ValueError(
            f"--services: unknown {', '.join(unknown)}; choose from {', '.join(SERVE_CHOICES)}"
        )
    services = [s for s in named if s != "gateway"]
    # `gateway` named: the gateway runs (alone if nothing else is named); not named: it
    # runs unless --no-gateway.
    gateway = "gateway" in named or not args.no_gateway
    if "gateway" in named and args.no_gateway:
        raise ValueError("--services names the gateway and --no-gateway turns it off")
    _start_tracing("meshwright-" + "-".join(named), args.trace_buffer, 0)
    try:
        node = await start_node(
            config,
            services=services,
            registry_target=args.registry_target,
            economy_target=args.economy_target,
            workflow_target=args.workflow_target,
            gateway=gateway,
            metrics_port=_port_or_none(args.metrics_port),
        )
    except BaseException:
        telemetry.shutdown_tracing()
        raise
    _settle_heap()
    stop = asyncio.Event()
    install_signal_handlers(stop.set)
    console.print(f"serving {', '.join(named)} on {node.grpc_address}")
    if node.http_url:
        console.print(f"gateway on {node.http_url}")
    if node.metrics_server is not None:
        console.print(f"metrics on {node.metrics_server.url}")
    try:
        await stop.wait()
    finally:
        await node.stop()
        telemetry.shutdown_tracing()
    return 0


# -- tokens -----------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhd]?)")
_UNIT_S = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0}


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``30m``, ``1h``, ``7d`` as seconds (argparse type)."""
    m = _DURATION.fullmatch(text.strip())
    seconds = float(m.group(1)) * _UNIT_S[m.group(2)] if m else 0.0
    if seconds <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a positive duration such as 90s, 30m, 1h or 7d"
        )
    return seconds


def parse_duration_or_zero(text: str) -> float:
    """``parse_duration``, and ``0`` (turns the setting off)."""
    if text.strip() in ("0", "0s"):
        return 0.0
    try:
        return parse_duration(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration such as 0, 90s, 30m, 1h or 7d"
        ) from None


def _dev_dir() -> Path:
    return config_dir(MeshConfig(config_dir=os.environ.get("MESHWRIGHT_CONFIG_DIR", "")))


def _token(args: argparse.Namespace) -> int:
    from meshwright.mesh.auth import issuer_from_file

    key = args.private_key or str(_dev_dir() / "signing-key.pem")
    if not Path(key).is_file():
        err_console.print(
            f"[red]error[/red] no signing key at {esc(key)}: run `meshwright up` once to "
            "create the development key, or pass --private-key (MESHWRIGHT_AUTH_PRIVATE_KEY)",
            soft_wrap=True,
        )
        return 2
    token = issuer_from_file(key).issue(args.role, args.subject, ttl_s=args.ttl)
    print(token)  # alone on stdout, for $(meshwright token create ...)
    return 0


def _keys(args: argparse.Namespace) -> int:
    """``keys init``: the signing key pair and the tokens a deployment's processes use."""
    from meshwright.mesh.auth import Role
    from meshwright.mesh.security import DevCredentials
    from meshwright.mesh.validation import ID_PATTERN

    bad = [a for a in args.agent if not ID_PATTERN.fullmatch(a)]
    if bad:
        raise ValueError(
            f"--agent {bad[0]!r}: an agent id is 1-128 letters, digits and . _ : - "
            "(starting with a letter or digit)"
        )
    directory = Path(args.dir)
    creds = DevCredentials.ensure(directory, client_subject=args.client)
    issuer = creds.issuer()
    tokens = [(directory / "service.token", Role.SERVICE, args.service)]
    tokens += [(directory / f"agent-{a}.token", Role.AGENT, a) for a in args.agent]
    for path, role, subject in tokens:
        creds.ensure_token(path, role, subject, issuer=issuer, ttl_s=args.ttl)
    for path in (creds.private_key, creds.public_key, creds.admin_token_file):
        print(path)
    print(creds.client_token_file)
    for path, _, _ in tokens:
        print(path)
    return 0


# -- client commands --------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Credentials:
    """The token a client command calls with, and where it came from (for error hints)."""

    token: str | None
    source: str


def client_credentials(args: argparse.Namespace, *, admin: bool = False) -> Credentials:
    """``--token``, else ``--as`` (a dev token file), else ``$MESHWRIGHT_TOKEN``, else the
    dev token file for the command: admin when only admins may do it (``admin``: minting,
    auditing), client otherwise."""
    if args.token:
        return Credentials(args.token.strip(), "--token")
    role = args.as_role
    if role is None:
        env = (env_value("token") or "").strip()
        if env:
            source = (
                "MESHWRIGHT_TOKEN"
                if os.environ.get("MESHWRIGHT_TOKEN")
                else "MESHWRIGHT_TOKEN_FILE"
            )
            return Credentials(env, source)
        role = "admin" if admin else "client"
    path = _dev_dir() / f"{role}.token"
    try:
        token = path.read_text().strip() or None
    except FileNotFoundError:
        token = None
    except OSError as err:
        raise OSError(f"cannot read {path}: {err.strerror}") from None
    if token is None and args.as_role is not None:
        raise OSError(
            f"no {role} token at {path}: run `meshwright up` once to create the development "
            "tokens, or pass --token"
        )
    return Credentials(token, str(path))


def _dev_client_principal() -> str | None:
    """``client:<sub>`` of the development client token, None without one."""
    path = _dev_dir() / "client.token"
    try:
        caller = _caller(Credentials(path.read_text().strip(), str(path)))
    except OSError:
        return None
    return caller if caller.startswith("client:") else None


def _pool(args: argparse.Namespace, creds: Credentials) -> ChannelPool:
    tls = TlsConfig.maybe(args.tls_cert, args.tls_key, args.tls_ca)
    return ChannelPool(tls=tls, token=creds.token)


def _client(pool: ChannelPool, target: str, module: Any, name: str) -> ServiceClient:
    """A client of ``name`` at ``target``: one address, or replicas ``a:1,b:2`` (balanced)."""
    from meshwright.mesh.targets import service_client

    return service_client(pool, target, module.DESCRIPTOR.services_by_name[name])


async def _workflow(args: argparse.Namespace) -> int:
    from meshwright._console import follow, to_json, workflow_table

    pool = _pool(args, args.credentials)
    try:
        wfs = _client(pool, args.target, workflow_pb2, "WorkflowService")
        if args.wf_command == "run":
            definition = load_definition(args.file)
            if args.budget is not None:
                definition.budget = args.budget
            if args.payer:
                definition.payer_account_id = args.payer
            reply = await wfs.call(
                "CreateWorkflow",
                W.CreateWorkflowRequest(
                    definition=definition, workflow_id=args.id or "", request_id=args.request_id
                ),
            )
            wf = reply.workflow
            console.print(f"created [bold]{esc(wf.workflow_id)}[/bold] ({len(wf.tasks)} tasks)")
            if not args.follow:
                return 0
            final = await follow(wfs, wf.workflow_id, console)
            console.print(workflow_table(final))
            return 0 if final.state == W.WORKFLOW_STATE_SUCCEEDED else 1
        if args.wf_command == "get":
            got = await wfs.call("GetWorkflow", W.GetWorkflowRequest(workflow_id=args.id))
            console.print(to_json(got.workflow) if args.json else workflow_table(got.workflow))
            return 0
        if args.wf_command == "list":
            page = await wfs.call("ListWorkflows", W.ListWorkflowsRequest(page_size=args.limit))
            for wf in page.workflows:
                state = W.WorkflowState.Name(wf.state).removeprefix("WORKFLOW_STATE_")
                console.print(esc(f"{wf.workflow_id}  {state:<10} {wf.name}  spent {wf.spent}"))
            return 0
        if args.wf_command == "trace":
            from meshwright._waterfall import render_waterfall

            trace = await wfs.call(
                "GetWorkflowTrace", W.GetWorkflowTraceRequest(workflow_id=args.id)
            )
            if args.json:
                console.print(to_json(trace))
            else:
                console.print(render_waterfall(trace, width=console.width))
            return 0
        if args.wf_command == "watch":
            final = await follow(wfs, args.id, console, after=args.after)
            return 0 if final.state == W.WORKFLOW_STATE_SUCCEEDED else 1
        if args.wf_command == "cancel":
            got = await wfs.call(
                "CancelWorkflow", W.CancelWorkflowRequest(workflow_id=args.id, reason=args.reason)
            )
            console.print(workflow_table(got.workflow))
            return 0
    finally:
        await pool.close()
    return 2


async def _agents(args: argparse.Namespace) -> int:
    pool = _pool(args, args.credentials)
    if getattr(args, "agents_command", None):
        from meshwright._agents_cli import run_manager_command
        from meshwright.agent.v1 import manager_pb2

        try:
            manager = _client(pool, args.target, manager_pb2, "AgentManagerService")
            return await run_manager_command(args, manager, console)
        finally:
            await pool.close()
    try:
        reg = _client(pool, args.target, registry_pb2, "RegistryService")
        token = ""
        while True:
            page = await reg.call(
                "ListAgents",
                registry_pb2.ListAgentsRequest(
                    skill=args.skill, state=args.state, page_size=1000, page_token=token
                ),
            )
            for a in page.agents:
                state = registry_pb2.AgentState.Name(a.state).removeprefix("AGENT_STATE_")
                skills = ", ".join(s.id for s in a.card.skills)
                why = f"  ({a.state_reason})" if a.state_reason else ""
                why += f"  {a.health_detail}" if a.health_detail else ""
                console.print(
                    esc(f"{a.agent_id}  {state:<8} {a.endpoint}  load {a.load}  [{skills}]{why}"),
                    soft_wrap=True,
                )
            token = page.next_page_token
            if not token:
                return 0
    finally:
        await pool.close()


def _enum_arg(enum: Any, prefix: str) -> Any:
    """An argparse type taking a contract enum's value by its short name (``gov``, ``GOV``)."""
    names = [n.removeprefix(prefix) for n in enum.keys() if not n.endswith("_UNSPECIFIED")]

    def parse(text: str) -> int:
        name = text.strip().upper().removeprefix(prefix)
        if name not in names:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not one of {', '.join(n.lower() for n in names)}"
            )
        value: int = enum.Value(prefix + name)
        return value

    parse.__name__ = enum.DESCRIPTOR.name  # argparse names the type in its errors
    return parse


def _short(enum: Any, value: int, prefix: str) -> str:
    """An enum value's name without its prefix (``ASSET_GOV`` -> ``GOV``)."""
    name: str = enum.Name(value)
    return name.removeprefix(prefix)


def _when(ts: Any) -> str:
    """A Timestamp as UTC ``YYYY-MM-DD HH:MM:SS`` (``-`` when unset)."""
    if not ts.seconds and not ts.nanos:
        return "-"
    return str(ts.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"))


def _more(token: str) -> None:
    if token:
        console.print(esc(f"next page: --page-token {token}"), style="dim", soft_wrap=True)


E = economy_pb2


def history_line(tx: economy_pb2.Transaction, account_id: str) -> str:
    """One transaction as the account saw it: what it posted to the account, per asset
    (``+300 CREDIT +50 GOV``), then the first movement's accounts, the id and the memo."""
    net: dict[int, int] = {}
    for p in tx.postings:
        if p.account_id == account_id:
            net[p.asset] = net.get(p.asset, 0) + p.amount
    change = " ".join(
        f"{amount:+} {_short(E.Asset, asset, 'ASSET_')}" for asset, amount in sorted(net.items())
    )
    kind = _short(E.TransactionKind, tx.kind, "TRANSACTION_KIND_")
    memo = f"  {tx.memo}" if tx.memo else ""
    return (
        f"{_when(tx.create_time)}  {kind:<19} {change or '-':<22} "
        f"{tx.from_account_id or '-'} -> {tx.to_account_id or '-'}  {tx.transaction_id}{memo}"
    )


async def _account(args: argparse.Namespace) -> int:
    from meshwright._console import to_json

    pool = _pool(args, args.credentials)
    try:
        eco = _client(pool, args.target, economy_pb2, "EconomyService")
        command = args.acct_command
        if command == "create":
            owner = args.owner
            minting = args.balance or args.gov
            if owner is None and minting and args.credentials.source.endswith("admin.token"):
                # Minted by the dev admin for the dev client: the account is the user's.
                owner = _dev_client_principal()
            reply = await eco.call(
                "CreateAccount",
                E.CreateAccountRequest(
                    account_id=args.id,
                    initial_balance=args.balance,
                    initial_gov_balance=args.gov,
                    display_name=args.name,
                    owner=owner or "",
                ),
            )
            console.print(to_json(reply.account))
        elif command in ("get", "show"):
            reply = await eco.call("GetAccount", E.GetAccountRequest(account_id=args.id))
            console.print(to_json(reply.account))
        elif command == "list":
            page = await eco.call(
                "ListAccounts",
                E.ListAccountsRequest(
                    owner=args.owner,
                    kind=args.kind,
                    page_size=args.limit,
                    page_token=args.page_token,
                ),
            )
            for a in page.accounts:
                kind = _short(E.AccountKind, a.kind, "ACCOUNT_KIND_")
                console.print(
                    esc(
                        f"{a.account_id}  {kind:<12} CREDIT {a.balance}  GOV {a.gov_balance}"
                        f"  staked {a.staked}  escrowed {a.escrowed}  {a.owner or '-'}"
                    ),
                    soft_wrap=True,
                )
            _more(page.next_page_token)
        elif command == "mint":
            reply = await eco.call(
                "Mint",
                E.MintRequest(
                    account_id=args.id,
                    asset=args.asset,
                    amount=args.amount,
                    memo=args.memo,
                    request_id=args.request_id,
                ),
            )
            console.print(to_json(reply))
        elif command == "transfer":
            reply = await eco.call(
                "Transfer",
                E.TransferRequest(
                    from_account_id=args.source,
                    to_account_id=args.destination,
                    amount=args.amount,
                    asset=args.asset,
                    memo=args.memo,
                    request_id=args.request_id,
                ),
            )
            console.print(to_json(reply))
        elif command == "history":
            page = await eco.call(
                "ListTransactions",
                E.ListTransactionsRequest(
                    account_id=args.id,
                    asset=args.asset,
                    kind=args.kind,
                    page_size=args.limit,
                    page_token=args.page_token,
                ),
            )
            for tx in page.transactions:
                console.print(esc(history_line(tx, args.id)), soft_wrap=True)
            _more(page.next_page_token)
        else:
            return 2
        return 0
    finally:
        await pool.close()


async def _escrow(args: argparse.Namespace) -> int:
    from meshwright._console import to_json

    pool = _pool(args, args.credentials)
    try:
        eco = _client(pool, args.target, economy_pb2, "EconomyService")
        if args.escrow_command == "show":
            reply = await eco.call("GetEscrow", E.GetEscrowRequest(escrow_id=args.id))
            console.print(to_json(reply.escrow))
            return 0
        page = await eco.call(
            "ListEscrows",
            E.ListEscrowsRequest(
                owner=args.owner, state=args.state, page_size=args.limit, page_token=args.page_token
            ),
        )
        for e in page.escrows:
            state = _short(E.EscrowState, e.state, "ESCROW_STATE_")
            until = _when(e.expire_time) if e.state == E.ESCROW_STATE_OPEN else _when(e.close_time)
            console.print(
                esc(
                    f"{e.escrow_id}  {state:<8} {e.payer_account_id}  amount {e.amount}  "
                    f"captured {e.captured}  released {e.released}  "
                    f"{'expires' if e.state == E.ESCROW_STATE_OPEN else 'closed'} {until}"
                    f"  {e.reference}"
                ),
                soft_wrap=True,
            )
        _more(page.next_page_token)
        return 0
    finally:
        await pool.close()


async def _proposal(args: argparse.Namespace) -> int:
    from meshwright._console import to_json

    pool = _pool(args, args.credentials)
    try:
        eco = _client(pool, args.target, economy_pb2, "EconomyService")
        if args.proposal_command == "show":
            reply = await eco.call("GetProposal", E.GetProposalRequest(proposal_id=args.id))
            console.print(to_json(reply.proposal))
            return 0
        page = await eco.call(
            "ListProposals",
            E.ListProposalsRequest(
                state=args.state, page_size=args.limit, page_token=args.page_token
            ),
        )
        for pr in page.proposals:
            state = _short(E.ProposalState, pr.state, "PROPOSAL_STATE_")
            change = pr.change.WhichOneof("change") if pr.HasField("change") else None
            console.print(
                esc(
                    f"{pr.proposal_id}  {state:<8} yes {pr.yes_weight}  no {pr.no_weight}  "
                    f"abstain {pr.abstain_weight}  ends {_when(pr.voting_end_time)}  "
                    f"{pr.title}" + (f"  [change: {change}]" if change else "")
                ),
                soft_wrap=True,
            )
        _more(page.next_page_token)
        return 0
    finally:
        await pool.close()


def audit_lines(report: economy_pb2.AuditLedgerResponse) -> list[str]:
    """An audit report as plain lines: the verdict, each asset's supply, what is amiss."""
    verdict = "OK" if report.ok else "MISMATCHED"
    lines = [
        f"ledger {verdict}: {report.transaction_count} transactions, "
        f"{report.account_count} accounts"
    ]
    for s in report.supplies:
        asset = _short(E.Asset, s.asset, "ASSET_")
        lines.append(f"  {asset:<6} issued {s.issued}  held {s.held}")
    for m in report.mismatches:
        asset = _short(E.Asset, m.asset, "ASSET_")
        lines.append(f"  mismatch {m.account_id} {asset}: stored {m.stored}, replayed {m.replayed}")
    for tx_id in report.unbalanced_transaction_ids:
        lines.append(f"  unbalanced transaction {tx_id}")
    for m in report.negative_balances:
        asset = _short(E.Asset, m.asset, "ASSET_")
        lines.append(f"  negative {m.account_id} {asset}: {m.stored}")
    return lines


async def _ledger(args: argparse.Namespace) -> int:
    from meshwright._console import to_json

    pool = _pool(args, args.credentials)
    try:
        eco = _client(pool, args.target, economy_pb2, "EconomyService")
        if args.ledger_command == "params":
            reply = await eco.call("GetParameters", E.GetParametersRequest())
            console.print(to_json(reply.parameters))
            return 0
        report = await eco.call("AuditLedger", E.AuditLedgerRequest())
        if args.json:
            console.print(to_json(report))
        else:
            for line in audit_lines(report):
                console.print(esc(line), soft_wrap=True)
        return 0 if report.ok else 1
    finally:
        await pool.close()


# -- parsing -------------------------------------------------------------------------


def _security_flags(sp: argparse.ArgumentParser, *, serve: bool) -> None:
    """Auth, TLS and limit flags of ``up``/``serve``; unset flags leave it to the env."""
    sp.add_argument(
        "--insecure-no-auth",
        action="store_true",
        default=None,
        help="turn authentication off: every caller is an admin (logged at start) "
        "(env MESHWRIGHT_INSECURE_NO_AUTH=1)",
    )
    if serve:
        sp.add_argument(
            "--auth-public-key",
            default=None,
            metavar="FILE",
            help="PEM public key (EC: ES256, RSA: RS256) that verifies bearer tokens "
            "(env MESHWRIGHT_AUTH_PUBLIC_KEY)",
        )
        sp.add_argument(
            "--auth-private-key",
            default=None,
            metavar="FILE",
            help="PEM private key: this process mints its own service token with it "
            "(env MESHWRIGHT_AUTH_PRIVATE_KEY)",
        )
        sp.add_argument(
            "--token",
            default=None,
            help="service token this process calls the other services with (env MESHWRIGHT_TOKEN, "
            "or a file holding it: MESHWRIGHT_TOKEN_FILE)",
        )
    add_tls_flags(sp, default=lambda _: None)  # unset: MeshConfig reads the env
    sp.add_argument(
        "--rate-limit-rps",
        type=float,
        default=None,
        help="calls per second per principal, 0 turns it off; services are exempt "
        "(env MESHWRIGHT_RATE_LIMIT_RPS, default 500)",
    )
    sp.add_argument(
        "--cors-origins",
        default=None,
        help="comma-separated browser origins the gateway allows; CORS is off when empty "
        "(env MESHWRIGHT_CORS_ORIGINS)",
    )


def _client_flags(sp: argparse.ArgumentParser, *, leaf: bool) -> None:
    """Flags of every client command; on a leaf parser they are optional overrides of the
    group's (so ``workflow --target X run`` and ``workflow run --target X`` both work)."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if leaf else value

    sp.add_argument(
        "--target",
        default=default(env_default("target", "127.0.0.1:50051")),
        help="gRPC address of the mesh, or several replicas a:1,b:2 (env MESHWRIGHT_TARGET)",
    )
    sp.add_argument(
        "--token",
        default=default(None),
        help="bearer token to call with (env MESHWRIGHT_TOKEN or MESHWRIGHT_TOKEN_FILE); by "
        "default the development token file of `meshwright up`",
    )
    sp.add_argument(
        "--as",
        dest="as_role",
        choices=TOKEN_ROLES,
        default=default(None),
        help="call with that development token file (admin.token or client.token in "
        "$MESHWRIGHT_CONFIG_DIR or ~/.config/meshwright); default: admin for what only "
        "admins may do (account create --balance/--gov, account mint, ledger audit), client "
        "otherwise",
    )
    add_tls_flags(sp, default=lambda name: default(env_default(name, "")))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (flags default to their MESHWRIGHT_* variables)."""
    p = argparse.ArgumentParser(prog="meshwright", description=__doc__.split("\n")[0])
    p.add_argument(
        "--log-level",
        default=env_default("log_level", "WARNING"),
        help="DEBUG, INFO (with an access line per call), WARNING... (env MESHWRIGHT_LOG_LEVEL)",
    )
    p.add_argument(
        "--log-format",
        choices=("human", "json"),
        default=env_default("log_format", "human"),
        help="human-readable lines, or one JSON object a line; both carry the trace and span "
        "ids of the call they were logged in (env MESHWRIGHT_LOG_FORMAT)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    def server_flags(sp: argparse.ArgumentParser) -> None:
        sp.add_argument(
            "--host",
            default=env_default("host", "127.0.0.1"),
            help="interface to bind (env MESHWRIGHT_HOST)",
        )
        sp.add_argument(
            "--grpc-port",
            type=int,
            default=int(env_default("grpc_port", 50051)),
            help="gRPC port, 0 picks one (env MESHWRIGHT_GRPC_PORT)",
        )
        sp.add_argument(
            "--http-port",
            type=int,
            default=int(env_default("http_port", 8080)),
            help="REST gateway port, 0 picks one (env MESHWRIGHT_HTTP_PORT)",
        )
        sp.add_argument("--no-gateway", action="store_true", help="do not start the REST gateway")
        sp.add_argument(
            "--store",
            default=env_default("store_url", "memory://"),
            metavar="URL",
            help="workflow store and economy ledger: memory:// (in-process) or "
            "redis://host:6379/0, shared by replicas and kept across restarts "
            "(env MESHWRIGHT_STORE_URL)",
        )
        sp.add_argument(
            "--registry",
            default=None,
            metavar="URL",
            help="registry backend: memory:// (in-process) or consul://host:8500 (Consul's "
            "agent API: Consul health-checks agents, every registry replica serves the same "
            "view, and services find each other there) (env MESHWRIGHT_REGISTRY_URL)",
        )
        sp.add_argument(
            "--health-check-interval",
            type=parse_duration_or_zero,
            default=None,
            metavar="DURATION",
            help="probe each agent's grpc.health.v1 endpoint this often; 0 for leases only "
            "(env MESHWRIGHT_HEALTH_CHECK_INTERVAL_S; 5s)",
        )
        sp.add_argument(
            "--stopped-retention",
            type=parse_duration_or_zero,
            default=None,
            metavar="DURATION",
            help="keep a deregistered agent visible as STOPPED this long; 0 removes it at once "
            "(env MESHWRIGHT_STOPPED_RETENTION_S; 60s)",
        )
        sp.add_argument(
            "--deregister-after",
            type=parse_duration,
            default=None,
            metavar="DURATION",
            help="remove an agent whose lease lapsed (or whose checks stay critical) after "
            "this long; Consul's minimum is 1m (env MESHWRIGHT_DEREGISTER_AFTER_S; 5m)",
        )
        sp.add_argument(
            "--economy-params",
            default=None,
            metavar="FILE",
            help="JSON file of the economy's starting parameters, e.g. "
            '{"transfer_fee_bps": 25, "escrow_ttl_s": 600}; read only while the ledger is '
            "empty, governance changes them afterwards (env MESHWRIGHT_ECONOMY_PARAMS)",
        )
        sp.add_argument(
            "--workflow-retention",
            type=parse_duration,
            default=None,
            metavar="DURATION",
            help="keep finished workflows this long, e.g. 7d (env "
            "MESHWRIGHT_WORKFLOW_RETENTION_S, seconds; default 7d)",
        )
        sp.add_argument(
            "--workflow-lease-ttl",
            type=parse_duration,
            default=None,
            metavar="DURATION",
            help="a replica's lease on each workflow it runs; another replica takes a run "
            "over this long after its owner died (env MESHWRIGHT_WORKFLOW_LEASE_TTL_S; 10s)",
        )
        sp.add_argument(
            "--metrics-port",
            type=int,
            default=env_default("metrics_port", None),
            metavar="PORT",
            help="serve Prometheus metrics at http://HOST:PORT/metrics (0 picks a port); the "
            "gateway serves them at /metrics too (env MESHWRIGHT_METRICS_PORT)",
        )
        sp.add_argument(
            "--trace-buffer",
            type=int,
            default=env_default("trace_buffer", None),
            metavar="TRACES",
            help="keep the spans of this many recent traces in memory, for `meshwright "
            "workflow trace` and GET /v1/workflows/{id}/trace; 0 keeps none (env "
            "MESHWRIGHT_TRACE_BUFFER; 1000 for up, 0 for serve). Exporting is configured by "
            "the standard OTEL_* variables (OTEL_TRACES_EXPORTER, OTEL_EXPORTER_OTLP_ENDPOINT)",
        )
        sp.add_argument(
            "--idempotency-ttl",
            type=parse_duration,
            default=None,
            metavar="DURATION",
            help="how long the economy remembers a request id: a retry within it replays the "
            "first result (env MESHWRIGHT_IDEMPOTENCY_TTL_S; 24h)",
        )

    up = sub.add_parser(
        "up",
        help="run the whole mesh here, with sample agents",
        description="Run every service, the gateway and sample agents here. Auth is on: the "
        "first run writes a development key pair and admin/client tokens (mode 0600) to "
        "$MESHWRIGHT_CONFIG_DIR or ~/.config/meshwright.",
    )
    server_flags(up)
    _security_flags(up, serve=False)
    up.add_argument(
        "--agents",
        type=int,
        default=int(env_default("agents", 2)),
        help="sample agent processes to start (0 for none)",
    )
    up.add_argument(
        "--agents-dir",
        default=env_default("agents_dir", ""),
        metavar="DIR",
        help="also run every agent package in DIR (a subdirectory with an agent.toml) under "
        "the agent manager (env MESHWRIGHT_AGENTS_DIR)",
    )
    up.add_argument("--demo", action="store_true", help="run the demo workflow and show it live")
    up.add_argument("--exit-after-demo", action="store_true", help="stop once the demo ends")
    up.add_argument("--agent-logs", action="store_true", help="echo agent process output")

    serve = sub.add_parser("serve", help="run chosen services (distributed mode)")
    server_flags(serve)
    _security_flags(serve, serve=True)
    serve.add_argument(
        "--services",
        default=env_default("services", ",".join(("registry", "economy", "workflow"))),
        help="comma-separated: registry, economy, workflow, gateway (env MESHWRIGHT_SERVICES; "
        "registry,economy,workflow). The gateway runs beside the services unless "
        "--no-gateway; `--services gateway` runs the REST gateway alone, in front of services "
        "found in Consul (a consul:// --registry) or at the --*-target addresses",
    )
    serve.add_argument(
        "--registry-target",
        default=env_default("registry_target", None),
        help="registry address when not served here (env MESHWRIGHT_REGISTRY_TARGET)",
    )
    serve.add_argument(
        "--workflow-target",
        default=env_default("workflow_target", None),
        help="workflow service address a gateway alone fronts, when not found in Consul "
        "(env MESHWRIGHT_WORKFLOW_TARGET)",
    )
    serve.add_argument(
        "--economy-target",
        default=env_default("economy_target", None),
        help="economy address when not served here (env MESHWRIGHT_ECONOMY_TARGET)",
    )

    tok = sub.add_parser("token", help="mint bearer tokens")
    tsub = tok.add_subparsers(dest="token_command", required=True)
    tcreate = tsub.add_parser(
        "create",
        help="print a signed token",
        description="Print a token signed with the development key of `meshwright up` "
        "(or --private-key).",
    )
    tcreate.add_argument("--role", required=True, choices=[r.value for r in Role])
    tcreate.add_argument(
        "--subject", required=True, help="who: a user name, a service name, an agent id"
    )
    tcreate.add_argument(
        "--ttl", type=parse_duration, default=3600.0, help="lifetime: 90s, 30m, 1h, 7d (1h)"
    )
    tcreate.add_argument(
        "--private-key",
        default=env_default("auth_private_key", None),
        metavar="FILE",
        help="PEM signing key (env MESHWRIGHT_AUTH_PRIVATE_KEY); the development key in "
        "$MESHWRIGHT_CONFIG_DIR or ~/.config/meshwright by default",
    )

    keys = sub.add_parser("keys", help="signing keys and tokens for a deployment")
    ksub = keys.add_subparsers(dest="keys_command", required=True)
    kinit = ksub.add_parser(
        "init",
        help="write a signing key pair and the tokens of a deployment's processes",
        description="Write DIR/signing-key.pem (the private key: keep it with whoever "
        "mints tokens), DIR/signing-key.pub.pem (every process verifies with it), "
        "DIR/admin.token, DIR/client.token, DIR/service.token (the mesh's services call "
        "each other with it) and DIR/agent-ID.token for each --agent (its subject is the "
        "agent id the agent must register as). Files are mode 0600. An existing key is "
        "kept, and so is every token that still verifies with it for at least a day: "
        "running it again adds what is missing.",
    )
    kinit.add_argument("--dir", required=True, help="where to write the keys and tokens")
    kinit.add_argument(
        "--agent",
        action="append",
        default=[],
        metavar="ID",
        help="mint an agent token for this agent id (repeatable)",
    )
    kinit.add_argument("--service", default="mesh", help="subject of service.token (mesh)")
    kinit.add_argument("--client", default="dev", help="subject of client.token (dev)")
    kinit.add_argument(
        "--ttl",
        type=parse_duration,
        default=90 * 86_400.0,
        help="lifetime of the tokens it mints: 30d, 365d... (90d)",
    )

    cl = sub.add_parser("cluster", help="the distributed mesh as processes on this machine")
    clsub = cl.add_subparsers(dest="cluster_command", required=True)
    cup = clsub.add_parser(
        "up",
        help="run registry, economy and workflow replicas, the gateway and agents here",
        description="Run what deploy/ deploys, as local processes: a redis-server (AOF, "
        "fsync always; or --store), --replicas registry, economy and workflow processes "
        "sharing it and one Consul, the REST gateway alone in front of them, and --agents "
        "agent processes. Services find each other through Consul, agents reach both "
        "registry replicas; auth is on (keys and tokens in DIR/keys). A process that dies "
        "is restarted on its port. Ctrl-C stops everything, agents first.",
    )
    cup.add_argument(
        "--registry",
        default=env_default("registry_url", None),
        metavar="URL",
        help="the Consul every replica shares: consul://host:8500 (env MESHWRIGHT_REGISTRY_URL)",
    )
    cup.add_argument(
        "--store",
        default=None,
        metavar="URL",
        help="a Redis to share (redis://host:6379/0); by default the cluster runs its own "
        "redis-server with its data in DIR/redis",
    )
    cup.add_argument(
        "--dir",
        default=str(_cluster_dir()),
        help="keys, tokens, Redis data, logs and cluster.json (the processes, their pids "
        "and addresses); ~/.local/state/meshwright/cluster by default",
    )
    cup.add_argument("--replicas", type=int, default=2, help="replicas of each service (2)")
    cup.add_argument(
        "--agents", type=int, default=4, help="agent processes: analysts and one sysinfo (4)"
    )
    cup.add_argument("--host", default="127.0.0.1", help="interface every process binds")
    cup.add_argument("--http-port", type=int, default=8080, help="the gateway's port, 0 picks one")
    cup.add_argument("--demo", action="store_true", help="run the demo workflow on the cluster")
    cup.add_argument("--exit-after-demo", action="store_true", help="stop once the demo ends")

    wf = sub.add_parser("workflow", help="create, follow and inspect workflows")
    _client_flags(wf, leaf=False)
    wsub = wf.add_subparsers(dest="wf_command", required=True)
    run = wsub.add_parser("run", help="create a workflow from a JSON definition")
    run.add_argument(
        "file", help="WorkflowDefinition JSON file, '-' for stdin, 'demo' for the demo"
    )
    run.add_argument("--follow", "-f", action="store_true", help="stream progress until it ends")
    run.add_argument("--id", default=None, help="workflow id (generated when omitted)")
    run.add_argument("--budget", type=int, default=None, help="override the budget")
    run.add_argument("--payer", default=None, help="override the payer account")
    run.add_argument("--request-id", default="", help="idempotency key")
    get = wsub.add_parser("get", help="show a workflow")
    get.add_argument("id")
    get.add_argument("--json", action="store_true")
    ls = wsub.add_parser("list", help="list workflows, newest first")
    ls.add_argument("--limit", type=int, default=20)
    watch = wsub.add_parser("watch", help="stream a workflow's events")
    watch.add_argument("id")
    watch.add_argument("--after", type=int, default=0, help="resume after this sequence")
    cancel = wsub.add_parser("cancel", help="cancel a workflow")
    cancel.add_argument("id")
    cancel.add_argument("--reason", default="cancelled from the CLI")
    trace = wsub.add_parser(
        "trace",
        help="draw a run's trace: tasks, agents, retries, payments, durations",
        description="Draw the waterfall of a workflow's trace from the spans the workflow "
        "service keeps in memory (meshwright up keeps the recent ones; a server with "
        "--trace-buffer 0 names the trace id to look up in your tracing backend).",
    )
    trace.add_argument("id")
    trace.add_argument("--json", action="store_true", help="the spans as JSON")
    for leaf in (run, get, ls, watch, cancel, trace):
        _client_flags(leaf, leaf=True)

    ag = sub.add_parser(
        "agents",
        help="list registered agents; start, stop, scale... managed ones",
        description="Without a subcommand: the agents the registry knows. The subcommands "
        "call the agent manager of the mesh at --target (as the admin by default).",
    )
    _client_flags(ag, leaf=False)
    ag.add_argument("--skill", default="")
    ag.add_argument(
        "--state",
        type=_enum_arg(registry_pb2.AgentState, "AGENT_STATE_"),
        default=registry_pb2.AGENT_STATE_UNSPECIFIED,
        help="only agents in this state: active (running), starting, draining, inactive, "
        "error, stopped",
    )
    from meshwright._agents_cli import add_manager_commands

    add_manager_commands(
        ag.add_subparsers(dest="agents_command", metavar="COMMAND"),
        lambda leaf: _client_flags(leaf, leaf=True),
    )

    asset = _enum_arg(economy_pb2.Asset, "ASSET_")
    tx_kind = _enum_arg(economy_pb2.TransactionKind, "TRANSACTION_KIND_")

    def paging(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--limit", type=int, default=100, help="most rows (page size, 100)")
        sp.add_argument("--page-token", default="", help="the next page, as the last one said")

    acct = sub.add_parser("account", help="economy accounts: create, show, mint, transfer")
    _client_flags(acct, leaf=False)
    asub = acct.add_subparsers(dest="acct_command", required=True)
    create = asub.add_parser(
        "create", help="open an account (--balance and --gov mint: admin only)"
    )
    create.add_argument("id")
    create.add_argument("--balance", type=int, default=0, help="CREDIT to mint into it")
    create.add_argument("--gov", type=int, default=0, help="GOV to mint into it (for staking)")
    create.add_argument("--name", default="")
    create.add_argument(
        "--owner",
        default=None,
        help="principal that owns the account, e.g. client:dev (admins and services only); "
        "default: the caller, except that an account minted with the development admin "
        "token belongs to the development client",
    )
    show = asub.add_parser("get", aliases=["show"], help="show an account's balances")
    show.add_argument("id")
    alist = asub.add_parser("list", help="list accounts (yours; admins: everyone's)")
    alist.add_argument("--owner", default="", help="only this principal's, e.g. client:dev")
    alist.add_argument(
        "--kind", type=_enum_arg(economy_pb2.AccountKind, "ACCOUNT_KIND_"), default=0
    )
    paging(alist)
    mint = asub.add_parser("mint", help="mint money into an account (admin only)")
    mint.add_argument("id")
    mint.add_argument("amount", type=int)
    mint.add_argument("--asset", type=asset, default=economy_pb2.ASSET_CREDIT, help="credit|gov")
    mint.add_argument("--memo", default="")
    mint.add_argument("--request-id", default="", help="idempotency key")
    transfer = asub.add_parser("transfer", help="move money from your account to another")
    transfer.add_argument("source", metavar="from")
    transfer.add_argument("destination", metavar="to")
    transfer.add_argument("amount", type=int)
    transfer.add_argument(
        "--asset", type=asset, default=economy_pb2.ASSET_CREDIT, help="credit|gov"
    )
    transfer.add_argument("--memo", default="")
    transfer.add_argument("--request-id", default="", help="idempotency key")
    history = asub.add_parser("history", help="an account's transactions, newest first")
    history.add_argument("id")
    history.add_argument("--asset", type=asset, default=0, help="only credit or gov")
    history.add_argument("--kind", type=tx_kind, default=0, help="only one kind, e.g. transfer")
    paging(history)
    for leaf in (create, show, alist, mint, transfer, history):
        _client_flags(leaf, leaf=True)

    esc_p = sub.add_parser("escrow", help="workflow budgets held in escrow")
    _client_flags(esc_p, leaf=False)
    esub = esc_p.add_subparsers(dest="escrow_command", required=True)
    elist = esub.add_parser("list", help="list escrows, newest first (yours; admins: all)")
    elist.add_argument("--owner", default="", help="only those paid by this principal")
    elist.add_argument(
        "--state", type=_enum_arg(economy_pb2.EscrowState, "ESCROW_STATE_"), default=0
    )
    paging(elist)
    eshow = esub.add_parser("show", help="show an escrow")
    eshow.add_argument("id")
    for leaf in (elist, eshow):
        _client_flags(leaf, leaf=True)

    prop = sub.add_parser("proposal", help="governance proposals")
    _client_flags(prop, leaf=False)
    psub = prop.add_subparsers(dest="proposal_command", required=True)
    plist = psub.add_parser("list", help="list proposals, newest first")
    plist.add_argument(
        "--state", type=_enum_arg(economy_pb2.ProposalState, "PROPOSAL_STATE_"), default=0
    )
    paging(plist)
    pshow = psub.add_parser("show", help="show a proposal and its tally")
    pshow.add_argument("id")
    for leaf in (plist, pshow):
        _client_flags(leaf, leaf=True)

    ledger = sub.add_parser("ledger", help="the ledger as a whole: audit, parameters")
    _client_flags(ledger, leaf=False)
    lsub = ledger.add_subparsers(dest="ledger_command", required=True)
    audit = lsub.add_parser(
        "audit",
        help="replay every posting against the balances (admin only); exit 1 on a mismatch",
    )
    audit.add_argument("--json", action="store_true", help="print the report as JSON")
    params = lsub.add_parser("params", help="the economy's parameters")
    for leaf in (audit, params):
        _client_flags(leaf, leaf=True)

    agent = sub.add_parser("agent", help="run an agent process (see `meshwright agent run -h`)")
    agent.add_argument("rest", nargs=argparse.REMAINDER)
    return p


CLIENT_COMMANDS = ("workflow", "agents", "account", "escrow", "proposal", "ledger")
"""Commands that call a running mesh (and so need credentials)."""


def _admin_only(args: argparse.Namespace) -> bool:
    """Whether the command does what only admins may (it calls with admin.token by default)."""
    if args.command == "account":
        if args.acct_command == "create":
            return bool(args.balance or args.gov)
        return bool(args.acct_command == "mint")
    if args.command == "agents":  # the manager starts processes: admins only
        return bool(getattr(args, "agents_command", None))
    return bool(args.command == "ledger" and args.ledger_command == "audit")


def _caller(creds: Credentials) -> str:
    """``role:subject`` of a token, read without verifying it (for messages only)."""
    import jwt

    if not creds.token:
        return "nobody (no token)"
    try:
        claims = jwt.decode(creds.token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        return "an unreadable token"
    return f"{claims.get('role', '?')}:{claims.get('sub', '?')}"


def _auth_error(err: MeshError, creds: Credentials | None) -> str:
    """One line for UNAUTHENTICATED / PERMISSION_DENIED, with what to do about it."""
    code = "UNAUTHENTICATED" if isinstance(err, Unauthenticated) else "PERMISSION_DENIED"
    line = f"{code} ({err.reason}): {err.message}"
    if creds is None:
        return line
    if isinstance(err, Unauthenticated):
        if creds.token is None:
            return (
                f"{line}; no token was sent: pass --token or set MESHWRIGHT_TOKEN, or run "
                f"`meshwright up` once to create {creds.source}"
            )
        return (
            f"{line}; the token from {creds.source} was refused (expired, or signed by "
            "another key): mint one with `meshwright token create`"
        )
    hint = "" if _caller(creds).startswith("admin:") else "; --as admin calls as the admin"
    return f"{line} (calling as {_caller(creds)}, token from {creds.source}{hint})"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``meshwright`` console script."""
    from meshwright.agent.supervisor import AgentStartError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["agent"]:
        from meshwright.agent.cli import main as agent_main

        return agent_main(argv[1:])
    try:
        parser = build_parser()  # defaults come from the environment (secrets from files)
    except ValueError as err:
        err_console.print(f"[red]error[/red] {esc(str(err))}", soft_wrap=True)
        return 2
    args = parser.parse_args(argv)
    try:
        configure_logging(args.log_level, json=args.log_format == "json", service="meshwright")
    except ValueError as err:
        err_console.print(f"[red]error[/red] {esc(str(err))}", soft_wrap=True)
        return 2
    handlers = {
        "up": _up,
        "serve": _serve,
        "cluster": _cluster,
        "workflow": _workflow,
        "agents": _agents,
        "account": _account,
        "escrow": _escrow,
        "proposal": _proposal,
        "ledger": _ledger,
    }
    creds: Credentials | None = None
    try:
        if args.command == "token":
            return _token(args)
        if args.command == "keys":
            return _keys(args)
        if args.command in CLIENT_COMMANDS:
            creds = args.credentials = client_credentials(args, admin=_admin_only(args))
        return asyncio.run(handlers[args.command](args))
    except (Unauthenticated, PermissionDenied) as err:
        err_console.print(f"[red]error[/red] {esc(_auth_error(err, creds))}", soft_wrap=True)
        return 1
    except MeshError as err:
        err_console.print(f"[red]error[/red] {esc(err.reason)}: {esc(err.message)}")
        for v in err.violations:
            err_console.print(esc(f"  {v.field}: {v.description}"))
        return 1
    except KeyboardInterrupt:
        return 130
    except ValueError as err:  # bad settings: a backend URL, a malformed variable, a key
        err_console.print(f"[red]error[/red] {esc(str(err))}", soft_wrap=True)
        return 2
    except (AgentStartError, TimeoutError) as err:  # `up`: a sample agent did not come up
        err_console.print(f"[red]error[/red] {esc(str(err) or type(err).__name__)}")
        return 1
    except OSError as err:
        err_console.print(f"[red]error[/red] {esc(str(err))}", soft_wrap=True)
        return 1

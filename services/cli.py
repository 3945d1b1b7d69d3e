"""The ``meshwright`` command line.

``up`` runs the whole mesh on this machine; ``serve`` runs chosen services
(distributed mode); the other commands are clients of a running mesh.
Every flag has a ``MESHWRIGHT_*`` environment variable.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from rich.console import Console
from rich.markup import escape as esc

from meshwright.economy.v1 import economy_pb2
from meshwright.mesh.client import ChannelPool, ServiceClient
from meshwright.mesh.config import MeshConfig, env_default
from meshwright.mesh.errors import MeshError
from meshwright.mesh.server import install_signal_handlers
from meshwright.registry.v1 import registry_pb2
from meshwright.workflow.v1 import workflow_pb2

W = workflow_pb2
SAMPLE_AGENTS = (
    "meshwright.agent.samples:sysinfo_agent",
    "meshwright.agent.samples:analyst_agent",
)

console = Console(highlight=False)
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


async def _up(args: argparse.Namespace) -> int:
    from meshwright._demo import run_demo, wait_for_agents
    from meshwright.agent.supervisor import AgentSupervisor
    from meshwright.node import start_node

    config = MeshConfig.from_env(host=args.host, grpc_port=args.grpc_port, http_port=args.http_port)
    node = await start_node(config, gateway=not args.no_gateway)
    stop = asyncio.Event()
    install_signal_handlers(stop.set)
    try:
        console.print(
            f"[bold]meshwright[/bold] gRPC  {node.grpc_address}  "
            f"(registry, economy, workflow, agent router, health, reflection)"
        )
        if node.http_url:
            console.print(f"[bold]meshwright[/bold] REST  {node.http_url}  (gateway, /v1/routes)")
        specs = [] if args.agents == 0 else [SAMPLE_AGENTS[i % 2] for i in range(args.agents)]
        async with AgentSupervisor(registry=node.grpc_address, echo=args.agent_logs) as sup:
            for spec in specs:
                await sup.start(spec)
            if specs:
                agents = await wait_for_agents(node.clients["registry"], len(specs))
                for a in agents:
                    skills = ", ".join(f"{s.id} ({s.price})" for s in a.card.skills)
                    console.print(
                        f"  agent [bold]{esc(a.agent_id)}[/bold] at {a.endpoint}: {esc(skills)}"
                    )
            if args.demo:
                ok = await run_demo(node.clients, console)
                if args.exit_after_demo:
                    return 0 if ok else 1
            console.print("[dim]ready; Ctrl-C stops the mesh[/dim]")
            await stop.wait()
            console.print("stopping...")
            if node.engine is not None:
                # Workflows first (cancelled, refunded, their tasks cancelled on
                # the agents), so none waits for agents that are going away.
                await node.engine.stop()
    finally:
        await node.stop()
    return 0


async def _serve(args: argparse.Namespace) -> int:
    from meshwright.node import start_node

    config = MeshConfig.from_env(host=args.host, grpc_port=args.grpc_port, http_port=args.http_port)
    services = [s.strip() for s in args.services.split(",") if s.strip()]
    node = await start_node(
        config,
        services=services,
        registry_target=args.registry_target,
        economy_target=args.economy_target,
        gateway=not args.no_gateway,
    )
    stop = asyncio.Event()
    install_signal_handlers(stop.set)
    console.print(f"serving {', '.join(services)} on {node.grpc_address}")
    if node.http_url:
        console.print(f"gateway on {node.http_url}")
    try:
        await stop.wait()
    finally:
        await node.stop()
    return 0


# -- client commands --------------------------------------------------------------


def _client(pool: ChannelPool, target: str, module: Any, name: str) -> ServiceClient:
    return pool.client(target, module.DESCRIPTOR.services_by_name[name])


async def _workflow(args: argparse.Namespace) -> int:
    from meshwright._console import follow, to_json, workflow_table

    pool = ChannelPool()
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
    pool = ChannelPool()
    try:
        reg = _client(pool, args.target, registry_pb2, "RegistryService")
        page = await reg.call(
            "ListAgents", registry_pb2.ListAgentsRequest(skill=args.skill, page_size=1000)
        )
        for a in page.agents:
            state = registry_pb2.AgentState.Name(a.state).removeprefix("AGENT_STATE_")
            skills = ", ".join(s.id for s in a.card.skills)
            console.print(esc(f"{a.agent_id}  {state:<8} {a.endpoint}  load {a.load}  [{skills}]"))
        return 0
    finally:
        await pool.close()


async def _account(args: argparse.Namespace) -> int:
    from meshwright._console import to_json

    pool = ChannelPool()
    try:
        eco = _client(pool, args.target, economy_pb2, "EconomyService")
        if args.acct_command == "create":
            reply = await eco.call(
                "CreateAccount",
                economy_pb2.CreateAccountRequest(
                    account_id=args.id, initial_balance=args.balance, display_name=args.name
                ),
            )
        else:
            reply = await eco.call("GetAccount", economy_pb2.GetAccountRequest(account_id=args.id))
        console.print(to_json(reply.account))
        return 0
    finally:
        await pool.close()


# -- parsing -------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (flags default to their MESHWRIGHT_* variables)."""
    p = argparse.ArgumentParser(prog="meshwright", description=__doc__.split("\n")[0])
    p.add_argument("--log-level", default=env_default("log_level", "WARNING"))
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

    up = sub.add_parser("up", help="run the whole mesh here, with sample agents")
    server_flags(up)
    up.add_argument(
        "--agents",
        type=int,
        default=int(env_default("agents", 2)),
        help="sample agent processes to start (0 for none)",
    )
    up.add_argument("--demo", action="store_true", help="run the demo workflow and show it live")
    up.add_argument("--exit-after-demo", action="store_true", help="stop once the demo ends")
    up.add_argument("--agent-logs", action="store_true", help="echo agent process output")

    serve = sub.add_parser("serve", help="run chosen services (distributed mode)")
    server_flags(serve)
    serve.add_argument(
        "--services", default=env_default("services", ",".join(("registry", "economy", "workflow")))
    )
    serve.add_argument(
        "--registry-target",
        default=env_default("registry_target", None),
        help="registry address when not served here (env MESHWRIGHT_REGISTRY_TARGET)",
    )
    serve.add_argument(
        "--economy-target",
        default=env_default("economy_target", None),
        help="economy address when not served here (env MESHWRIGHT_ECONOMY_TARGET)",
    )

    target_default = env_default("target", "127.0.0.1:50051")

    wf = sub.add_parser("workflow", help="create, follow and inspect workflows")
    wf.add_argument(
        "--target", default=target_default, help="gRPC address of the mesh (env MESHWRIGHT_TARGET)"
    )
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

    ag = sub.add_parser("agents", help="list registered agents")
    ag.add_argument("--target", default=target_default)
    ag.add_argument("--skill", default="")

    acct = sub.add_parser("account", help="create or show an economy account")
    acct.add_argument("--target", default=target_default)
    asub = acct.add_subparsers(dest="acct_command", required=True)
    create = asub.add_parser("create")
    create.add_argument("id")
    create.add_argument("--balance", type=int, default=0)
    create.add_argument("--name", default="")
    show = asub.add_parser("get")
    show.add_argument("id")

    agent = sub.add_parser("agent", help="run an agent process (see `meshwright agent run -h`)")
    agent.add_argument("rest", nargs=argparse.REMAINDER)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``meshwright`` console script."""
    from meshwright.agent.supervisor import AgentStartError

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["agent"]:
        from meshwright.agent.cli import main as agent_main

        return agent_main(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    handlers = {
        "up": _up,
        "serve": _serve,
        "workflow": _workflow,
        "agents": _agents,
        "account": _account,
    }
    try:
        return asyncio.run(handlers[args.command](args))
    except MeshError as err:
        err_console.print(f"[red]error[/red] {esc(err.reason)}: {esc(err.message)}")
        for v in err.violations:
            err_console.print(esc(f"  {v.field}: {v.description}"))
        return 1
    except KeyboardInterrupt:
        return 130
    except ValueError as err:  # bad settings: a backend URL, a malformed variable
        err_console.print(f"[red]error[/red] {esc(str(err))}")
        return 2
    except (AgentStartError, TimeoutError) as err:  # `up`: a sample agent did not come up
        err_console.print(f"[red]error[/red] {esc(str(err) or type(err).__name__)}")
        return 1
    except OSError as err:
        err_console.print(f"[red]error[/red] {esc(str(err))}")
        return 1

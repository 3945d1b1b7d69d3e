"""``meshwright agents start|stop|restart|scale|delete|logs|status``: the agent manager's CLI.

Each command is one AgentManagerService call on the mesh at ``--target`` (the node
``meshwright up`` runs), as the admin by default: the manager starts processes.
"""

from __future__ import annotations

import argparse
import shlex
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape as esc
from rich.table import Table

from meshwright.agent.v1 import manager_pb2 as M
from meshwright.mesh.client import ServiceClient

MANAGER_COMMANDS = ("start", "stop", "restart", "scale", "delete", "logs", "status")
"""Subcommands of ``meshwright agents`` that call the agent manager (as the admin)."""

_POLICY = {
    "always": M.RESTART_POLICY_ALWAYS,
    "on-failure": M.RESTART_POLICY_ON_FAILURE,
    "never": M.RESTART_POLICY_NEVER,
}


def _env_pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r}: expected NAME=VALUE")
    return key, value


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def add_manager_commands(sub: Any, client_flags: Any) -> None:
    """The manager's subcommands on ``meshwright agents`` (``client_flags(leaf)`` adds
    --target/--token/--as to each)."""
    start = sub.add_parser(
        "start",
        help="start a managed agent; with --module, --command or --a2a: register it first",
        description="Start NAME's replicas. With a spec (--module, --command or --a2a) the "
        "agent is registered first; the same spec again only starts it.",
    )
    start.add_argument("name")
    what = start.add_mutually_exclusive_group()
    what.add_argument("--module", help="the Agent as package.module:attr")
    what.add_argument(
        "--command",
        dest="command_line",
        help="a command line that prints meshwright's READY line (split like a shell does)",
    )
    what.add_argument("--a2a", metavar="CARD_URL", help="an external A2A agent's card URL")
    start.add_argument("--replicas", type=_non_negative, default=0, help="processes (1)")
    start.add_argument(
        "--restart",
        choices=sorted(_POLICY),
        default=None,
        help="when an exited process starts again (default on-failure)",
    )
    start.add_argument("--env", type=_env_pair, action="append", default=[], metavar="NAME=VALUE")
    start.add_argument("--app-dir", default="", help="directory --module is imported from")
    start.add_argument(
        "--arg", action="append", default=[], help="an extra argument of `meshwright agent run`"
    )
    stop = sub.add_parser("stop", help="stop a managed agent's processes")
    stop.add_argument("name")
    stop.add_argument("--grace", type=float, default=None, help="seconds before SIGKILL")
    restart = sub.add_parser("restart", help="restart a managed agent (or one replica)")
    restart.add_argument("name")
    restart.add_argument("--replica", type=_non_negative, default=None)
    scale = sub.add_parser("scale", help="set a managed agent's replica count")
    scale.add_argument("name")
    scale.add_argument("replicas", type=_non_negative)
    delete = sub.add_parser("delete", help="stop a managed agent and forget it")
    delete.add_argument("name")
    logs = sub.add_parser("logs", help="a managed agent's output (-f follows it)")
    logs.add_argument("name")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    logs.add_argument("--tail", type=_non_negative, default=100, help="last lines (100)")
    logs.add_argument("--replica", type=_non_negative, default=None)
    status = sub.add_parser("status", help="managed agents, or one with its processes")
    status.add_argument("name", nargs="?", default="")
    status.add_argument("--history", action="store_true", help="every state change too")
    status.add_argument("--json", action="store_true", help="the agent(s) as JSON")
    for leaf in (start, stop, restart, scale, delete, logs, status):
        client_flags(leaf)


def spec_from_args(args: argparse.Namespace) -> M.ManagedAgentSpec | None:
    """The spec ``agents start`` flags describe; None when they name none."""
    spec = M.ManagedAgentSpec(
        args=args.arg,
        env=dict(args.env),
        restart_policy=_POLICY[args.restart] if args.restart else M.RESTART_POLICY_UNSPECIFIED,
        replicas=args.replicas,
        app_dir=args.app_dir,
    )
    if args.module:
        spec.module = args.module
    elif args.command_line:
        try:
            argv = shlex.split(args.command_line)
        except ValueError as err:
            raise ValueError(f"--command: {err}") from None
        spec.command.argv.extend(argv)
        if not argv:  # an empty command still selects the oneof: the server says why
            spec.command.SetInParent()
    elif args.a2a:
        spec.a2a_card_url = args.a2a
    else:
        return None
    return spec


async def run_manager_command(
    args: argparse.Namespace, manager: ServiceClient, console: Console
) -> int:
    """Run one manager subcommand; the exit code."""
    cmd = args.agents_command
    if cmd == "start":
        spec = spec_from_args(args)
        if spec is not None:
            reply = await manager.call(
                "CreateManagedAgent",
                M.CreateManagedAgentRequest(name=args.name, spec=spec, start=True),
            )
        else:
            reply = await manager.call(
                "StartManagedAgent", M.StartManagedAgentRequest(name=args.name)
            )
        return _report(console, reply.managed_agent, want=M.PROCESS_STATE_RUNNING)
    if cmd == "stop":
        request = M.StopManagedAgentRequest(name=args.name)
        if args.grace is not None:
            request.grace.FromNanoseconds(int(args.grace * 1e9))
        reply = await manager.call("StopManagedAgent", request)
        return _report(console, reply.managed_agent, want=M.PROCESS_STATE_STOPPED)
    if cmd == "restart":
        again = M.RestartManagedAgentRequest(name=args.name)
        if args.replica is not None:
            again.replica = args.replica
        reply = await manager.call("RestartManagedAgent", again)
        return _report(console, reply.managed_agent, want=M.PROCESS_STATE_RUNNING)
    if cmd == "scale":
        reply = await manager.call(
            "ScaleManagedAgent", M.ScaleManagedAgentRequest(name=args.name, replicas=args.replicas)
        )
        return _report(console, reply.managed_agent, want=M.PROCESS_STATE_RUNNING)
    if cmd == "delete":
        reply = await manager.call(
            "DeleteManagedAgent", M.DeleteManagedAgentRequest(name=args.name)
        )
        console.print(f"deleted [bold]{esc(args.name)}[/bold]")
        return 0
    if cmd == "logs":
        return await _logs(args, manager, console)
    if cmd == "status":
        return await _status(args, manager, console)
    return 2


def _report(console: Console, agent: M.ManagedAgent, *, want: int) -> int:
    """Print the agent; 1 when a replica is not in the wanted state (e.g. did not start)."""
    console.print(managed_table(agent))
    bad = [p for p in agent.processes if p.state != want and p.replica < agent.spec.replicas]
    for p in bad:
        line = f"replica {p.replica} is {_state(p.state)}: {p.reason}"
        console.print(esc(line), style="red", soft_wrap=True)
    return 1 if bad else 0


async def _logs(args: argparse.Namespace, manager: ServiceClient, console: Console) -> int:
    multi = args.replica is None
    if args.follow:
        request = M.StreamManagedAgentLogsRequest(name=args.name, tail_lines=min(args.tail, 1000))
        if args.replica is not None:
            request.replica = args.replica
        async for item in manager.stream("StreamManagedAgentLogs", request):
            console.print(esc(_line(item.line, multi)), soft_wrap=True, highlight=False)
        return 0
    tail = min(args.tail, 1000)
    if tail == 0:
        return 0
    logs = M.GetManagedAgentLogsRequest(name=args.name, tail_lines=tail)
    if args.replica is not None:
        logs.replica = args.replica
    reply = await manager.call("GetManagedAgentLogs", logs)
    for line in reply.lines:
        console.print(esc(_line(line, multi)), soft_wrap=True, highlight=False)
    return 0


def _line(line: M.LogLine, multi: bool) -> str:
    return f"[{line.replica}] {line.text}" if multi else line.text


async def _status(args: argparse.Namespace, manager: ServiceClient, console: Console) -> int:
    from meshwright._console import to_json

    if not args.name:
        token = ""
        agents: list[M.ManagedAgent] = []
        while True:
            page = await manager.call(
                "ListManagedAgents", M.ListManagedAgentsRequest(page_size=1000, page_token=token)
            )
            agents.extend(page.managed_agents)
            token = page.next_page_token
            if not token:
                break
        if args.json:
            console.print(to_json(M.ListManagedAgentsResponse(managed_agents=agents)))
            return 0
        console.print(list_table(agents))
        return 0
    got = await manager.call("GetManagedAgent", M.GetManagedAgentRequest(name=args.name))
    if args.json:
        console.print(to_json(got.managed_agent))
    else:
        console.print(managed_table(got.managed_agent))
        console.print(esc(metrics_line(got.managed_agent.metrics)), soft_wrap=True)
    if args.history:
        token = ""
        while True:
            page = await manager.call(
                "ListManagedAgentEvents",
                M.ListManagedAgentEventsRequest(name=args.name, page_size=1000, page_token=token),
            )
            for e in page.events:
                console.print(esc(event_line(e)), soft_wrap=True, highlight=False)
            token = page.next_page_token
            if not token:
                break
    return 0


def _state(value: int) -> str:
    return M.ProcessState.Name(value).removeprefix("PROCESS_STATE_").lower()


def _target(spec: M.ManagedAgentSpec) -> str:
    kind = spec.WhichOneof("target")
    if kind == "command":
        return shlex.join(spec.command.argv)
    if kind == "a2a_card_url":
        return f"a2a {spec.a2a_card_url}"
    return spec.module


def _uptime(p: M.AgentProcess) -> str:
    if not p.HasField("uptime"):
        return "-"
    s = p.uptime.seconds
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def managed_table(agent: M.ManagedAgent) -> Table:
    """One managed agent's processes as a table."""
    policy = M.RestartPolicy.Name(agent.spec.restart_policy).removeprefix("RESTART_POLICY_")
    table = Table(
        title=esc(
            f"{agent.name} — {_target(agent.spec)}; {agent.ready_replicas}/"
            f"{agent.spec.replicas} running, restart {policy.lower().replace('_', '-')}"
        )
    )
    for col in ("replica", "state", "pid", "exit", "restarts", "uptime", "agent id", "reason"):
        table.add_column(col)
    for p in agent.processes:
        table.add_row(
            str(p.replica),
            _state(p.state),
            str(p.pid or "-"),
            str(p.exit_code) if p.exited else "-",
            str(p.restarts),
            _uptime(p),
            esc(p.agent_id),
            esc(p.reason),
        )
    return table


def list_table(agents: list[M.ManagedAgent]) -> Table:
    """Every managed agent, one row each."""
    table = Table(title="managed agents")
    for col in ("name", "target", "running", "restarts", "tasks", "failed", "rss"):
        table.add_column(col)
    for a in agents:
        table.add_row(
            esc(a.name),
            esc(_target(a.spec)),
            f"{a.ready_replicas}/{a.spec.replicas}",
            str(a.metrics.restarts),
            str(a.metrics.tasks_finished),
            str(a.metrics.tasks_failed),
            f"{a.metrics.rss_bytes / 2**20:.1f} MiB",
        )
    return table


def metrics_line(m: M.ManagedAgentMetrics) -> str:
    """The metrics summary in one line."""
    return (
        f"tasks {m.tasks_finished} finished, {m.tasks_failed} failed, {m.tasks_in_flight} "
        f"running, mean {m.mean_task_seconds * 1000:.1f} ms; rss {m.rss_bytes / 2**20:.1f} "
        f"MiB, cpu {m.cpu_seconds:.2f} s; restarts {m.restarts}"
    )


def event_line(e: M.ManagedAgentEvent) -> str:
    """One state change: ``#seq time replica from -> to (reason) pid``."""
    when = datetime.fromtimestamp(e.time.seconds + e.time.nanos / 1e9, UTC)
    old = _state(e.from_state) if e.from_state else "new"
    pid = f" pid {e.pid}" if e.pid else ""
    return (
        f"#{e.sequence} {when:%Y-%m-%d %H:%M:%S.%f}"[:-3]
        + f" [{e.replica}] {old} -> {_state(e.to_state)}: {e.reason}{pid}"
    )


__all__ = [
    "MANAGER_COMMANDS",
    "add_manager_commands",
    "event_line",
    "list_table",
    "managed_table",
    "metrics_line",
    "run_manager_command",
    "spec_from_args",
]

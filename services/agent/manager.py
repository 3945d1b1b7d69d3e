"""The agent manager: named agent specs run as supervised processes, with replicas,
restart policies, a kept history of state changes, logs and a metrics summary.

``AgentManager`` is the domain object behind ``meshwright.agent.v1.AgentManagerService``
(the servicer in ``manager_servicer`` is a thin adapter). It owns an ``AgentSupervisor``
and runs each managed agent's replicas as its children, named ``NAME/INDEX``: a
replica keeps its agent id (so its token, registration and payout account) across
restarts and scaling down and up again.

A spec is checked before anything starts: a ``module:attr`` is imported in a short-lived
child process (the manager never imports user code into itself), a command's program
must be found, an app directory must exist. Each problem is a field violation of
INVALID_ARGUMENT.

The history (``ManagedAgentEvent``: every state change with time, replica and reason)
keeps the last ``history`` changes of each agent; each replica's output is the
supervisor's bounded buffer, and followers get new lines through a bounded queue each
(a follower that falls behind is told how many lines it missed).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import shutil
import sys
import time
from collections import deque
from collections.abc import AsyncGenerator, Iterable
from dataclasses import dataclass, field

from google.protobuf import duration_pb2, timestamp_pb2

from meshwright.agent.agent import new_agent_id
from meshwright.agent.supervisor import (
    AgentSpec,
    AgentStartError,
    AgentSupervisor,
    OutputLine,
    ProcessState,
    RestartPolicy,
    StateChange,
)
from meshwright.agent.v1 import manager_pb2 as M
from meshwright.mesh.errors import AlreadyExists, FieldViolation, InvalidArgument, NotFound

NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
"""A managed agent's name."""
MODULE_TARGET = re.compile(
    r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
)
"""``package.module:attr`` (the attr may be dotted)."""
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
RESERVED_ENV = frozenset({"MESHWRIGHT_TOKEN", "MESHWRIGHT_TOKEN_FILE", "MESHWRIGHT_AGENT_ID"})
"""Variables the manager sets itself: a spec may not choose its replicas' identity."""
MAX_REPLICAS = 16
MAX_ARGS = 64
MAX_ENV = 64
MAX_URL_LEN = 2048
MAX_TAIL = 1000
MAX_GRACE_S = 300.0
FOLLOW_QUEUE = 1000
"""Lines a follower may fall behind before it is told it missed some."""

_POLICIES = {
    M.RESTART_POLICY_UNSPECIFIED: RestartPolicy.ON_FAILURE,
    M.RESTART_POLICY_ALWAYS: RestartPolicy.ALWAYS,
    M.RESTART_POLICY_ON_FAILURE: RestartPolicy.ON_FAILURE,
    M.RESTART_POLICY_NEVER: RestartPolicy.NEVER,
}
_STATES = {
    ProcessState.STARTING: M.PROCESS_STATE_STARTING,
    ProcessState.RUNNING: M.PROCESS_STATE_RUNNING,
    ProcessState.STOPPED: M.PROCESS_STATE_STOPPED,
    ProcessState.ERROR: M.PROCESS_STATE_ERROR,
    ProcessState.RESTARTING: M.PROCESS_STATE_RESTARTING,
}

# Imports the target in a child, as `meshwright agent run` would: exit 3 and the
# reason on stderr's last line when it is not an Agent.
_CHECK = (
    "import sys\n"
    "try:\n"
    "    from meshwright.agent.cli import load_agent\n"
    "    load_agent(sys.argv[1], sys.argv[2])\n"
    "except BaseException as err:\n"
    "    print(f'{type(err).__name__}: {err}'.replace(chr(10), ' '), file=sys.stderr)\n"
    "    sys.exit(3)\n"
)


class ManagedAgentNotFound(NotFound):
    """No managed agent of that name."""

    reason = "MANAGED_AGENT_NOT_FOUND"


class ManagedAgentExists(AlreadyExists):
    """A managed agent of that name exists with another spec."""

    reason = "MANAGED_AGENT_EXISTS"


class ReplicaNotFound(NotFound):
    """The managed agent has no process of that replica index."""

    reason = "REPLICA_NOT_FOUND"


@dataclass(slots=True)
class _Managed:
    name: str
    spec: M.ManagedAgentSpec
    """As given (normalised: replicas >= 0, restart policy set)."""
    agent_spec: AgentSpec
    """The supervisor's spec of replica 0 (others differ in name and agent id)."""
    replicas: int
    create_time: float
    agent_ids: dict[int, str] = field(default_factory=dict)
    restarts: dict[int, int] = field(default_factory=dict)
    """Restarts of earlier supervisor children of each replica (a manual restart or a
    stop and start makes a new child, whose own count starts at 0)."""
    history: deque[M.ManagedAgentEvent] = field(default_factory=deque)
    sequence: int = 0
    followers: set[_Follower] = field(default_factory=set)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    """One change at a time per agent (start, stop, scale, restart, delete)."""


class _Follower:
    """A bounded queue of lines for one follower; drops and counts when it is full."""

    def __init__(self, replica: int | None) -> None:
        self.replica = replica
        self.queue: asyncio.Queue[M.LogLine] = asyncio.Queue(FOLLOW_QUEUE)
        self.missed = 0

    def push(self, line: M.LogLine) -> None:
        if self.replica is not None and line.replica != self.replica:
            return
        try:
            self.queue.put_nowait(line)
        except asyncio.QueueFull:
            self.missed += 1


def _timestamp(t: float) -> timestamp_pb2.Timestamp:
    ts = timestamp_pb2.Timestamp()
    ts.FromNanoseconds(int(t * 1e9))
    return ts


def _log_line(replica: int, line: OutputLine) -> M.LogLine:
    return M.LogLine(
        replica=replica, text=line.text, time=_timestamp(line.time), stream=line.stream
    )


def _split(process_name: str) -> tuple[str, int] | None:
    name, sep, index = process_name.rpartition("/")
    if not sep or not index.isdigit():
        return None
    return name, int(index)


class AgentManager:
    """Managed agents as children of one supervisor.

    ::

        manager = AgentManager(supervisor)
        await manager.create("echo", spec, start=True)
        ...
        await manager.close()
    """

    def __init__(
        self,
        supervisor: AgentSupervisor,
        *,
        python: str = sys.executable,
        check_timeout_s: float = 30.0,
        history: int = 1000,
        max_agents: int = 256,
    ) -> None:
        self.supervisor = supervisor
        self.python = python
        self.check_timeout_s = check_timeout_s
        self.history = history
        self.max_agents = max_agents
        self._agents: dict[str, _Managed] = {}
        supervisor.on_change.append(self._on_change)
        supervisor.on_output.append(self._on_output)

    # -- callbacks from the supervisor --------------------------------------

    def _on_change(self, change: StateChange) -> None:
        split = _split(change.name)
        if split is None or split[0] not in self._agents:
            return
        managed = self._agents[split[0]]
        managed.sequence += 1
        managed.history.append(
            M.ManagedAgentEvent(
                sequence=managed.sequence,
                time=_timestamp(change.time),
                replica=split[1],
                from_state=_STATES[change.old] if change.old else M.PROCESS_STATE_UNSPECIFIED,
                to_state=_STATES[change.new],
                reason=change.reason,
                pid=change.pid or 0,
            )
        )
        while len(managed.history) > self.history:
            managed.history.popleft()

    def _on_output(self, process_name: str, line: OutputLine) -> None:
        split = _split(process_name)
        if split is None or split[0] not in self._agents:
            return
        managed = self._agents[split[0]]
        if managed.followers:
            msg = _log_line(split[1], line)
            for follower in managed.followers:
                follower.push(msg)

    # -- specs ----------------------------------------------------------------

    async def check_spec(self, name: str, spec: M.ManagedAgentSpec) -> list[FieldViolation]:
        """Every problem of a name and spec (empty: fine). Imports a module target in a
        child process to see that it names an Agent."""
        out = check_fields(name, spec)
        if spec.WhichOneof("target") == "module" and not out:
            problem = await self._import_problem(
                spec.module, _abs_dir(spec.app_dir), dict(spec.env)
            )
            if problem:
                out.append(FieldViolation("spec.module", problem))
        return out

    async def _import_problem(self, module: str, app_dir: str, env: dict[str, str]) -> str:
        """Why ``module`` does not name an Agent ("" when it does), imported with the
        environment its processes get."""
        proc = await asyncio.create_subprocess_exec(
            self.python,
            "-c",
            _CHECK,
            module,
            app_dir,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, **self.supervisor.env, **env},
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(), self.check_timeout_s)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            return f"importing it took over {self.check_timeout_s:g}s"
        if proc.returncode == 0:
            return ""
        lines = [ln for ln in err.decode(errors="replace").splitlines() if ln.strip()]
        return lines[-1][:300] if lines else f"the import check exited {proc.returncode}"

    def _agent_spec(self, name: str, spec: M.ManagedAgentSpec) -> AgentSpec:
        env = dict(spec.env)
        policy = _POLICIES[spec.restart_policy]
        kind = spec.WhichOneof("target")
        if kind == "module":
            app_dir = _abs_dir(spec.app_dir)
            return AgentSpec(
                target=spec.module,
                name=name,
                args=("--app-dir", app_dir, *spec.args),
                env=env,
                restart=policy,
            )
        if kind == "command":
            return AgentSpec(
                command=tuple(spec.command.argv),
                name=name,
                env=env,
                restart=policy,
                cwd=_abs_dir(spec.app_dir),
            )
        command = (
            self.python, "-m", "meshwright.agent", "a2a", spec.a2a_card_url,
            "--stop-on-stdin-eof", *spec.args,
        )  # fmt: skip
        return AgentSpec(command=command, name=name, env=env, restart=policy)

    # -- queries ----------------------------------------------------------------

    def _get(self, name: str) -> _Managed:
        managed = self._agents.get(name)
        if managed is None:
            raise ManagedAgentNotFound(f"no managed agent {name!r}")
        return managed

    def names(self) -> list[str]:
        """Every managed agent's name, sorted."""
        return sorted(self._agents)

    def _replica_names(self, managed: _Managed) -> list[tuple[int, str]]:
        """(index, process name) of every replica the supervisor knows, by index."""
        known = {s.name for s in self.supervisor.statuses()}
        out = []
        for index in sorted(managed.agent_ids):
            process = f"{managed.name}/{index}"
            if process in known:
                out.append((index, process))
        return out

    def get(self, name: str) -> M.ManagedAgent:
        """The agent as the contract shows it (NOT_FOUND if unknown)."""
        return self._snapshot(self._get(name))

    def _snapshot(self, managed: _Managed) -> M.ManagedAgent:
        out = M.ManagedAgent(
            name=managed.name, spec=managed.spec, create_time=_timestamp(managed.create_time)
        )
        out.spec.replicas = managed.replicas
        now = time.time()
        figures = _Figures()
        for index, process in self._replica_names(managed):
            status = self.supervisor.status(process)
            restarts = managed.restarts.get(index, 0) + status.restarts
            proc = out.processes.add(
                replica=index,
                state=_STATES[status.state],
                pid=status.pid or 0,
                exited=status.exit_code is not None,
                exit_code=status.exit_code or 0,
                restarts=restarts,
                agent_id=status.agent_id,
                endpoint=status.endpoint,
                reason=status.error,
                metrics_url=status.metrics_url,
            )
            figures.restarts += restarts
            if status.state is ProcessState.RUNNING:
                out.ready_replicas += 1
                if status.running_since is not None:
                    proc.start_time.CopyFrom(_timestamp(status.running_since))
                    up = duration_pb2.Duration()
                    up.FromNanoseconds(int(max(0.0, now - status.running_since) * 1e9))
                    proc.uptime.CopyFrom(up)
                if status.pid:
                    figures.add_process(status.pid)
        out.metrics.restarts = figures.restarts
        out.metrics.rss_bytes = figures.rss_bytes
        out.metrics.cpu_seconds = round(figures.cpu_seconds, 3)
        return out

    async def describe(self, name: str) -> M.ManagedAgent:
        """``get`` with the task figures scraped from each running replica's /metrics."""
        snapshot = self.get(name)
        urls = [
            p.metrics_url
            for p in snapshot.processes
            if p.metrics_url and p.state == M.PROCESS_STATE_RUNNING
        ]
        if urls:
            tasks = await _scrape_all(urls)
            snapshot.metrics.tasks_finished = tasks.finished
            snapshot.metrics.tasks_failed = tasks.failed
            snapshot.metrics.tasks_in_flight = tasks.in_flight
            if tasks.finished:
                snapshot.metrics.mean_task_seconds = round(tasks.seconds / tasks.finished, 6)
        return snapshot

    def events(self, name: str) -> list[M.ManagedAgentEvent]:
        """The kept state changes, oldest first."""
        return list(self._get(name).history)

    def logs(self, name: str, *, replica: int | None, tail: int) -> list[M.LogLine]:
        """The last ``tail`` lines of each replica (or of one), by replica then time."""
        managed = self._get(name)
        out: list[M.LogLine] = []
        for index, process in self._replicas_for(managed, replica):
            lines = self.supervisor.output_records(process)
            out.extend(_log_line(index, line) for line in lines[-tail:] if tail)
        return out

    def _replicas_for(self, managed: _Managed, replica: int | None) -> list[tuple[int, str]]:
        replicas = self._replica_names(managed)
        if replica is None:
            return replicas
        chosen = [(i, p) for i, p in replicas if i == replica]
        if not chosen:
            raise ReplicaNotFound(f"managed agent {managed.name!r} has no replica {replica}")
        return chosen

    async def follow(
        self, name: str, *, replica: int | None, tail: int
    ) -> AsyncGenerator[M.LogLine, None]:
        """The last ``tail`` lines, then every new one, until the caller stops reading."""
        managed = self._get(name)
        follower = _Follower(replica)
        # Registered before the tail is read: no line falls between the two.
        backlog = self.logs(name, replica=replica, tail=tail) if tail else []
        managed.followers.add(follower)
        try:
            for line in backlog:
                yield line
            while True:
                line = await follower.queue.get()
                if follower.missed:
                    missed, follower.missed = follower.missed, 0
                    yield M.LogLine(
                        replica=line.replica,
                        text=f"[{missed} lines missed: this reader fell behind]",
                        time=_timestamp(time.time()),
                        stream="manager",
                    )
                yield line
        finally:
            managed.followers.discard(follower)

    # -- changes ----------------------------------------------------------------

    async def create(self, name: str, spec: M.ManagedAgentSpec, *, start: bool) -> M.ManagedAgent:
        """Register ``spec`` as ``name`` (and start it); the same spec again is a no-op."""
        violations = await self.check_spec(name, spec)
        if violations:
            raise InvalidArgument(
                f"bad managed agent: {violations[0].field}: {violations[0].description}",
                violations=violations,
            )
        normal = M.ManagedAgentSpec()
        normal.CopyFrom(spec)
        if normal.restart_policy == M.RESTART_POLICY_UNSPECIFIED:
            normal.restart_policy = M.RESTART_POLICY_ON_FAILURE
        replicas = normal.replicas or 1
        normal.replicas = replicas
        existing = self._agents.get(name)
        if existing is not None:
            if not _same_spec(existing.spec, normal):
                raise ManagedAgentExists(f"managed agent {name!r} exists with another spec")
        else:
            if len(self._agents) >= self.max_agents:
                raise InvalidArgument.field("name", f"at most {self.max_agents} managed agents")
            existing = self._agents[name] = _Managed(
                name=name,
                spec=normal,
                agent_spec=self._agent_spec(name, normal),
                replicas=replicas,
                create_time=time.time(),
            )
        if start:
            return await self.start(name)
        return self._snapshot(existing)

    async def start(self, name: str) -> M.ManagedAgent:
        """Start every replica below the count that is not running."""
        managed = self._get(name)
        async with managed.lock:
            await self._start_replicas(managed, range(managed.replicas))
        return self._snapshot(managed)

    async def _start_replicas(self, managed: _Managed, indexes: Iterable[int]) -> None:
        busy = {
            s.name
            for s in self.supervisor.statuses()
            if s.state not in (ProcessState.STOPPED, ProcessState.ERROR)
        }
        todo = [i for i in indexes if f"{managed.name}/{i}" not in busy]
        await asyncio.gather(*(self._start_one(managed, i) for i in todo))

    async def _start_one(self, managed: _Managed, index: int) -> None:
        process = f"{managed.name}/{index}"
        with contextlib.suppress(KeyError):
            managed.restarts[index] = (
                managed.restarts.get(index, 0) + self.supervisor.status(process).restarts
            )
            self.supervisor.forget(process)
        # Replica 0 is named like an agent run by hand; the others carry their index.
        base = managed.name if index == 0 else f"{managed.name}-{index}"
        agent_id = managed.agent_ids.get(index) or new_agent_id(base)
        managed.agent_ids[index] = agent_id
        spec = dataclasses.replace(managed.agent_spec, name=process, agent_id=agent_id)
        # A start that fails leaves the replica in ERROR with its reason and output:
        # the response shows it; the call itself succeeded.
        with contextlib.suppress(AgentStartError):
            await self.supervisor.start(spec)

    async def stop(self, name: str, *, grace_s: float | None = None) -> M.ManagedAgent:
        """Stop every replica; they stay STOPPED until started again."""
        if grace_s is not None and not 0 <= grace_s <= MAX_GRACE_S:
            raise InvalidArgument.field("grace", f"must be 0..{MAX_GRACE_S:g}s")
        managed = self._get(name)
        async with managed.lock:
            await self._stop_replicas(managed, [i for i, _ in self._replica_names(managed)],
                                      grace_s=grace_s)  # fmt: skip
        return self._snapshot(managed)

    async def _stop_replicas(
        self, managed: _Managed, indexes: Iterable[int], *, grace_s: float | None = None
    ) -> None:
        await asyncio.gather(
            *(self.supervisor.stop(f"{managed.name}/{i}", grace_s=grace_s) for i in indexes)
        )

    async def restart(self, name: str, *, replica: int | None = None) -> M.ManagedAgent:
        """Stop and start one replica or all (those that exist; up to the count)."""
        managed = self._get(name)
        async with managed.lock:
            if replica is not None:
                if not 0 <= replica < managed.replicas:
                    raise ReplicaNotFound(
                        f"managed agent {name!r} has no replica {replica} "
                        f"(replicas: {managed.replicas})"
                    )
                indexes = [replica]
            else:
                indexes = list(range(managed.replicas))
            known = {i for i, _ in self._replica_names(managed)}
            await self._stop_replicas(managed, [i for i in indexes if i in known])
            await self._start_replicas(managed, indexes)
        return self._snapshot(managed)

    async def scale(self, name: str, replicas: int) -> M.ManagedAgent:
        """Run ``replicas`` processes: start the missing, stop (and drop) those above."""
        if not 0 <= replicas <= MAX_REPLICAS:
            raise InvalidArgument.field("replicas", f"must be 0..{MAX_REPLICAS}")
        managed = self._get(name)
        async with managed.lock:
            above = [i for i, _ in self._replica_names(managed) if i >= replicas]
            await self._stop_replicas(managed, above)
            for i in above:
                self.supervisor.forget(f"{managed.name}/{i}")
            managed.replicas = replicas
            managed.spec.replicas = replicas
            await self._start_replicas(managed, range(replicas))
        return self._snapshot(managed)

    async def delete(self, name: str) -> M.ManagedAgent:
        """Stop every replica and forget the agent."""
        managed = self._get(name)
        async with managed.lock:
            indexes = [i for i, _ in self._replica_names(managed)]
            await self._stop_replicas(managed, indexes)
            snapshot = self._snapshot(managed)
            for i in indexes:
                self.supervisor.forget(f"{managed.name}/{i}")
            self._agents.pop(name, None)
        return snapshot

    async def close(self) -> None:
        """Stop every managed process (the specs are forgotten with the manager)."""
        await self.supervisor.close()


def check_fields(name: str, spec: M.ManagedAgentSpec) -> list[FieldViolation]:
    """Every problem of a name and spec that needs no import (empty: fine)."""
    out: list[FieldViolation] = []
    if not name:
        out.append(FieldViolation("name", "required"))
    elif not NAME.fullmatch(name):
        out.append(
            FieldViolation(
                "name", "lower case letters, digits and '-', 1 to 63, not starting with '-'"
            )
        )
    kind = spec.WhichOneof("target")
    if kind is None:
        out.append(FieldViolation("spec.target", "set one of module, command, a2a_card_url"))
    if len(spec.args) > MAX_ARGS:
        out.append(FieldViolation("spec.args", f"at most {MAX_ARGS} arguments"))
    # (Lengths of every string are the call pipeline's limit: it refuses them first.)
    for i, arg in enumerate(spec.args):
        if "\x00" in arg:
            out.append(FieldViolation(f"spec.args[{i}]", "contains NUL"))
    if kind == "command" and spec.args:
        out.append(FieldViolation("spec.args", "not allowed with command: put them in argv"))
    if len(spec.env) > MAX_ENV:
        out.append(FieldViolation("spec.env", f"at most {MAX_ENV} variables"))
    for key in sorted(spec.env):
        value = spec.env[key]
        if not ENV_NAME.fullmatch(key):
            out.append(FieldViolation(f"spec.env[{key}]", "not a variable name"))
        elif key in RESERVED_ENV:
            out.append(FieldViolation(f"spec.env[{key}]", "set by the manager"))
        if "\x00" in value:
            out.append(FieldViolation(f"spec.env[{key}]", "value contains NUL"))
    if spec.restart_policy not in _POLICIES:
        out.append(FieldViolation("spec.restart_policy", "unknown policy"))
    if not 0 <= spec.replicas <= MAX_REPLICAS:
        out.append(FieldViolation("spec.replicas", f"must be 0..{MAX_REPLICAS}"))
    app_dir = spec.app_dir or "."
    if spec.app_dir and kind == "a2a_card_url":
        out.append(FieldViolation("spec.app_dir", "only with module or command"))
    elif not os.path.isdir(_abs_dir(spec.app_dir)):
        out.append(FieldViolation("spec.app_dir", f"{app_dir!r} is not a directory"))
    if kind == "command":
        argv = list(spec.command.argv)
        if not argv or not argv[0]:
            out.append(FieldViolation("spec.command.argv", "required: the program"))
        elif len(argv) > MAX_ARGS + 1:
            out.append(FieldViolation("spec.command.argv", f"at most {MAX_ARGS} arguments"))
        elif any("\x00" in a for a in argv):
            out.append(FieldViolation("spec.command.argv", "an argument contains NUL"))
        elif _program(argv[0], _abs_dir(spec.app_dir)) is None:
            out.append(FieldViolation("spec.command.argv[0]", f"{argv[0]!r}: no such program"))
    elif kind == "a2a_card_url":
        url = spec.a2a_card_url
        if not re.fullmatch(r"https?://[^\s/]+(/\S*)?", url) or len(url) > MAX_URL_LEN:
            out.append(FieldViolation("spec.a2a_card_url", "must be an http(s) URL"))
    elif kind == "module":
        if not MODULE_TARGET.fullmatch(spec.module):
            out.append(FieldViolation("spec.module", "must be package.module:attr, e.g. app:agent"))
    return out


def _abs_dir(app_dir: str) -> str:
    return os.path.abspath(app_dir or ".")


def _same_spec(a: M.ManagedAgentSpec, b: M.ManagedAgentSpec) -> bool:
    """Whether two specs run the same thing (the replica count may have been scaled)."""
    x, y = M.ManagedAgentSpec(), M.ManagedAgentSpec()
    x.CopyFrom(a)
    y.CopyFrom(b)
    x.replicas = y.replicas = 0
    return x == y


def _program(name: str, cwd: str) -> str | None:
    """The executable ``name`` runs (a path from ``cwd``, or looked up on PATH); None if
    none."""
    if "/" in name:
        name = os.path.join(cwd, name)
        # The mode bits too: root passes os.access(X_OK) for some files with no x bit.
        ok = os.path.isfile(name) and os.access(name, os.X_OK)
        return name if ok and os.stat(name).st_mode & 0o111 else None
    return shutil.which(name)


@dataclass(slots=True)
class _Figures:
    restarts: int = 0
    rss_bytes: int = 0
    cpu_seconds: float = 0.0

    def add_process(self, pid: int) -> None:
        """Add a process's resident memory and CPU time (Linux /proc; 0 elsewhere)."""
        try:
            with open(f"/proc/{pid}/statm") as f:
                self.rss_bytes += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            with open(f"/proc/{pid}/stat") as f:
                # Fields after the command (which may hold spaces) are split from its ")".
                fields = f.read().rpartition(")")[2].split()
            ticks = os.sysconf("SC_CLK_TCK")
            self.cpu_seconds += (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, ValueError, IndexError):
            pass


@dataclass(slots=True)
class _Tasks:
    finished: int = 0
    failed: int = 0
    in_flight: int = 0
    seconds: float = 0.0


async def _scrape_all(urls: list[str]) -> _Tasks:
    """The task figures of every /metrics URL (best effort, one second each)."""
    total = _Tasks()
    texts = await asyncio.gather(*(_fetch(url) for url in urls))
    for text in texts:
        if text:
            _add_metrics(total, text)
    return total


async def _fetch(url: str) -> str:
    import httpx

    try:
        async with httpx.AsyncClient(timeout=1.0) as client:
            reply = await client.get(url)
    except httpx.HTTPError:
        return ""
    return reply.text if reply.status_code == 200 else ""


def _add_metrics(total: _Tasks, text: str) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    try:
        families = list(text_string_to_metric_families(text))
    except ValueError:
        return
    for family in families:
        for sample in family.samples:
            if sample.name == "meshwright_agent_task_duration_seconds_count":
                total.finished += int(sample.value)
            elif sample.name == "meshwright_agent_task_duration_seconds_sum":
                total.seconds += float(sample.value)
            elif sample.name == "meshwright_agent_task_errors_total":
                total.failed += int(sample.value)
            elif sample.name == "meshwright_agent_tasks_in_flight":
                total.in_flight += int(sample.value)


__all__ = [
    "MAX_REPLICAS",
    "AgentManager",
    "ManagedAgentExists",
    "ManagedAgentNotFound",
    "ReplicaNotFound",
]

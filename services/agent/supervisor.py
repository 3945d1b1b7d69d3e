"""Running agents as local child processes: start, watch, restart, stop.

Each agent runs as ``python -m meshwright.agent run MODULE:ATTR ...`` started
with ``asyncio.create_subprocess_exec`` (fork+exec, never a bare fork, so no
gRPC state is inherited). The supervisor waits for the child's READY line,
keeps its recent output lines, restarts it with capped backoff when it
crashes, and stops it with SIGTERM, then SIGKILL after a grace period.
Children get a stdin pipe and stop when it closes, so they do not outlive a
supervisor that was killed.

Identity: the supervisor decides each child's agent id before the first
launch (its name plus a random suffix) and keeps it across restarts. Given a
``TokenIssuer`` (``meshwright up`` holds the development signing key), it
hands every launch a fresh ``agent`` token whose subject is that id in
``MESHWRIGHT_TOKEN``, and the public key that checks the mesh's calls in
``MESHWRIGHT_AUTH_PUBLIC_KEY``: through the environment, never the command
line, where any local user could read them.

States (seed 002): starting → running → stopped | error, and restarting
between an exit and the next start. A child that was RUNNING and exits with
code 0 is STOPPED; one that exits non-zero, is killed by a signal or never gets
READY is ERROR.
Its spec's ``restart`` policy says what follows: ``always`` starts it again
after either, ``on-failure`` (the default) only after an ERROR, ``never``
leaves it. Every state change is handed to the ``on_change`` callbacks with
its time and reason, every output line to the ``on_output`` ones.

Given a registry client that may report failures (``failures``: an admin's, or
any caller the registry lets report for these agents), a child that was running
and fails (ERROR) is reported with ``ReportAgentFailure``, so the registry shows
it ERROR at once instead of waiting for its lease to lapse.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import enum
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType

from meshwright.agent.agent import new_agent_id
from meshwright.agent.cli import parse_ready_line
from meshwright.mesh.auth import Role, TokenIssuer
from meshwright.mesh.client import ServiceClient
from meshwright.mesh.errors import MeshError
from meshwright.registry.v1 import registry_pb2

log = logging.getLogger(__name__)

OutputCallback = Callable[[str, str], None]
"""``fn(agent_name, line)`` for each output line of a child."""

_LINE_LIMIT = 1 << 20

AGENT_TOKEN_TTL_S = 90 * 86_400.0
"""Life of the token handed to a child; every (re)launch gets a fresh one. Agents cannot
renew their token, so it is long: a child running longer than this is refused by the mesh."""


class RestartPolicy(enum.StrEnum):
    """When an exited child is started again."""

    ALWAYS = "always"
    """After any exit, clean or not."""
    ON_FAILURE = "on-failure"
    """After a non-zero exit, a signal or a start that failed; a clean exit stays STOPPED."""
    NEVER = "never"
    """Never: the child stays STOPPED or ERROR."""


class ProcessState(enum.StrEnum):
    """Where a supervised agent process is in its life."""

    STARTING = "starting"
    """Launched; waiting for its READY line."""
    RUNNING = "running"
    """Registered and serving."""
    STOPPED = "stopped"
    """Shut down on request, or exited with code 0."""
    ERROR = "error"
    """Failed to start, exited non-zero or was killed by a signal."""
    RESTARTING = "restarting"
    """Exited; waiting out the backoff before starting again."""


@dataclass(frozen=True, slots=True)
class OutputLine:
    """One line a child wrote."""

    time: float
    """When it was read (``time.time()``)."""
    stream: str
    """``stdout`` or ``stderr``."""
    text: str
    """The line without its newline."""


@dataclass(frozen=True, slots=True)
class StateChange:
    """One state change of one child."""

    name: str
    """The child's name."""
    time: float
    """When (``time.time()``)."""
    old: ProcessState | None
    """The state before; None for a new child."""
    new: ProcessState
    """The state after."""
    reason: str
    """Why, e.g. ``exited with code 1``, ``stop requested``."""
    pid: int | None
    """The process id, when one exists."""


StateCallback = Callable[[StateChange], None]
"""``fn(change)`` for each state change of a child."""
LineCallback = Callable[[str, OutputLine], None]
"""``fn(child_name, line)`` for each output line of a child."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentSpec:
    """One agent process to run."""

    target: str = ""
    """``module:attr`` of the Agent, e.g. ``meshwright.agent.samples:sysinfo_agent``."""
    command: tuple[str, ...] = ()
    """Instead of ``target``: a command line (argv) that prints the READY line; it gets
    the registry, economy, agent id, port and token as ``MESHWRIGHT_*`` variables."""
    restart: RestartPolicy = RestartPolicy.ON_FAILURE
    """When the child is started again after it exited."""
    name: str = ""
    """Label for status and output; the attr part of ``target`` when empty."""
    port: int = 0
    """Port the agent binds; 0 picks a free one."""
    agent_id: str | None = None
    """Registry id; when None the supervisor picks the name plus a random suffix (or, with
    a token of the caller's own in ``env`` and no issuer, the agent takes its subject), and
    keeps it across restarts."""
    lease_ttl_s: float | None = None
    """Lease length; the supervisor's (or the agent's default) when None."""
    args: tuple[str, ...] = ()
    """Extra command-line arguments for ``meshwright.agent run``."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment variables."""
    cwd: str | None = None
    """Working directory of the process; the supervisor's when None."""

    def __post_init__(self) -> None:
        if bool(self.target) == bool(self.command):
            raise ValueError("an AgentSpec needs a target or a command, not both")

    @property
    def label(self) -> str:
        """The name, or the attr part of the target (the program of a command)."""
        if self.name:
            return self.name
        if self.command:
            return os.path.basename(self.command[0]) or "agent"
        return self.target.rpartition(":")[2] or self.target


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessStatus:
    """A snapshot of one supervised agent process."""

    name: str
    target: str
    state: ProcessState
    pid: int | None
    """Process id of the current (or last) child."""
    exit_code: int | None
    """Exit code of the last child that exited; negative for a signal."""
    restarts: int
    """Restarts after crashes so far."""
    agent_id: str
    """Registry id from the READY line."""
    endpoint: str
    """AgentService address from the READY line."""
    error: str
    """Why the process is in ERROR (or why it last crashed)."""
    metrics_url: str = ""
    """Its /metrics URL from the READY line ("" when it serves none)."""
    running_since: float | None = None
    """``time.time()`` it became RUNNING; None unless RUNNING."""


class AgentStartError(RuntimeError):
    """An agent process did not become ready."""


class _Child:
    def __init__(self, spec: AgentSpec, output_lines: int, on_change: list[StateCallback]) -> None:
        self.spec = spec
        self.on_change = on_change
        self.name = spec.label
        self.state = ProcessState.STARTING
        self.proc: asyncio.subprocess.Process | None = None
        self.exit_code: int | None = None
        self.restarts = 0
        self.agent_id = spec.agent_id or ""
        self.endpoint = ""
        self.metrics_url = ""
        self.error = ""
        self.output: deque[OutputLine] = deque(maxlen=output_lines)
        self.running_since: float | None = None
        self.ready = asyncio.Event()
        self.changed = asyncio.Event()
        self.stop_requested = asyncio.Event()
        self.stop_grace_s: float | None = None
        """Grace period of the stop request (the shortest, when several came)."""
        self.started: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.monitor: asyncio.Task[None] | None = None
        self.pumps: tuple[asyncio.Task[None], ...] = ()

    def set_state(self, state: ProcessState, reason: str = "", *, new: bool = False) -> None:
        old = None if new else self.state
        self.state = state
        self.running_since = time.time() if state is ProcessState.RUNNING else None
        self.changed.set()
        self.changed = asyncio.Event()
        change = StateChange(
            name=self.name,
            time=time.time(),
            old=old,
            new=state,
            reason=reason,
            pid=self.proc.pid if self.proc else None,
        )
        for fn in self.on_change:
            try:
                fn(change)
            except Exception:  # a broken observer must not stop supervising
                log.exception("a state-change callback failed for agent %s", self.name)

    def status(self) -> ProcessStatus:
        return ProcessStatus(
            name=self.name,
            target=self.spec.target,
            state=self.state,
            pid=self.proc.pid if self.proc else None,
            exit_code=self.exit_code,
            restarts=self.restarts,
            agent_id=self.agent_id,
            endpoint=self.endpoint,
            error=self.error,
            metrics_url=self.metrics_url,
            running_since=self.running_since,
        )


class AgentSupervisor:
    """Runs agents as child processes registered with one registry.

    ::

        async with AgentSupervisor("127.0.0.1:50051", echo=True) as sup:
            await sup.start("meshwright.agent.samples:sysinfo_agent")
            ...
    """

    def __init__(
        self,
        registry: str,
        *,
        economy: str | None = None,
        host: str = "127.0.0.1",
        lease_ttl_s: float | None = None,
        ready_timeout_s: float = 20.0,
        stop_grace_s: float = 10.0,
        max_restarts: int | None = 3,
        restart_backoff_s: float = 0.5,
        max_restart_backoff_s: float = 10.0,
        stable_after_s: float = 60.0,
        output_lines: int = 500,
        echo: bool | OutputCallback = False,
        python: str = sys.executable,
        env: Mapping[str, str] | None = None,
        issuer: TokenIssuer | None = None,
        auth_public_key: str = "",
        insecure_no_auth: bool = False,
        token_ttl_s: float = AGENT_TOKEN_TTL_S,
        failures: ServiceClient | None = None,
        on_change: StateCallback | None = None,
        on_output: LineCallback | None = None,
    ) -> None:
        """``issuer``: mint each child an agent token for its own id (``MESHWRIGHT_TOKEN``).
        ``auth_public_key``: PEM file the children check callers' tokens with
        (``MESHWRIGHT_AUTH_PUBLIC_KEY``). ``insecure_no_auth``: children serve without
        checking tokens (``MESHWRIGHT_INSECURE_NO_AUTH=1``); not together with ``issuer``.
        ``failures``: a RegistryService client that reports children that exit unasked.
        ``max_restarts``: consecutive failed runs restarted before giving up; None: no limit.
        ``on_change`` / ``on_output``: called for every state change / output line.
        """
        if issuer is not None and insecure_no_auth:
            raise ValueError("an issuer hands out tokens; it makes no sense with auth off")
        if token_ttl_s <= 0:
            raise ValueError("token_ttl_s must be positive")
        self.registry = registry
        self.economy = economy
        self.host = host
        self.lease_ttl_s = lease_ttl_s
        self.ready_timeout_s = ready_timeout_s
        self.stop_grace_s = stop_grace_s
        self.max_restarts = max_restarts
        """Consecutive crashes restarted before giving up (ERROR)."""
        self.restart_backoff_s = restart_backoff_s
        self.max_restart_backoff_s = max_restart_backoff_s
        self.stable_after_s = stable_after_s
        """A child that ran this long before crashing starts a fresh restart budget."""
        self.output_lines = output_lines
        self.python = python
        self.env = dict(env or {})
        self.issuer = issuer
        self.auth_public_key = auth_public_key
        self.insecure_no_auth = insecure_no_auth
        self.token_ttl_s = token_ttl_s
        self.failures = failures
        self._echo: OutputCallback | None = (
            _echo_to_stderr if echo is True else echo if callable(echo) else None
        )
        self._children: dict[str, _Child] = {}
        self.on_change: list[StateCallback] = [on_change] if on_change else []
        self.on_output: list[LineCallback] = [on_output] if on_output else []

    async def __aenter__(self) -> AgentSupervisor:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- queries -------------------------------------------------------------

    def status(self, name: str) -> ProcessStatus:
        """The status of one agent process (KeyError if unknown)."""
        return self._children[name].status()

    def statuses(self) -> list[ProcessStatus]:
        """Every agent process, in start order."""
        return [c.status() for c in self._children.values()]

    def output(self, name: str) -> list[str]:
        """The most recent output lines (stdout and stderr) of an agent process."""
        return [line.text for line in self._children[name].output]

    def output_records(self, name: str) -> list[OutputLine]:
        """The most recent output lines of an agent process, with time and stream."""
        return list(self._children[name].output)

    def forget(self, name: str) -> None:
        """Drop a process that is STOPPED or ERROR (ValueError while it runs)."""
        if self._busy(name):
            raise ValueError(f"agent process {name!r} is {self._children[name].state}")
        self._children.pop(name, None)

    async def wait_state(
        self, name: str, *states: ProcessState, timeout: float | None = None
    ) -> ProcessStatus:
        """Block until the process is in one of ``states``; TimeoutError after ``timeout``."""
        child = self._children[name]
        async with asyncio.timeout(timeout):
            while child.state not in states:
                await child.changed.wait()
        return child.status()

    # -- control -------------------------------------------------------------

    async def start(self, spec: AgentSpec | str, *, name: str | None = None) -> ProcessStatus:
        """Launch an agent and wait for its READY line.

        The process is known by ``name`` (or the spec's), by default the target's
        attr, with ``-2``, ``-3``... for further copies. Raises AgentStartError
        (the process then is in ERROR) if it exits or stays silent past
        ``ready_timeout_s``; ValueError if a process of that name is running.
        """
        if isinstance(spec, str):
            spec = AgentSpec(target=spec, name=name or "")
        elif name:
            spec = dataclasses.replace(spec, name=name)
        if not spec.name:  # unnamed copies of one target get -2, -3, ...
            label, n = spec.label, 1
            while self._busy(label):
                n += 1
                label = f"{spec.label}-{n}"
            spec = dataclasses.replace(spec, name=label)
        if self._busy(spec.label):
            raise ValueError(f"agent process {spec.label!r} is {self._children[spec.label].state}")
        child = _Child(spec, self.output_lines, self.on_change)
        if not child.agent_id and not self._token_given(spec):
            # Decided here, not by the child, so its token can name it before it exists.
            child.agent_id = new_agent_id(child.name)
        self._children[child.name] = child
        child.set_state(ProcessState.STARTING, "start requested", new=True)
        child.monitor = asyncio.create_task(self._supervise(child), name=f"supervise-{child.name}")
        await asyncio.shield(child.started)
        return child.status()

    def _token_given(self, spec: AgentSpec) -> bool:
        """A token of the caller's own in the child's environment: its subject is the id."""
        if self.issuer is not None:
            return False
        return bool({**os.environ, **self.env, **spec.env}.get("MESHWRIGHT_TOKEN"))

    def _child_env(self, child: _Child) -> dict[str, str]:
        env = {**os.environ, **self.env, **child.spec.env, "PYTHONUNBUFFERED": "1"}
        if self.issuer is not None:
            env["MESHWRIGHT_TOKEN"] = self.issuer.issue(
                Role.AGENT, child.agent_id, ttl_s=self.token_ttl_s
            )
            env.pop("MESHWRIGHT_INSECURE_NO_AUTH", None)
        if self.auth_public_key:
            env["MESHWRIGHT_AUTH_PUBLIC_KEY"] = self.auth_public_key
        if self.insecure_no_auth:
            env["MESHWRIGHT_INSECURE_NO_AUTH"] = "1"
        if child.spec.command:
            # What `meshwright agent run` takes as flags, a command gets as its defaults.
            env["MESHWRIGHT_REGISTRY"] = self.registry
            env["MESHWRIGHT_AGENT_HOST"] = self.host
            env["MESHWRIGHT_AGENT_PORT"] = str(child.spec.port)
            if self.economy:
                env["MESHWRIGHT_ECONOMY"] = self.economy
            if child.agent_id:
                env["MESHWRIGHT_AGENT_ID"] = child.agent_id
            ttl = child.spec.lease_ttl_s if child.spec.lease_ttl_s is not None else self.lease_ttl_s
            if ttl is not None:
                env["MESHWRIGHT_LEASE_TTL_S"] = str(ttl)
        return env

    def _busy(self, name: str) -> bool:
        child = self._children.get(name)
        return child is not None and child.state not in (ProcessState.STOPPED, ProcessState.ERROR)

    async def stop(self, name: str, *, grace_s: float | None = None) -> ProcessStatus:
        """SIGTERM the process, SIGKILL it after the grace period; returns its final status.

        The monitor does the stopping wherever it is: waiting for READY, running,
        backing off, or in the middle of launching a replacement (which it then
        terminates as soon as it exists).
        """
        child = self._children[name]
        grace = self.stop_grace_s if grace_s is None else grace_s
        if child.stop_grace_s is None or grace < child.stop_grace_s:
            child.stop_grace_s = grace
        child.stop_requested.set()
        if child.monitor is not None and not child.monitor.done():
            await asyncio.shield(child.monitor)
        # Nothing supervises the process any more (or the monitor failed): make sure.
        await self._terminate(child, grace)
        return child.status()

    async def restart(self, name: str) -> ProcessStatus:
        """Stop the process and start it again (same spec, same agent id)."""
        child = self._children[name]
        await self.stop(name)
        spec = child.spec
        if child.agent_id and not spec.agent_id:
            spec = dataclasses.replace(spec, agent_id=child.agent_id)
        return await self.start(spec)

    async def close(self) -> None:
        """Stop every agent process."""
        await asyncio.gather(
            *(self.stop(name) for name in list(self._children)), return_exceptions=True
        )

    # -- internals -----------------------------------------------------------

    async def _report_failure(self, child: _Child) -> None:
        """Tell the registry the child's agent failed (best effort, bounded)."""
        if self.failures is None or not child.agent_id:
            return
        try:
            await self.failures.call(
                "ReportAgentFailure",
                registry_pb2.ReportAgentFailureRequest(agent_id=child.agent_id, reason=child.error),
                timeout=2.0,
            )
        except MeshError as err:
            log.info("could not report agent %s failed: %s", child.agent_id, err.message)

    def _command(self, child: _Child) -> list[str]:
        spec = child.spec
        if spec.command:
            return list(spec.command)
        cmd = [
            self.python, "-m", "meshwright.agent", "run", spec.target,
            "--registry", self.registry,
            "--host", self.host,
            "--port", str(spec.port),
            "--stop-on-stdin-eof",
        ]  # fmt: skip
        if self.economy:
            cmd += ["--economy", self.economy]
        ttl = spec.lease_ttl_s if spec.lease_ttl_s is not None else self.lease_ttl_s
        if ttl is not None:
            cmd += ["--lease-ttl", str(ttl)]
        if child.agent_id:  # keep the identity (and payout account) across restarts
            cmd += ["--agent-id", child.agent_id]
        cmd += list(spec.args)
        return cmd

    async def _supervise(self, child: _Child) -> None:
        consecutive = 0
        first = True
        try:
            while True:
                if not first:
                    child.set_state(ProcessState.STARTING, "restarting after backoff")
                started = time.monotonic()
                ready = await self._launch(child)
                if ready and not child.stop_requested.is_set():
                    child.set_state(ProcessState.RUNNING, "READY")
                    if first:
                        child.started.set_result(None)
                    assert child.proc is not None
                    await self._exit_or_stop(child, child.proc)
                if child.stop_requested.is_set():
                    await self._terminate(child, self._stop_grace(child))
                await self._reap(child)
                ran_s = time.monotonic() - started
                if child.stop_requested.is_set():
                    child.set_state(ProcessState.STOPPED, "stop requested")
                    break
                if ready:  # else _launch said why
                    child.error = _exit_reason(child.exit_code)
                # A start that never got READY failed, whatever its exit code.
                clean = ready and child.exit_code == 0
                if clean:
                    child.set_state(ProcessState.STOPPED, child.error)
                else:
                    child.set_state(ProcessState.ERROR, child.error)
                    if ready:
                        await self._report_failure(child)
                if first and not ready:
                    tail = "\n".join(line.text for line in list(child.output)[-20:])
                    child.started.set_exception(
                        AgentStartError(f"agent {child.name} did not start: {child.error}\n{tail}")
                    )
                    break
                first = False
                policy = child.spec.restart
                if policy is RestartPolicy.NEVER or (clean and policy is RestartPolicy.ON_FAILURE):
                    log.info("agent %s: %s; not restarted (%s)", child.name, child.error, policy)
                    break
                if ran_s >= self.stable_after_s:
                    consecutive = 0
                if self.max_restarts is not None and consecutive >= self.max_restarts:
                    log.warning("agent %s: %s; giving up", child.name, child.error)
                    break
                consecutive += 1
                child.restarts += 1
                delay = min(
                    self.restart_backoff_s * 2 ** (consecutive - 1), self.max_restart_backoff_s
                )
                log.warning("agent %s: %s; restarting in %.1fs", child.name, child.error, delay)
                child.set_state(ProcessState.RESTARTING, f"restarting in {delay:.1f}s")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(child.stop_requested.wait(), delay)
                if child.stop_requested.is_set():
                    child.set_state(ProcessState.STOPPED, "stop requested")
                    break
        except BaseException as err:
            if child.proc is not None and child.proc.returncode is None:
                child.proc.kill()
            if not child.started.done():
                child.started.set_exception(AgentStartError(f"agent {child.name}: {err!r}"))
            child.set_state(ProcessState.ERROR, f"supervisor failed: {err!r}")
            raise
        finally:
            if not child.started.done():
                child.started.set_exception(AgentStartError(f"agent {child.name} was stopped"))

    async def _launch(self, child: _Child) -> bool:
        """Start one child process; True once it printed READY."""
        child.ready.clear()
        env = self._child_env(child)
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._command(child),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                limit=_LINE_LIMIT,
                cwd=child.spec.cwd,
                start_new_session=True,  # a terminal's Ctrl-C reaches the supervisor only
            )
        except OSError as err:
            child.error = f"cannot launch: {err}"
            return False
        child.proc = proc
        assert proc.stdout is not None and proc.stderr is not None
        child.pumps = (
            asyncio.create_task(self._pump(child, proc.stdout, ready=True)),
            asyncio.create_task(self._pump(child, proc.stderr, ready=False)),
        )
        ready = asyncio.create_task(child.ready.wait())
        exited = asyncio.create_task(proc.wait())
        stop = asyncio.create_task(child.stop_requested.wait())
        try:
            await asyncio.wait(
                {ready, exited, stop},
                timeout=self.ready_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            ready.cancel()
            exited.cancel()
            stop.cancel()
        if child.stop_requested.is_set():  # also when stop() came while launching
            await self._terminate(child, self._stop_grace(child))
            return False
        if child.ready.is_set() and proc.returncode is None:
            return True
        if proc.returncode is None:
            child.error = f"no READY line within {self.ready_timeout_s:g}s"
            await self._terminate(child, self.stop_grace_s)
        else:
            child.error = f"exited with code {proc.returncode} before READY"
        return False

    async def _exit_or_stop(self, child: _Child, proc: asyncio.subprocess.Process) -> None:
        """Wait until the process exits or a stop is requested, whichever comes first."""
        exited = asyncio.create_task(proc.wait())
        stop = asyncio.create_task(child.stop_requested.wait())
        try:
            await asyncio.wait({exited, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
            stop.cancel()

    def _stop_grace(self, child: _Child) -> float:
        return self.stop_grace_s if child.stop_grace_s is None else child.stop_grace_s

    async def _reap(self, child: _Child) -> None:
        """Collect the exit code and the last output of an exited child."""
        if child.proc is None:  # never launched (the executable could not be started)
            return
        child.exit_code = await child.proc.wait()
        if child.pumps:
            # Let the pipes drain; a grandchild holding them open must not hang us.
            _, pending = await asyncio.wait(child.pumps, timeout=2.0)
            for task in pending:
                task.cancel()
        log.info(
            "agent %s (pid %d) exited with code %s", child.name, child.proc.pid, child.exit_code
        )

    async def _pump(self, child: _Child, stream: asyncio.StreamReader, *, ready: bool) -> None:
        while True:
            try:
                raw = await stream.readline()
            except ValueError:  # a line longer than the limit: keep a piece of it
                raw = await stream.read(_LINE_LIMIT)
            if not raw:
                return
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            record = OutputLine(time.time(), "stdout" if ready else "stderr", line)
            child.output.append(record)
            for fn in self.on_output:
                try:
                    fn(child.name, record)
                except Exception:  # a broken listener must not stop draining the pipe
                    log.exception("an output listener failed for agent %s", child.name)
            if ready and not child.ready.is_set():
                fields = parse_ready_line(line)
                if fields is not None:
                    child.agent_id = fields["agent_id"]
                    child.endpoint = fields["endpoint"]
                    child.metrics_url = fields.get("metrics", "")
                    child.ready.set()
            if self._echo is not None:
                try:
                    self._echo(child.name, line)
                except Exception:  # a broken echo must not stop draining the pipe
                    log.exception("echoing output of agent %s failed", child.name)
                    self._echo = None

    async def _terminate(self, child: _Child, grace_s: float) -> None:
        proc = child.proc
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), grace_s)
        except TimeoutError:
            log.warning("agent %s did not stop within %.1fs; killing it", child.name, grace_s)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def _exit_reason(code: int | None) -> str:
    """How a child ended, as the registry shows it."""
    if code is not None and code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exited with code {code}"


def _echo_to_stderr(name: str, line: str) -> None:
    print(f"{name} | {line}", file=sys.stderr, flush=True)


__all__ = [
    "AGENT_TOKEN_TTL_S",
    "AgentSpec",
    "AgentStartError",
    "AgentSupervisor",
    "LineCallback",
    "OutputCallback",
    "OutputLine",
    "ProcessState",
    "ProcessStatus",
    "RestartPolicy",
    "StateCallback",
    "StateChange",
    "new_agent_id",
]

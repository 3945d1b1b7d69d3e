"""A whole distributed mesh on one machine: ``meshwright cluster up``.

What the compose file and the Kubernetes manifests deploy, as local processes: a
redis-server (AOF on, fsync on every write), registry, economy and workflow
replicas (``meshwright serve --services X``, two of each by default) sharing
that Redis and one Consul, the REST gateway alone in front of them, and agent
processes registered with both registry replicas. Every process finds the others
the way a deployment does: the services through Consul, the agents through the
registry replicas' addresses. Auth is on: the cluster writes a signing key pair
and tokens to its directory (``meshwright keys init``), gives each service the
public key and the service token (by file, never on a command line), and each
agent a token of its own.

Each process keeps its port across restarts (chosen free at start), so a replica
that is killed and restarted is the same address to everyone who knew it. A process
that exits unasked is restarted with capped backoff (as a Kubernetes Deployment
would); ``kill``, ``pause``/``resume`` and ``restart`` are the handles the chaos
suite uses. Output goes to one log file a process under ``<dir>/logs``;
``<dir>/cluster.json`` lists every process (pid, address, log).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from meshwright.agent.supervisor import AgentSpec, AgentSupervisor
from meshwright.mesh.auth import Role
from meshwright.mesh.security import DevCredentials

log = logging.getLogger(__name__)

SERVICE_KINDS = ("registry", "economy", "workflow")
DEFAULT_AGENTS = (
    ("analyst-1", "meshwright.agent.samples:analyst_agent"),
    ("analyst-2", "meshwright.agent.samples:analyst_agent"),
    ("analyst-3", "meshwright.agent.samples:analyst_agent"),
    ("sysinfo-1", "meshwright.agent.samples:sysinfo_agent"),
)
READY_TIMEOUT_S = 30.0
STOP_GRACE_S = 10.0
MAX_BACKOFF_S = 5.0
STABLE_AFTER_S = 30.0


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterConfig:
    """What to run."""

    directory: Path
    """Keys, tokens, Redis data, logs and cluster.json."""
    registry_url: str
    """The Consul every replica shares (``consul://host:8500``)."""
    store_url: str = ""
    """A Redis to share (``redis://host:6379/0``); empty: the cluster runs its own
    redis-server (from PATH) with its data under ``directory``."""
    replicas: Mapping[str, int] = field(
        default_factory=lambda: {"registry": 2, "economy": 2, "workflow": 2}
    )
    agents: Sequence[tuple[str, str]] = DEFAULT_AGENTS
    """(agent id, ``module:attr``) of each agent process."""
    host: str = "127.0.0.1"
    http_port: int = 8080
    """The gateway's port (0 picks one)."""
    workflow_lease_ttl_s: float = 10.0
    agent_lease_ttl_s: float = 10.0
    health_check_interval_s: float = 1.0
    """Interval of Consul's GRPC check of every service and agent."""
    restart: bool = True
    """Restart a process that exits unasked."""
    python: str = sys.executable
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment of every process."""
    serve_args: Sequence[str] = ()
    """Extra ``meshwright serve`` flags of every service process."""
    agent_args: Sequence[str] = ()
    """Extra ``meshwright agent run`` flags of every agent."""

    def __post_init__(self) -> None:
        scheme = self.registry_url.partition("://")[0]
        if scheme not in ("consul", "consuls"):
            raise ValueError(
                f"the cluster's replicas share their registry through Consul: --registry "
                f"must be consul://host:8500, not {self.registry_url!r}"
            )
        for kind, n in self.replicas.items():
            if kind not in SERVICE_KINDS:
                raise ValueError(f"unknown service {kind!r}; choose from {SERVICE_KINDS}")
            if n < 1:
                raise ValueError(f"{kind} needs at least one replica, not {n}")
        ids = [a for a, _ in self.agents]
        if len(set(ids)) != len(ids):
            raise ValueError(f"agent ids must differ: {ids}")


@dataclass(slots=True, kw_only=True)
class Member:
    """One process of the cluster (an agent's live state is the supervisor's)."""

    name: str
    kind: str
    port: int
    host: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0
    exits: list[int | None] = field(default_factory=list)
    started_at: float = 0.0
    paused: bool = False
    stopping: bool = False
    relaunch: asyncio.Event = field(default_factory=asyncio.Event)
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now; the process given it binds it soon after."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Cluster:
    """The processes of one cluster; ``async with Cluster(config) as c: ...``."""

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config
        self.directory = Path(config.directory)
        self.members: dict[str, Member] = {}
        self.agents: AgentSupervisor | None = None
        self.credentials: DevCredentials | None = None
        self.store_url = config.store_url
        self._watchers: list[asyncio.Task[None]] = []
        self._agent_logs: dict[str, Any] = {}
        self._closing = False

    async def __aenter__(self) -> Cluster:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- addresses ---------------------------------------------------------------

    def of(self, kind: str) -> list[Member]:
        """The members of one kind, in order."""
        return [m for m in self.members.values() if m.kind == kind]

    def targets(self, kind: str) -> str:
        """``a:1,b:2``: every replica of ``kind``, for a client's --target."""
        return ",".join(m.address for m in self.of(kind))

    @property
    def gateway_url(self) -> str:
        return f"http://{self.members['gateway'].address}"

    @property
    def redis(self) -> Member | None:
        return self.members.get("redis")

    def token(self, role: str) -> str:
        """The admin, client or service token (files in the directory)."""
        return (self.directory / "keys" / f"{role}.token").read_text().strip()

    def pid(self, name: str) -> int | None:
        """The pid of a member or an agent (by agent id)."""
        if name in self.members:
            return self.members[name].pid
        assert self.agents is not None
        return self.agents.status(name).pid

    # -- lifecycle ---------------------------------------------------------------

    async def start(self) -> None:
        """Keys, Redis, the services in dependency order (each healthy before the next),
        the gateway, the agents; raises (and stops what started) when one does not come up."""
        cfg = self.config
        (self.directory / "logs").mkdir(parents=True, exist_ok=True)
        self._refuse_a_running_cluster()
        keys = self.directory / "keys"
        self.credentials = creds = DevCredentials.ensure(keys)
        issuer = creds.issuer()
        creds.ensure_token(keys / "service.token", Role.SERVICE, "mesh", issuer=issuer)
        try:
            if not self.store_url:
                self._add_redis()
            for kind in SERVICE_KINDS:
                for i in range(1, cfg.replicas.get(kind, 2) + 1):
                    self._add_service(f"{kind}-{i}", kind, (kind,))
            self._add_service("gateway", "gateway", ("gateway",))
            # Redis, then registries (nothing finds anything before), then the rest.
            for group in (("redis",), ("registry",), ("economy", "workflow"), ("gateway",)):
                batch = [m for m in self.members.values() if m.kind in group]
                for m in batch:
                    await self._launch(m)
                await asyncio.gather(*(self._wait_ready(m) for m in batch))
            for m in self.members.values():
                self._watchers.append(asyncio.create_task(self._watch(m), name=f"watch-{m.name}"))
            self.agents = AgentSupervisor(
                self.targets("registry"),
                economy=self.targets("economy"),
                host=cfg.host,
                lease_ttl_s=cfg.agent_lease_ttl_s,
                max_restarts=1_000_000 if cfg.restart else 0,
                restart_backoff_s=0.2,
                max_restart_backoff_s=MAX_BACKOFF_S,
                stable_after_s=STABLE_AFTER_S,
                env={**cfg.env},
                issuer=issuer,
                auth_public_key=str(creds.public_key),
                echo=self._agent_output,
            )
            await asyncio.gather(
                *(
                    self.agents.start(
                        AgentSpec(
                            target=target,
                            name=agent_id,
                            agent_id=agent_id,
                            args=tuple(cfg.agent_args),
                        )
                    )
                    for agent_id, target in cfg.agents
                )
            )
            self.write_manifest()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Agents first (they drain and deregister), then the gateway, the workflow,
        economy and registry replicas, Redis last; each SIGTERM, SIGKILL past the grace."""
        self._closing = True
        if self.agents is not None:
            await self.agents.close()
        for group in (("gateway",), ("workflow",), ("economy",), ("registry",), ("redis",)):
            await asyncio.gather(
                *(self._terminate(m) for m in self.members.values() if m.kind in group)
            )
        for w in self._watchers:
            w.cancel()
        for w in self._watchers:
            with contextlib.suppress(asyncio.CancelledError):
                await w
        self._watchers.clear()
        for f in self._agent_logs.values():
            f.close()
        self._agent_logs.clear()
        with contextlib.suppress(FileNotFoundError):
            (self.directory / "cluster.json").unlink()

    # -- faults (the chaos suite's handles) --------------------------------------------

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to a member or an agent; one that dies is restarted by policy."""
        pid = self.pid(name)
        if pid is None:
            raise ProcessLookupError(f"{name} is not running")
        os.kill(pid, sig)

    def pause(self, name: str) -> None:
        """SIGSTOP: the process keeps its sockets and leases but answers nothing."""
        self.members[name].paused = True
        self.kill(name, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        """SIGCONT after ``pause``."""
        self.kill(name, signal.SIGCONT)
        self.members[name].paused = False

    async def restart(self, name: str, *, sig: int = signal.SIGTERM) -> None:
        """Stop a member with ``sig`` (SIGTERM: gracefully; SIGKILL: a crash) and start it
        again at once, on the same port and data; returns once it is ready again."""
        m = self.members[name]
        m.ready.clear()
        m.relaunch.set()
        if m.alive:
            assert m.proc is not None
            m.proc.send_signal(sig)
        await self.wait_ready(name)

    async def wait_ready(self, name: str, timeout: float = READY_TIMEOUT_S) -> None:
        """Until a member (after a restart: its new process) is ready."""
        async with asyncio.timeout(timeout):
            await self.members[name].ready.wait()

    # -- internals ---------------------------------------------------------------------

    def _refuse_a_running_cluster(self) -> None:
        manifest = self.directory / "cluster.json"
        try:
            running = json.loads(manifest.read_text())
        except (FileNotFoundError, ValueError):
            return
        owner = running.get("pid")
        if isinstance(owner, int) and _alive(owner) and owner != os.getpid():
            raise RuntimeError(
                f"a cluster (pid {owner}) is already running in {self.directory}; stop it "
                "first or pass another --dir"
            )

    def _add_redis(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "the cluster runs its own Redis: install redis-server (apt-get install -y "
                "redis-server), or pass --store redis://host:6379/0"
            )
        data = self.directory / "redis"
        data.mkdir(parents=True, exist_ok=True)
        port = free_port(self.config.host)
        # AOF with an fsync before every reply: a crashed Redis has lost no acknowledged
        # write (the ledger's and the workflows' alike).
        argv = [
            binary, "--port", str(port), "--bind", self.config.host, "--dir", str(data),
            "--appendonly", "yes", "--appendfsync", "always", "--save", "",
            "--protected-mode", "no",
        ]  # fmt: skip
        self.store_url = f"redis://{self.config.host}:{port}/0"
        self._add("redis", "redis", port, argv, {})

    def _add_service(self, name: str, kind: str, services: Sequence[str]) -> None:
        cfg = self.config
        assert self.credentials is not None
        port = free_port(cfg.host)
        argv = [
            cfg.python, "-m", "meshwright", "serve",
            "--services", ",".join(services),
            "--host", cfg.host,
            "--registry", cfg.registry_url,
            "--store", self.store_url,
            "--auth-public-key", str(self.credentials.public_key),
            "--health-check-interval", f"{cfg.health_check_interval_s}s",
            "--workflow-lease-ttl", f"{cfg.workflow_lease_ttl_s}s",
            "--deregister-after", "60s",
        ]  # fmt: skip
        if kind == "gateway":
            http = cfg.http_port if cfg.http_port else free_port(cfg.host)
            argv += ["--grpc-port", str(free_port(cfg.host)), "--http-port", str(http)]
            port = http
        else:
            argv += ["--grpc-port", str(port), "--no-gateway"]
        argv += list(cfg.serve_args)
        env = {"MESHWRIGHT_TOKEN_FILE": str(self.directory / "keys" / "service.token")}
        self._add(name, kind, port, argv, env)

    def _add(self, name: str, kind: str, port: int, argv: list[str], env: dict[str, str]) -> None:
        self.members[name] = Member(
            name=name,
            kind=kind,
            port=port,
            host=self.config.host,
            argv=argv,
            env=env,
            log_path=self.directory / "logs" / f"{name}.log",
        )

    def _env(self, m: Member) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("MESHWRIGHT_")
            or k in ("MESHWRIGHT_LOG_LEVEL", "MESHWRIGHT_LOG_FORMAT")
        }
        return {**env, **self.config.env, **m.env, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}

    async def _launch(self, m: Member) -> None:
        m.ready.clear()
        with m.log_path.open("ab") as out:
            out.write(f"== cluster: starting {m.name} (start {m.starts + 1})\n".encode())
            out.flush()
            # Its own session: a terminal's Ctrl-C reaches the cluster, which stops the
            # processes in order, and a signal sent to one process reaches it alone.
            m.proc = await asyncio.create_subprocess_exec(
                *m.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                env=self._env(m),
                start_new_session=True,
            )
        m.starts += 1
        m.started_at = time.monotonic()

    async def _wait_ready(self, m: Member, timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if not m.alive:
                raise RuntimeError(f"{m.name} exited at start:\n{_tail(m.log_path)}")
            if await _answers(m):
                m.ready.set()
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{m.name} was not ready in {timeout:g}s:\n{_tail(m.log_path)}")
            await asyncio.sleep(0.05)

    async def _watch(self, m: Member) -> None:
        """Restart ``m`` when it exits unasked (capped backoff; asked: at once)."""
        failures = 0
        while not self._closing:
            assert m.proc is not None
            code = await m.proc.wait()
            if self._closing or m.stopping:
                return
            m.exits.append(code)
            asked = m.relaunch.is_set()
            m.relaunch.clear()
            if not asked:
                if not self.config.restart:
                    log.warning("cluster: %s exited (%s); not restarted", m.name, _exit(code))
                    return
                stable = time.monotonic() - m.started_at > STABLE_AFTER_S
                failures = 1 if stable else failures + 1
                delay = min(0.2 * 2 ** (failures - 1), MAX_BACKOFF_S)
                log.warning(
                    "cluster: %s exited (%s); restarting in %.1fs", m.name, _exit(code), delay
                )
                await asyncio.sleep(delay)
            if self._closing:
                return
            await self._launch(m)
            try:
                await self._wait_ready(m)
            except RuntimeError as err:
                log.warning("cluster: %s", err)
                continue
            self.write_manifest()

    async def _terminate(self, m: Member) -> None:
        m.stopping = True
        proc = m.proc
        if proc is None or proc.returncode is not None:
            return
        if m.paused:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), STOP_GRACE_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    def _agent_output(self, name: str, line: str) -> None:
        f = self._agent_logs.get(name)
        if f is None:
            path = self.directory / "logs" / f"agent-{name}.log"
            f = self._agent_logs[name] = path.open("a", encoding="utf-8", buffering=1)
        f.write(line if line.endswith("\n") else line + "\n")

    def write_manifest(self) -> None:
        """``<dir>/cluster.json``: every process, its pid, address and log."""
        processes: list[dict[str, Any]] = [
            {
                "name": m.name,
                "kind": m.kind,
                "pid": m.pid,
                "address": m.address,
                "log": str(m.log_path),
                "starts": m.starts,
            }
            for m in self.members.values()
        ]
        if self.agents is not None:
            for s in self.agents.statuses():
                processes.append(
                    {
                        "name": s.name,
                        "kind": "agent",
                        "pid": s.pid,
                        "address": s.endpoint,
                        "log": str(self.directory / "logs" / f"agent-{s.name}.log"),
                        "starts": s.restarts + 1,
                    }
                )
        doc = {
            "pid": os.getpid(),
            "registry_url": self.config.registry_url,
            "store_url": self.store_url,
            "gateway": self.gateway_url if "gateway" in self.members else "",
            "targets": {k: self.targets(k) for k in SERVICE_KINDS},
            "keys": str(self.directory / "keys"),
            "processes": processes,
        }
        tmp = self.directory / "cluster.json.tmp"
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        tmp.replace(self.directory / "cluster.json")


async def _answers(m: Member) -> bool:
    """Whether a member answers its health check now."""
    try:
        if m.kind == "redis":
            reader, writer = await asyncio.wait_for(asyncio.open_connection(m.host, m.port), 1.0)
            try:
                writer.write(b"PING\r\n")
                await writer.drain()
                return (await asyncio.wait_for(reader.readline(), 1.0)).startswith(b"+PONG")
            finally:
                writer.close()
        if m.kind == "gateway":
            reader, writer = await asyncio.wait_for(asyncio.open_connection(m.host, m.port), 1.0)
            try:
                writer.write(f"GET /healthz HTTP/1.0\r\nHost: {m.address}\r\n\r\n".encode())
                await writer.drain()
                status = await asyncio.wait_for(reader.readline(), 1.0)
                return b" 200 " in status
            finally:
                writer.close()
        return await grpc_serving(m.address)
    except (OSError, TimeoutError):
        return False


async def grpc_serving(address: str, timeout: float = 1.0) -> bool:
    """Whether ``address`` answers grpc.health.v1 Check with SERVING."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=timeout)
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exit(code: int | None) -> str:
    if code is None:
        return "running"
    return f"signal {-code}" if code < 0 else f"exit code {code}"


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no output)"

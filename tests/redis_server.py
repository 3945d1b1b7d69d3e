"""A real redis-server for tests: started on a free port in a temp dir, stopped in finally.

``RedisServer`` is the helper (``restart()`` for AOF tests, ``kill()`` for a crash);
``redis_server`` (one per session) and ``redis_url`` (flushed before each test) are
the fixtures, registered for every tests dir by tests/conftest.py. A missing
redis-server fails the test with how to install it: never a skip.

Speaks RESP over a plain socket (PING, FLUSHALL) so that importing it does not
import redis.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 5.0


def redis_server_binary() -> str:
    """Path of redis-server; fails (never skips) when it is not installed."""
    found = shutil.which("redis-server") or (
        "/usr/bin/redis-server" if os.access("/usr/bin/redis-server", os.X_OK) else None
    )
    if found is None:
        pytest.fail(
            "redis-server is not installed: these tests need a real one "
            "(Debian/Ubuntu: apt-get install -y redis-server; .ci/run does this)",
            pytrace=False,
        )
    return found


def free_port() -> int:
    # Imported here: tests/conftest.py imports this module while it is being loaded.
    from tests.conftest import free_port

    return free_port()


def _command(port: int, command: bytes, *, timeout: float = 1.0) -> bytes:
    """Send one inline command, return the first reply line (e.g. b'+PONG')."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(command + b"\r\n")
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            reply += chunk
        return reply.strip()


class RedisServer:
    """One redis-server process on 127.0.0.1, its files in ``directory``."""

    def __init__(self, directory: Path, *, aof: bool = False, port: int | None = None) -> None:
        """``aof``: ``appendonly yes`` with ``appendfsync always`` (every acknowledged write
        is on disk); otherwise no persistence at all (``save ""``, ``appendonly no``)."""
        self.directory = Path(directory)
        self.aof = aof
        self.port = port or free_port()
        self._fixed_port = port is not None
        self.proc: subprocess.Popen[bytes] | None = None
        self.binary = redis_server_binary()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log_path(self) -> Path:
        return self.directory / "redis.log"

    def _write_config(self) -> Path:
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            "protected-mode no",
            "daemonize no",
            f'dir "{self.directory}"',
            f'logfile "{self.log_path}"',
            'save ""',
        ]
        if self.aof:
            lines += ["appendonly yes", "appendfsync always"]
        else:
            lines += ["appendonly no"]
        conf = self.directory / "redis.conf"
        conf.write_text("\n".join(lines) + "\n")
        return conf

    def start(self) -> None:
        """Start and wait until it answers PING (AOF loaded); a clash on a port picked
        here (not a fixed one) retries on another."""
        for _ in range(3):
            self.directory.mkdir(parents=True, exist_ok=True)
            conf = self._write_config()
            self.proc = subprocess.Popen(
                [self.binary, str(conf)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            if self._wait_ready():
                return
            self.stop()
            log = self._log_tail()
            if self._fixed_port or "Address already in use" not in log:
                raise RuntimeError(f"redis-server did not start on port {self.port}:\n{log}")
            self.port = free_port()
        raise RuntimeError("redis-server found no free port in 3 tries")

    def _wait_ready(self) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if _command(self.port, b"PING") == b"+PONG":
                    return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it is still there after a few seconds."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed beyond what is on disk already."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)

    def restart(self) -> None:
        """Stop (if running) and start again on the same port and directory."""
        self.stop()
        self._fixed_port = True
        self.start()

    def flushall(self) -> None:
        reply = _command(self.port, b"FLUSHALL")
        if reply != b"+OK":
            raise RuntimeError(f"FLUSHALL answered {reply!r}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server (no persistence) for the session."""
    with tempfile.TemporaryDirectory(prefix="mw-redis-") as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """URL of the session's redis-server, emptied for this test."""
    if not redis_server.alive():
        pytest.fail(f"the session's redis-server died:\n{redis_server._log_tail()}")
    redis_server.flushall()
    return redis_server.url

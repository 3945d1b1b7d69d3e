"""``python -m meshwright.agent run``: loading targets, the READY line, flags from env."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from meshwright.agent import Agent
from meshwright.agent.cli import load_agent, main, parse_ready_line
from meshwright.agent.samples import analyst_agent, sysinfo_agent
from meshwright.registry.v1 import registry_pb2
from tests.agent.conftest import Mesh
from tests.support_auth import NO_AUTH_ENV

pytestmark = pytest.mark.timeout(20)


def make() -> Agent:
    return sysinfo_agent


def test_load_agent() -> None:
    assert load_agent("meshwright.agent.samples:analyst_agent") is analyst_agent
    assert load_agent("tests.agent.test_cli:make") is sysinfo_agent  # a factory works too
    with pytest.raises(ValueError, match="MODULE:ATTR"):
        load_agent("meshwright.agent.samples")
    with pytest.raises(TypeError, match="not a meshwright.agent.Agent"):
        load_agent("meshwright.agent.samples:VERDICTS")
    with pytest.raises(AttributeError):
        load_agent("meshwright.agent.samples:nobody")


def test_parse_ready_line() -> None:
    assert parse_ready_line("READY agent_id=a-1 endpoint=127.0.0.1:5000") == {
        "agent_id": "a-1",
        "endpoint": "127.0.0.1:5000",
    }
    assert parse_ready_line("READY but not really") is None
    assert parse_ready_line("INFO registered") is None


def test_usage_errors(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("MESHWRIGHT_REGISTRY", raising=False)
    assert main(["run", "meshwright.agent.samples:sysinfo_agent"]) == 2
    assert "--registry" in capsys.readouterr().err
    assert main(["run", "nowhere:agent", "--registry", "127.0.0.1:1"]) == 2
    assert "cannot load nowhere:agent" in capsys.readouterr().err


async def test_env_registry_ready_line_and_stdin_eof_stop(mesh: Mesh) -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "meshwright.agent",
        "run",
        "meshwright.agent.samples:sysinfo_agent",
        "--agent-id",
        "cli-sysinfo",
        "--stop-on-stdin-eof",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={
            **os.environ,
            **NO_AUTH_ENV,
            "MESHWRIGHT_REGISTRY": mesh.address,
            "MESHWRIGHT_LEASE_TTL_S": "2",
        },
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 10)).decode()
        fields = parse_ready_line(line)
        assert fields is not None and fields["agent_id"] == "cli-sysinfo"
        agent = await mesh.agent("cli-sysinfo")
        assert agent.state == registry_pb2.AGENT_STATE_ACTIVE
        assert agent.endpoint == fields["endpoint"]
        assert agent.lease_ttl.seconds == 2
        # The supervisor going away closes stdin: the agent stops cleanly on its own.
        proc.stdin.close()
        assert await asyncio.wait_for(proc.wait(), 10) == 0
        assert await mesh.state("cli-sysinfo") == registry_pb2.AGENT_STATE_STOPPED  # deregistered
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

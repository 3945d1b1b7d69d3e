"""`meshwright agents start|stop|restart|scale|delete|logs|status` against a real `up`,
with an agents directory: the CLI as a user types it, real processes all the way."""

from __future__ import annotations

import asyncio
import re
import textwrap
from pathlib import Path

import pytest

from tests.e2e._proc import Running, cli_env, meshwright

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(120)]

ROOT = str(Path(__file__).resolve().parents[2])


def _agents_dir(tmp_path: Path) -> Path:
    root = tmp_path / "agents"
    (root / "greeter").mkdir(parents=True)
    (root / "greeter" / "agent.toml").write_text(
        'module = "greeter_agent:agent"\nreplicas = 2\nrestart = "always"\n'
        '[env]\nGREETING = "hello from the package"\n'
    )
    (root / "greeter" / "greeter_agent.py").write_text(
        textwrap.dedent(
            """
            import os
            from meshwright.agent import Agent

            agent = Agent("greeter", description="says hello")
            print(os.environ["GREETING"], flush=True)

            @agent.skill("greet.hello", description="a greeting")
            async def hello(input, ctx):
                return {"text": "hello " + str(input.get("name", "world"))}
            """
        )
    )
    (root / "_template").mkdir()  # skipped, like the seed's _template
    (root / "_template" / "agent.toml").write_text('module = "nothing:here"\n')
    return root


async def test_agents_cli_against_a_running_up(tmp_path: Path) -> None:
    env = cli_env(tmp_path / "config")
    up = await Running.start(
        "up", "--grpc-port", "0", "--http-port", "0", "--agents", "1",
        "--agents-dir", str(_agents_dir(tmp_path)), env=env,
    )  # fmt: skip
    try:
        await up.wait_for("ready; Ctrl-C stops the mesh", timeout=60)
        target = (await up.wait_for(r"gRPC\s+(127\.0\.0\.1:\d+)")).group(1)
        t = ("--target", target)

        rc, out = await meshwright("agents", "status", *t, env=env)
        assert rc == 0, out
        assert re.search(r"greeter .*greeter_agent:agent .* 2/2", out), out
        assert re.search(r"sysinfo .* 1/1", out), out
        assert "_template" not in out and "nothing:here" not in out

        rc, out = await meshwright("agents", "logs", "greeter", "--replica", "1", *t, env=env)
        assert rc == 0 and "hello from the package" in out, out

        rc, out = await meshwright(
            "agents", "start", "echo", "--module", "tests.agent._managed_agent:agent",
            "--app-dir", ROOT, "--restart", "never", *t, env=env,
        )  # fmt: skip
        assert rc == 0, out
        assert "1/1 running, restart never" in out, out

        rc, out = await meshwright("agents", "start", "bad", "--module", "no_such:thing", *t,
                                   env=env)  # fmt: skip
        assert rc == 1 and "spec.module" in out and "No module named 'no_such'" in out, out

        rc, out = await meshwright("agents", "scale", "echo", "2", *t, env=env)
        assert rc == 0 and "2/2 running" in out, out

        # Follow the logs while replica 1 restarts: its new READY line arrives live.
        follow = await Running.start("agents", "logs", "echo", "-f", "--tail", "0", *t, env=env)
        try:
            await asyncio.sleep(1.0)
            rc, out = await meshwright("agents", "restart", "echo", "--replica", "1", *t, env=env)
            assert rc == 0, out
            await follow.wait_for(r"\[1\] READY agent_id=echo-1-", timeout=30)
        finally:
            await follow.stop()

        rc, out = await meshwright("agents", "status", "echo", "--history", *t, env=env)
        assert rc == 0, out
        assert "[1] running -> stopped: stop requested" in out, out
        assert re.search(r"tasks 0 finished, 0 failed, 0 running", out), out

        rc, out = await meshwright("agents", "stop", "echo", "--grace", "5", *t, env=env)
        assert rc == 0 and "0/2 running" in out, out
        rc, out = await meshwright("agents", "delete", "echo", *t, env=env)
        assert rc == 0 and "deleted echo" in out, out
        rc, out = await meshwright("agents", "status", "echo", *t, env=env)
        assert rc == 1 and "MANAGED_AGENT_NOT_FOUND" in out, out

        # The client token may not drive the manager.
        rc, out = await meshwright("agents", "status", "--as", "client", *t, env=env)
        assert rc == 1 and "PERMISSION_DENIED" in out, out
        # Registry listing (no subcommand) still works and shows the managed agents.
        rc, out = await meshwright("agents", *t, env=env)
        assert rc == 0 and "greeter-1-" in out and "ACTIVE" in out, out
    finally:
        rc = await up.stop()
    assert rc == 0, up.output

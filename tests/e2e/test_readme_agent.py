"""The README's "Writing an agent" example, as a new user runs it: the code saved as
``mymodule.py``, then ``meshwright agent run mymodule:agent ...`` in that directory,
with no PYTHONPATH. Only the placeholders change: the registry's address (the test's
mesh listens on a free port), the token T and the key FILE."""

from __future__ import annotations

import asyncio
import re
import shlex
import sys
from pathlib import Path

from google.protobuf import struct_pb2

from meshwright.agent.v1 import agent_pb2
from meshwright.mesh.client import ChannelPool
from tests.e2e._proc import Running, cli_env
from tests.support_auth import test_keys

README = Path(__file__).resolve().parents[2] / "README.md"
CONSOLE_SCRIPT = str(Path(sys.executable).parent / "meshwright")


def _example() -> tuple[str, str]:
    """The example's code block and its run command, from the README."""
    text = README.read_text()
    section = text.split("## Writing an agent", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S)
    command = re.search(r"`(meshwright agent run mymodule:agent[^`]*)`", section, re.S)
    assert code and command, "the README's agent example moved"
    return code.group(1), " ".join(command.group(1).split())


async def test_the_readme_agent_runs_from_its_own_directory(tmp_path: Path) -> None:
    code, command = _example()
    app = tmp_path / "app"
    app.mkdir()
    (app / "mymodule.py").write_text(code)
    keys = test_keys()
    env = cli_env(tmp_path / "config")
    env.pop("PYTHONPATH", None)
    mesh = await Running.start(
        "serve", "--grpc-port", "0", "--no-gateway",
        "--auth-public-key", str(keys.public_key_file),
        "--auth-private-key", str(keys.private_key_file),
        env=env,
    )  # fmt: skip
    agent = None
    try:
        address = (await mesh.wait_for(r"serving .* on (127\.0\.0\.1:\d+)")).group(1)
        argv = shlex.split(
            command.replace("localhost:50051", address)
            .replace("--token T", f"--token {keys.token('agent', 'text-1')}")
            .replace("FILE", str(keys.public_key_file))
        )
        assert argv[:3] == ["meshwright", "agent", "run"]
        # The console script, as the README says: unlike `python -m`, it does not put the
        # current directory on sys.path by itself.
        proc = await asyncio.create_subprocess_exec(
            CONSOLE_SCRIPT, *argv[1:],
            cwd=app, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        agent = Running(proc)
        endpoint = (await agent.wait_for(r"READY agent_id=text-1 endpoint=(\S+)")).group(1)
        # The skill is paid: the mesh calls it (a service token) as a workflow would.
        pool = ChannelPool(token=keys.token("service", "mesh"))
        try:
            served = pool.client(endpoint, agent_pb2.DESCRIPTOR.services_by_name["AgentService"])
            request = agent_pb2.ExecuteTaskRequest(task_id="t-1", skill="text.reverse")
            request.input.update({"text": "hello"})
            reply = await served.call("ExecuteTask", request)
            assert reply.task.output == struct_pb2.Struct(fields={"text": _s("olleh")})
        finally:
            await pool.close()
    finally:
        # Both stopped before either exit code is judged: a failed assert must not leave
        # the mesh running.
        agent_code = await agent.stop() if agent is not None else 0
        mesh_code = await mesh.stop()
        assert agent is None or agent_code == 0, agent.output
        assert mesh_code == 0, mesh.output


async def test_an_agent_module_loads_from_the_app_dir_given(tmp_path: Path) -> None:
    """--app-dir names another directory; a module found in neither is a clear error."""
    app = tmp_path / "elsewhere"
    app.mkdir()
    (app / "othermod.py").write_text("x = 1\n")
    env = cli_env(tmp_path / "config")
    for args, expected in (
        (("othermod:x",), "No module named 'othermod'"),
        (("othermod:x", "--app-dir", str(app)), "is a int, not a meshwright.agent.Agent"),
        (("othermod:x", "--app-dir", str(tmp_path / "missing")), "is not a directory"),
    ):
        proc = await asyncio.create_subprocess_exec(
            CONSOLE_SCRIPT, "agent", "run", *args,
            "--registry", "127.0.0.1:1", "--insecure-no-auth",
            cwd=tmp_path, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 2, out
        assert expected in out.decode(), out


def _s(value: str) -> struct_pb2.Value:
    return struct_pb2.Value(string_value=value)

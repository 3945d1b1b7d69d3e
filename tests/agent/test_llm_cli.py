"""``meshwright agent llm`` and ``meshwright agent run meshwright.agent.llm:llm_agent``:
real agent processes against the Ollama double and a real registry; flags and errors."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from meshwright.agent import SERVICE
from meshwright.agent._struct import dict_to_struct, struct_to_dict
from meshwright.agent.cli import main, parse_ready_line
from meshwright.agent.v1 import agent_pb2
from meshwright.mesh import RemoteServiceClient
from tests.agent.conftest import Mesh
from tests.conftest import eventually
from tests.e2e._proc import cli_env, meshwright
from tests.ollama_double import OllamaDouble
from tests.support_auth import NO_AUTH_ENV

pytestmark = pytest.mark.timeout(60)

QUICK = ["--breaker-failures", "1", "--breaker-open", "0.3", "--probe-interval", "0.05"]


def _log(path: Path) -> str:
    return path.read_text(errors="replace")


@contextlib.asynccontextmanager
async def agent_process(
    args: list[str], env: dict[str, str], stderr: Path
) -> AsyncIterator[tuple[asyncio.subprocess.Process, dict[str, str]]]:
    """An agent process started with ``args``; yields it with its READY fields."""
    with stderr.open("wb") as err:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *args,
            "--stop-on-stdin-eof",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=err,
            env={**os.environ, **NO_AUTH_ENV, **env},
        )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 20)).decode()
        fields = parse_ready_line(line)
        assert fields is not None, (line, _log(stderr))
        yield proc, fields
        assert proc.stdin is not None
        proc.stdin.close()
        assert await asyncio.wait_for(proc.wait(), 15) == 0, _log(stderr)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def chat(endpoint: str, prompt: str) -> tuple[list[str], dict[str, object]]:
    """Progress messages and output of one streamed ``llm.chat`` on ``endpoint``."""
    request = agent_pb2.StreamTaskRequest(task_id=uuid.uuid4().hex, skill="llm.chat")
    dict_to_struct({"prompt": prompt}, request.input)
    texts: list[str] = []
    async with grpc.aio.insecure_channel(endpoint) as channel:
        client = RemoteServiceClient(channel, SERVICE)
        async for item in client.stream("StreamTask", request, timeout=10):
            if item.final:
                assert item.task.status.state == agent_pb2.TASK_STATE_COMPLETED
                return texts, struct_to_dict(item.task.output)
            if item.status_update.message:
                texts.append(item.status_update.message)
    raise AssertionError("the stream ended without a final message")


async def test_agent_llm_serves_streams_degrades_and_recovers(mesh: Mesh, tmp_path: Path) -> None:
    reply = " ".join(f"t{i}" for i in range(12))
    async with OllamaDouble(reply=reply, api_key="sk-cli-test") as double:
        args = [
            *("-m", "meshwright", "agent", "llm"),
            *("--llm-host", double.url, "--model", "llama3.2"),
            *("--price", "4", "--price-chat", "9", "--progress-every-tokens", "4"),
            *QUICK,
            *("--registry", mesh.address, "--agent-id", "cli-llm"),
        ]
        env = {
            "MESHWRIGHT_LLM_API_KEY": "sk-cli-test",
            "MESHWRIGHT_LLM_TIMEOUT_S": "7",
            "MESHWRIGHT_LLM_FIRST_TOKEN_TIMEOUT_S": "3",
        }
        stderr = tmp_path / "agent.log"
        async with agent_process(args, env, stderr) as (_, fields):
            registered = await mesh.agent("cli-llm")
            prices = {s.id: s.price for s in registered.card.skills}
            assert prices == {"llm.chat": 9, "llm.summarize": 4, "llm.classify": 4}
            assert registered.card.metadata["llm.model"] == "llama3.2"

            texts, out = await chat(fields["endpoint"], "hello")
            assert out["text"] == reply and out["degraded"] is False
            assert texts and texts[-1] == reply and len(texts) <= 3

            await double.down()
            _, out = await chat(fields["endpoint"], "hello")
            assert out["degraded"] is True and out["degraded_reason"] == "unreachable"

            async def detail() -> str:
                return (await mesh.agent("cli-llm")).health_detail

            async def cleared() -> bool:
                return await detail() == ""

            assert (await eventually(detail)).startswith("DEGRADED: model server unreachable")
            # The listing shows it, the agent still ACTIVE (offered work).
            rc, listing = await meshwright(
                "agents", "--target", mesh.address, env=cli_env(tmp_path / "config")
            )
            line = next(x for x in listing.splitlines() if x.startswith("cli-llm"))
            assert rc == 0 and "ACTIVE" in line and "DEGRADED: model server unreachable" in line
            await double.up()
            await eventually(cleared)
            _, out = await chat(fields["endpoint"], "hello")
            assert out["degraded"] is False
        assert "sk-cli-test" not in _log(stderr)  # the key is never logged


async def test_agent_run_llm_agent_is_configured_by_the_environment(
    mesh: Mesh, tmp_path: Path
) -> None:
    async with OllamaDouble(models=["llama3.2"]) as double:
        args = [
            *("-m", "meshwright.agent", "run", "meshwright.agent.llm:llm_agent"),
            *("--registry", mesh.address, "--agent-id", "env-llm"),
        ]
        env = {"MESHWRIGHT_LLM_HOST": double.url, "MESHWRIGHT_LLM_MODEL": "qwen2.5:0.5b"}
        async with agent_process(args, env, tmp_path / "agent.log") as (_, fields):
            registered = await mesh.agent("env-llm")
            assert registered.card.metadata["llm.model"] == "qwen2.5:0.5b"

            async def missing() -> bool:
                detail = (await mesh.agent("env-llm")).health_detail
                return detail.startswith("DEGRADED: model missing on the server")

            await eventually(missing)  # found by the first probe, before any task
            _, out = await chat(fields["endpoint"], "hello")
            assert out["degraded"] is True and out["degraded_reason"] in (
                "model_missing",
                "breaker_open",
            )


def test_bad_settings_exit_2_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["--registry", "127.0.0.1:1", "--insecure-no-auth"]
    assert main(["llm", "--timeout", "0", *base]) == 2
    assert "invalid LLM configuration: timeout_s: must be > 0" in capsys.readouterr().err
    assert main(["llm", "--backend", "openai", "--llm-host", "localhost:8000", *base]) == 2
    assert "host: 'localhost:8000' is not an http(s) URL" in capsys.readouterr().err
    monkeypatch.setenv("MESHWRIGHT_LLM_MAX_TOKENS", "many")
    assert main(["llm", *base]) == 2
    assert "MESHWRIGHT_LLM_MAX_TOKENS: 'many' is not an integer" in capsys.readouterr().err
    assert main(["run", "meshwright.agent.llm:llm_agent", *base]) == 2
    assert "cannot load meshwright.agent.llm:llm_agent" in capsys.readouterr().err


def test_there_is_no_api_key_flag(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["llm", "--api-key", "sk-visible-to-ps", "--registry", "127.0.0.1:1"])
    assert caught.value.code == 2
    assert "unrecognized arguments: --api-key" in capsys.readouterr().err

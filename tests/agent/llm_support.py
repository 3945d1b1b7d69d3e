"""Running the LLM agent in-process against a model server, and behaviour checks that
hold for the Ollama double and for a real Ollama alike (the contract suite runs them
against ``OLLAMA_HOST``)."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc

from meshwright.agent import SERVICE, AgentRuntime
from meshwright.agent._struct import dict_to_struct, struct_to_dict
from meshwright.agent.llm import LlmAgent, LlmConfig, build_llm_agent
from meshwright.agent.v1 import agent_pb2
from meshwright.mesh import RemoteServiceClient
from tests.conftest import free_port

COMPLETED = agent_pb2.TASK_STATE_COMPLETED
REJECTED = agent_pb2.TASK_STATE_REJECTED

TEXT = (
    "The harbour city of Valmere grew rich on the spice trade. "
    "Spice ships from the south unloaded pepper and cinnamon at the harbour every week. "
    "A fire in the old market destroyed many warehouses in the winter of 1721. "
    "After the fire, the spice merchants rebuilt the harbour warehouses in stone. "
    "Today tourists visit the stone warehouses and buy spice in the harbour market."
)
"""A text whose topic words (harbour, spice, warehouses) pick the extractive summary."""


@dataclass
class Running:
    """An LLM agent serving in-process, and a client of its AgentService."""

    agent: LlmAgent
    runtime: AgentRuntime
    client: RemoteServiceClient

    @property
    def guard(self) -> Any:
        return self.agent.service.guard

    async def execute(
        self, skill: str, input: dict[str, Any], *, timeout: float = 10.0
    ) -> agent_pb2.Task:
        request = agent_pb2.ExecuteTaskRequest(task_id=uuid.uuid4().hex, skill=skill)
        dict_to_struct(input, request.input)
        reply = await self.client.call("ExecuteTask", request, timeout=timeout)
        return reply.task

    async def run(
        self, skill: str, input: dict[str, Any], *, timeout: float = 10.0
    ) -> dict[str, Any]:
        """The output of a task that must complete."""
        task = await self.execute(skill, input, timeout=timeout)
        assert task.status.state == COMPLETED, task.status
        return struct_to_dict(task.output)

    async def stream(
        self, skill: str, input: dict[str, Any], *, timeout: float = 30.0
    ) -> tuple[list[agent_pb2.TaskStatus], agent_pb2.Task]:
        """Every status update of a streamed task and the final task."""
        request = agent_pb2.StreamTaskRequest(task_id=uuid.uuid4().hex, skill=skill)
        dict_to_struct(input, request.input)
        updates: list[agent_pb2.TaskStatus] = []
        final: agent_pb2.Task | None = None
        async for item in self.client.stream("StreamTask", request, timeout=timeout):
            if item.HasField("status_update") and not item.final:
                updates.append(item.status_update)
            if item.final:
                final = item.task
        assert final is not None
        return updates, final

    def metric(self, name: str, **labels: str) -> float | None:
        return self.runtime.metrics.registry.get_sample_value(name, labels)


@contextlib.asynccontextmanager
async def llm_running(
    registry: str | None, config: LlmConfig, **options: Any
) -> AsyncIterator[Running]:
    """The LLM agent for ``config`` serving (and registered when ``registry``), until exit."""
    agent = build_llm_agent(config)
    options.setdefault("lease_ttl_s", 1.0)
    runtime = await agent.start(registry, insecure_no_auth=True, **options)
    channel = grpc.aio.insecure_channel(runtime.address)
    try:
        yield Running(agent, runtime, RemoteServiceClient(channel, SERVICE))
    finally:
        await channel.close()
        await runtime.stop()


# -- behaviour that holds for any working server ------------------------------------


async def check_chat_streams_progress(running: Running) -> None:
    """A normal answer: streamed as progress (text so far, growing), not degraded."""
    updates, task = await running.stream(
        "llm.chat",
        {"prompt": "Count from one to twenty in words, separated by spaces."},
    )
    assert task.status.state == COMPLETED, task.status
    out = struct_to_dict(task.output)
    assert out["degraded"] is False and "degraded_reason" not in out
    assert out["text"].strip() and out["tokens"] >= 1
    assert out["model"] == running.agent.service.config.model
    texts = [u.message for u in updates if u.message]
    assert texts, "no progress reported while the answer streamed"
    assert texts[-1] == out["text"]  # the last report is the whole answer
    for earlier, later in zip(texts, texts[1:], strict=False):
        assert later.startswith(earlier) and len(later) > len(earlier)


async def check_summarize_and_classify(running: Running) -> None:
    summary = await running.run("llm.summarize", {"text": TEXT, "max_sentences": 2})
    assert summary["degraded"] is False and summary["summary"].strip()
    labels = ["history", "cooking", "sports"]
    got = await running.run("llm.classify", {"text": TEXT, "labels": labels})
    if got["degraded"]:  # a real model may answer something else: then it says so
        assert got["degraded_reason"] == "unclear_answer"
    assert got["label"] in labels
    assert sorted(got["scores"]) == sorted(labels)


async def check_missing_model_degrades(running: Running) -> None:
    """``running`` serves a model the server lacks: a degraded answer that says so."""
    out = await running.run("llm.summarize", {"text": TEXT, "max_sentences": 2})
    assert out["degraded"] is True and out["degraded_reason"] == "model_missing"
    assert out["summary"]  # the extractive fallback
    assert running.guard.degraded_reason == "model_missing"


async def check_unreachable_degrades_in_time(running: Running) -> None:
    """``running`` points at a port nobody listens on: the fallback answers, fast."""
    started = time.monotonic()
    out = await running.run("llm.chat", {"prompt": "hello"}, timeout=5)
    assert time.monotonic() - started < 4
    assert out["degraded"] is True and out["degraded_reason"] in ("unreachable", "breaker_open")
    assert out["text"].startswith("[degraded]")


def free_url() -> str:
    """A URL where nothing listens (a port just freed)."""
    return f"http://127.0.0.1:{free_port()}"

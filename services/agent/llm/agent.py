"""The LLM sample agent: ``llm.chat``, ``llm.summarize``, ``llm.classify``.

Serve it with ``meshwright agent llm --registry HOST:PORT`` (flags and env in
``meshwright.agent.llm.config``) or ``meshwright agent run
meshwright.agent.llm:llm_agent`` (env only). Answers stream as task progress
(the text so far, batched). When the model cannot answer — server down, too
slow for the deadline, model missing, breaker open — the skills answer from
``meshwright.agent.llm.fallback`` with ``"degraded": true`` and a
``"degraded_reason"``, and the agent reports a ``DEGRADED: ...`` health detail
to the registry until the server answers again.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from meshwright.agent.agent import Agent
from meshwright.agent.context import TaskContext
from meshwright.agent.errors import TaskRejected
from meshwright.agent.llm import fallback
from meshwright.agent.llm._model import (
    DESCRIPTIONS,
    UNCLEAR,
    Answer,
    Message,
    ModelBackend,
    complete,
)
from meshwright.agent.llm.config import LlmConfig
from meshwright.agent.llm.guard import Degraded, ModelGuard
from meshwright.agent.runtime import AgentRuntime

log = logging.getLogger(__name__)

ROLES = ("system", "user", "assistant")
MAX_MESSAGES = 200
MAX_SENTENCES = 20
MAX_LABELS = 50
MAX_LABEL_CHARS = 100


def make_backend(config: LlmConfig) -> ModelBackend:
    """The backend ``config.backend`` names (imports its client only now)."""
    if config.backend == "ollama":
        from meshwright.agent.llm._ollama import OllamaBackend

        return OllamaBackend(config)
    from meshwright.agent.llm._openai import OpenAIBackend

    return OpenAIBackend(config)


def reserve_s(remaining: float) -> float:
    """Time kept back from a deadline to build and send the fallback answer."""
    return min(1.0, max(0.05, 0.1 * remaining))


class LlmService:
    """What the skills share: the config, the guarded backend, and the answer loop."""

    def __init__(
        self, config: LlmConfig, backend: Callable[[], ModelBackend] | None = None
    ) -> None:
        self.config = config
        self.guard = ModelGuard(config, backend or (lambda: make_backend(config)))

    def budget_s(self, ctx: TaskContext) -> float:
        """Seconds a model call may take for this task: the configured timeout, cut to
        what the task's deadline leaves after the fallback's reserve."""
        remaining = ctx.time_remaining()
        if remaining is None:
            return self.config.timeout_s
        return min(self.config.timeout_s, remaining - reserve_s(remaining))

    async def answer(self, ctx: TaskContext, messages: list[Message]) -> Answer:
        """The model's answer, streamed as progress; ``Degraded`` when there is none."""
        config = self.config
        budget = self.budget_s(ctx)

        async def report(text: str, tokens: int) -> None:
            await ctx.progress(text, min(0.99, tokens / config.max_tokens))

        async def call(backend: ModelBackend) -> Answer:
            return await complete(
                backend,
                messages,
                max_tokens=config.max_tokens,
                first_token_timeout_s=config.first_token_timeout_s,
                timeout_s=config.timeout_s,
                budget_s=budget,
                on_text=report,
                every_tokens=config.progress_every_tokens,
                every_s=config.progress_interval_s,
            )

        return await self.guard.call(call, budget)

    def model_fields(self, answer: Answer) -> dict[str, Any]:
        return {
            "model": self.config.model,
            "backend": self.config.backend,
            "tokens": answer.tokens,
            "done_reason": answer.done_reason,
            "degraded": False,
        }

    def degraded_fields(self, skill: str, d: Degraded) -> dict[str, Any]:
        self.guard.count_fallback(skill, d.reason)
        return {
            "model": self.config.model,
            "backend": self.config.backend,
            "degraded": True,
            "degraded_reason": d.reason,
            "degraded_detail": d.message,
        }

    async def started(self, runtime: AgentRuntime) -> None:
        log.info(
            "LLM agent on %s %s at %s (timeout %gs, first token %gs)",
            self.config.backend,
            self.config.model,
            self.config.host,
            self.config.timeout_s,
            self.config.first_token_timeout_s,
        )
        self.guard.attach(runtime.metrics.registry, runtime.report_health_detail)

    async def stopped(self, runtime: AgentRuntime) -> None:
        await self.guard.close()


# -- input --------------------------------------------------------------------------


def _text(input: dict[str, Any], ctx: TaskContext, limit: int) -> str:
    """``input.text``, else the text of upstream outputs, at most ``limit`` characters."""
    text = input.get("text")
    if text is None:
        parts = [
            str(out["text"])
            for _, out in sorted(ctx.upstream.items())
            if isinstance(out.get("text"), str)
        ]
        text = "\n\n".join(parts) if parts else None
    if not isinstance(text, str) or not text.strip():
        raise TaskRejected("input.text (a non-empty string) is required")
    if len(text) > limit:
        raise TaskRejected(f"input.text has {len(text)} characters; at most {limit}")
    return text


def _messages(input: dict[str, Any], limit: int) -> list[Message]:
    messages, prompt = input.get("messages"), input.get("prompt")
    if (messages is None) == (prompt is None):
        raise TaskRejected(
            "input needs either messages (a list of {role, content}) or prompt (a string)"
        )
    if prompt is not None:
        if not isinstance(prompt, str) or not prompt.strip():
            raise TaskRejected("input.prompt must be a non-empty string")
        system = input.get("system")
        if system is not None and not isinstance(system, str):
            raise TaskRejected("input.system must be a string")
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": "user", "content": prompt}
        ]
    if not isinstance(messages, list) or not 1 <= len(messages) <= MAX_MESSAGES:
        raise TaskRejected(f"input.messages must be a list of 1 to {MAX_MESSAGES} messages")
    out: list[Message] = []
    for i, m in enumerate(messages):
        if (
            not isinstance(m, dict)
            or m.get("role") not in ROLES
            or not isinstance(m.get("content"), str)
        ):
            raise TaskRejected(
                f"input.messages[{i}] must be {{role: {'|'.join(ROLES)}, content: string}}"
            )
        out.append({"role": str(m["role"]), "content": str(m["content"])})
    total = sum(len(m["content"]) for m in out)
    if total > limit:
        raise TaskRejected(f"the messages have {total} characters; at most {limit}")
    return out


def _int(input: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = input.get(name, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON numbers arrive as floats through a Struct
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise TaskRejected(f"input.{name} must be an integer from {low} to {high}")
    return value


def _labels(input: dict[str, Any]) -> tuple[list[str], dict[str, list[str]]]:
    labels = input.get("labels")
    if (
        not isinstance(labels, list)
        or not 2 <= len(labels) <= MAX_LABELS
        or not all(isinstance(x, str) and 0 < len(x.strip()) <= MAX_LABEL_CHARS for x in labels)
    ):
        raise TaskRejected(
            f"input.labels must be a list of 2 to {MAX_LABELS} non-empty strings of at most "
            f"{MAX_LABEL_CHARS} characters"
        )
    labels = [x.strip() for x in labels]
    if len({x.lower() for x in labels}) != len(labels):
        raise TaskRejected("input.labels must not repeat a label")
    keywords = input.get("keywords") or {}
    if not isinstance(keywords, dict) or not all(
        k in labels and isinstance(v, list) and all(isinstance(w, str) for w in v)
        for k, v in keywords.items()
    ):
        raise TaskRejected("input.keywords must map labels to lists of strings")
    return labels, keywords


def pick_label(answer: str, labels: list[str]) -> str | None:
    """The label a model's answer names: the whole answer, else the first label in it."""
    said = answer.strip().strip("\"'`.:;!* \n").lower()
    for label in labels:
        if said == label.lower():
            return label
    found = [
        (m.start(), label)
        for label in labels
        if (m := re.search(rf"(?<!\w){re.escape(label.lower())}(?!\w)", said)) is not None
    ]
    return min(found)[1] if found else None


# -- the agent ----------------------------------------------------------------------


class LlmAgent(Agent):
    """An ``Agent`` with the ``LlmService`` its skills share (its guard, its config)."""

    def __init__(self, name: str, service: LlmService, **options: Any) -> None:
        super().__init__(name, **options)
        self.service = service


def build_llm_agent(
    config: LlmConfig | None = None,
    *,
    backend: Callable[[], ModelBackend] | None = None,
    name: str = "llm",
) -> LlmAgent:
    """The LLM agent for ``config`` (the environment's when None); ``backend`` replaces
    the one the config names (tests)."""
    config = config or LlmConfig.from_env()
    service = LlmService(config, backend)
    agent = LlmAgent(
        name,
        service,
        description=f"Chat, summaries and classification by {config.model} "
        f"({config.backend}); deterministic fallbacks when the model is unavailable.",
        version="1.0.0",
        capacity=config.capacity,
        tags=["llm", "text"],
        metadata={"llm.backend": config.backend, "llm.model": config.model},
    )
    agent.on_start(service.started)
    agent.on_stop(service.stopped)
    limit = config.max_input_chars

    @agent.skill(
        "llm.chat",
        name="Chat",
        description="Answers a conversation: input messages [{role, content}] or prompt (and "
        "optional system). Output text; degraded answers say so.",
        price=config.price("chat"),
        tags=["llm", "chat"],
        examples=['{"prompt": "Say hello"}'],
    )
    async def chat(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        messages = _messages(input, limit)
        try:
            answer = await service.answer(ctx, messages)
        except Degraded as d:
            last = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
            why = DESCRIPTIONS.get(d.reason, d.reason)
            return {
                "text": fallback.degraded_chat(last, why),
                **service.degraded_fields(ctx.skill, d),
            }
        return {"text": answer.text, **service.model_fields(answer)}

    @agent.skill(
        "llm.summarize",
        name="Summarize",
        description="Summarizes input.text (or upstream text) in at most input.max_sentences "
        f"(default 3, at most {MAX_SENTENCES}). Degraded: an extractive summary.",
        price=config.price("summarize"),
        tags=["llm", "text", "summary"],
        examples=['{"text": "...", "max_sentences": 2}'],
    )
    async def summarize(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        text = _text(input, ctx, limit)
        n = _int(input, "max_sentences", 3, 1, MAX_SENTENCES)
        messages: list[Message] = [
            {"role": "system", "content": "You summarize texts faithfully and briefly."},
            {
                "role": "user",
                "content": f"Summarize the text below in at most {n} sentences. Answer with "
                f"the summary only.\n\n{text}",
            },
        ]
        try:
            answer = await service.answer(ctx, messages)
        except Degraded as d:
            summary = fallback.extractive_summary(text, n)
            return {"summary": summary, **service.degraded_fields(ctx.skill, d)}
        return {"summary": answer.text.strip(), **service.model_fields(answer)}

    @agent.skill(
        "llm.classify",
        name="Classify",
        description="Picks one of input.labels for input.text (or upstream text); output "
        "label and scores. Optional input.keywords {label: [words]} guide the degraded "
        "keyword classifier.",
        price=config.price("classify"),
        tags=["llm", "text", "classification"],
        examples=['{"text": "My invoice is wrong", "labels": ["billing", "bug"]}'],
    )
    async def classify(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
        text = _text(input, ctx, limit)
        labels, keywords = _labels(input)
        messages: list[Message] = [
            {
                "role": "system",
                "content": "You are a text classifier. Answer with exactly one label from "
                "the list and nothing else.",
            },
            {"role": "user", "content": f"Labels: {', '.join(labels)}\n\nText:\n{text}\n\nLabel:"},
        ]
        try:
            answer = await service.answer(ctx, messages)
            label = pick_label(answer.text, labels)
            if label is None:
                raise Degraded(UNCLEAR, f"the model answered {answer.text[:100]!r}, no label")
        except Degraded as d:
            label, scores = fallback.keyword_classify(text, labels, keywords)
            return {"label": label, "scores": scores, **service.degraded_fields(ctx.skill, d)}
        scores = {x: 1.0 if x == label else 0.0 for x in labels}
        return {"label": label, "scores": scores, **service.model_fields(answer)}

    return agent


def llm_agent() -> LlmAgent:
    """The LLM agent configured by the environment (``meshwright agent run
    meshwright.agent.llm:llm_agent``); ``LlmConfigError`` for a bad setting."""
    return build_llm_agent()


__all__ = ["LlmAgent", "LlmService", "build_llm_agent", "llm_agent", "make_backend", "pick_label"]

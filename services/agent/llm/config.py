"""What the LLM agent talks to and how patiently: one frozen, validated ``LlmConfig``.

Every field comes from the environment (``LlmConfig.from_env``) and, for
``meshwright agent llm``, from flags that win over it. The API key comes only
from the environment or a file (``MESHWRIGHT_LLM_API_KEY`` or
``MESHWRIGHT_LLM_API_KEY_FILE``): a command line is visible to every user of
the machine, and the key never appears in ``repr`` or logs.
"""

from __future__ import annotations

import dataclasses
import math
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

BACKENDS = ("ollama", "openai")
"""Backend kinds: Ollama's own API, or any OpenAI-compatible ``/v1/chat/completions``."""
DEFAULT_HOST = "http://127.0.0.1:11434"
"""Where a local Ollama listens (it also serves the OpenAI-compatible API there)."""
SKILLS = ("chat", "summarize", "classify")
"""The skills a price is set for (``llm.<skill>``)."""

MAX_MODEL_CHARS = 200
MAX_TIMEOUT_S = 3600.0
MAX_PRICE = 1_000_000
MAX_BREAKER_FAILURES = 100
MAX_PROGRESS_TOKENS = 10_000
MAX_PROGRESS_INTERVAL_S = 60.0
MAX_INPUT_CHARS = 10_000_000
MAX_TOKENS = 1_000_000

ENV = "MESHWRIGHT_LLM_"


class LlmConfigError(ValueError):
    """The configuration is invalid; ``problems`` lists each field and what is wrong."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{name}: {what}" for name, what in problems))


@dataclass(frozen=True, slots=True, kw_only=True)
class LlmConfig:
    """The LLM agent's settings (env ``MESHWRIGHT_LLM_<FIELD>``, upper case)."""

    backend: str = "ollama"
    """``ollama`` (the official client, ``/api/chat``) or ``openai`` (any server with an
    OpenAI-compatible ``/v1/chat/completions``, streamed as server-sent events)."""
    model: str = "llama3.2"
    """Model name as the server knows it (``llama3.2``, ``qwen2.5:0.5b``, ``gpt-4o-mini``)."""
    host: str = DEFAULT_HOST
    """Base URL of the model server, http(s) without credentials; for ``openai`` a trailing
    ``/v1`` may be given or not. Default: ``OLLAMA_HOST``, else ``http://127.0.0.1:11434``."""
    api_key: str = dataclasses.field(default="", repr=False)
    """Bearer token for the server (env or file only; never logged)."""
    timeout_s: float = 60.0
    """Longest a whole model call may take (the task's own deadline may cut it shorter)."""
    first_token_timeout_s: float = 20.0
    """Longest the first token may take (connect, model load, prompt); at most ``timeout_s``."""
    price_chat: int = 2
    """Price of ``llm.chat``."""
    price_summarize: int = 3
    """Price of ``llm.summarize``."""
    price_classify: int = 1
    """Price of ``llm.classify``."""
    breaker_failures: int = 3
    """Consecutive model failures that open the circuit breaker (answers then come from the
    fallback at once, without calling the server)."""
    breaker_open_s: float = 10.0
    """How long the breaker stays open before one probe may try the server again."""
    probe_interval_s: float = 2.0
    """How often the background probe asks a failing server whether it is back."""
    progress_every_tokens: int = 16
    """Streamed tokens batched into one progress report (with ``progress_interval_s``,
    whichever comes first), so a fast model does not send one update per token."""
    progress_interval_s: float = 0.1
    """Longest streamed text waits before it is reported as progress."""
    max_input_chars: int = 100_000
    """Longest input text (or all chat messages together) a task may send."""
    max_tokens: int = 512
    """Most tokens the model may generate for one answer."""
    capacity: int = 4
    """Tasks the agent runs at once (0 is unlimited)."""

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise LlmConfigError(problems)

    def price(self, skill: str) -> int:
        """The price of ``llm.<skill>``."""
        return int(getattr(self, f"price_{skill}"))

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> LlmConfig:
        """The config the environment describes, ``overrides`` (non-None) winning.

        ``MESHWRIGHT_LLM_PRICE`` sets every skill's price, ``MESHWRIGHT_LLM_PRICE_<SKILL>``
        one of them. Raises ``LlmConfigError`` for a value that does not parse or fails
        validation.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[tuple[str, str]] = []
        for f in dataclasses.fields(cls):
            if f.name == "api_key":
                continue
            raw = env.get(ENV + f.name.upper(), "")
            if raw == "" and f.name.startswith("price_"):
                raw = env.get(ENV + "PRICE", "")
            if raw == "" and f.name == "host":
                raw = env.get("OLLAMA_HOST", "")
                if raw and "://" not in raw:  # Ollama accepts a bare host:port
                    raw = f"http://{raw}"
            if raw == "":
                continue
            try:
                values[f.name] = _parse(f.type, raw)
            except ValueError:
                problems.append((ENV + f.name.upper(), f"{raw!r} is not {_kind(f.type)}"))
        try:
            values["api_key"] = _api_key(env)
        except ValueError as err:
            problems.append((ENV + "API_KEY_FILE", str(err)))
        if problems:
            raise LlmConfigError(problems)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


def _api_key(env: Mapping[str, str]) -> str:
    key = env.get(ENV + "API_KEY", "")
    if key:
        return key.strip()
    path = env.get(ENV + "API_KEY_FILE", "")
    if not path:
        return ""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError as err:
        raise ValueError(f"cannot read {path!r}: {err.strerror or err}") from None


def _parse(kind: Any, raw: str) -> Any:
    if kind in ("int", int):
        return int(raw)
    if kind in ("float", float):
        return float(raw)
    return raw


def _kind(kind: Any) -> str:
    return {"int": "an integer", "float": "a number"}.get(str(kind), "text")


def _finite_positive(value: float) -> bool:
    return value > 0 and not math.isinf(value)  # ``> 0`` refuses NaN as well


def _problems(c: LlmConfig) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []

    def bad(name: str, what: str) -> None:
        out.append((name, what))

    if c.backend not in BACKENDS:
        bad("backend", f"{c.backend!r} is not one of {', '.join(BACKENDS)}")
    if not c.model:
        bad("model", "is required")
    elif len(c.model) > MAX_MODEL_CHARS:
        bad("model", f"must be at most {MAX_MODEL_CHARS} characters")
    elif any(ch.isspace() for ch in c.model):
        bad("model", "must not contain whitespace")
    url = urllib.parse.urlsplit(c.host)
    if url.scheme not in ("http", "https") or not url.hostname:
        bad("host", f"{c.host!r} is not an http(s) URL such as {DEFAULT_HOST}")
    elif url.username is not None or url.password is not None:
        bad("host", "must not hold credentials (use MESHWRIGHT_LLM_API_KEY or its _FILE)")
    elif url.query or url.fragment:
        bad("host", "must not have a query or fragment")
    if any(ch.isspace() for ch in c.api_key):
        bad("api_key", "must not contain whitespace (it is sent as a header)")
    if not _finite_positive(c.timeout_s) or c.timeout_s > MAX_TIMEOUT_S:
        bad("timeout_s", f"must be > 0 and at most {MAX_TIMEOUT_S:g}")
    if not _finite_positive(c.first_token_timeout_s):
        bad("first_token_timeout_s", "must be > 0")
    elif _finite_positive(c.timeout_s) and c.first_token_timeout_s > c.timeout_s:
        bad("first_token_timeout_s", f"must be at most timeout_s ({c.timeout_s:g})")
    for skill in SKILLS:
        price = c.price(skill)
        if not 0 <= price <= MAX_PRICE:
            bad(f"price_{skill}", f"must be between 0 and {MAX_PRICE}")
    if not 1 <= c.breaker_failures <= MAX_BREAKER_FAILURES:
        bad("breaker_failures", f"must be between 1 and {MAX_BREAKER_FAILURES}")
    if not _finite_positive(c.breaker_open_s) or c.breaker_open_s > MAX_TIMEOUT_S:
        bad("breaker_open_s", f"must be > 0 and at most {MAX_TIMEOUT_S:g}")
    if not _finite_positive(c.probe_interval_s) or c.probe_interval_s > MAX_TIMEOUT_S:
        bad("probe_interval_s", f"must be > 0 and at most {MAX_TIMEOUT_S:g}")
    if not 1 <= c.progress_every_tokens <= MAX_PROGRESS_TOKENS:
        bad("progress_every_tokens", f"must be between 1 and {MAX_PROGRESS_TOKENS}")
    if not _finite_positive(c.progress_interval_s) or (
        c.progress_interval_s > MAX_PROGRESS_INTERVAL_S
    ):
        bad("progress_interval_s", f"must be > 0 and at most {MAX_PROGRESS_INTERVAL_S:g}")
    if not 1 <= c.max_input_chars <= MAX_INPUT_CHARS:
        bad("max_input_chars", f"must be between 1 and {MAX_INPUT_CHARS}")
    if not 1 <= c.max_tokens <= MAX_TOKENS:
        bad("max_tokens", f"must be between 1 and {MAX_TOKENS}")
    if c.capacity < 0:
        bad("capacity", "must not be negative (0 is unlimited)")
    return out


__all__ = ["BACKENDS", "DEFAULT_HOST", "SKILLS", "LlmConfig", "LlmConfigError"]

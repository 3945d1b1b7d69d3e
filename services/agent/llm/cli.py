"""``meshwright agent llm [LLM flags] [every flag of meshwright agent run]``.

Each LLM flag overrides its ``MESHWRIGHT_LLM_*`` variable; the API key has no
flag on purpose (a command line is visible to every user of the machine): set
``MESHWRIGHT_LLM_API_KEY`` or ``MESHWRIGHT_LLM_API_KEY_FILE``.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from meshwright.agent.llm.config import BACKENDS, SKILLS, LlmConfig, LlmConfigError

_FLAGS: tuple[tuple[str, str, Any, str], ...] = (
    ("--backend", "backend", str, "ollama or openai (an OpenAI-compatible server)"),
    ("--model", "model", str, "model name, e.g. llama3.2"),
    ("--llm-host", "host", str, "model server base URL (default OLLAMA_HOST or :11434)"),
    ("--timeout", "timeout_s", float, "seconds a whole model call may take"),
    ("--first-token-timeout", "first_token_timeout_s", float, "seconds to the first token"),
    ("--breaker-failures", "breaker_failures", int, "failures in a row that open the breaker"),
    ("--breaker-open", "breaker_open_s", float, "seconds the breaker stays open"),
    ("--probe-interval", "probe_interval_s", float, "seconds between probes while failing"),
    ("--max-tokens", "max_tokens", int, "most tokens one answer may have"),
    ("--max-input-chars", "max_input_chars", int, "longest input text a task may send"),
    ("--progress-every-tokens", "progress_every_tokens", int, "tokens per progress report"),
    ("--progress-interval", "progress_interval_s", float, "longest wait between reports (s)"),
    ("--capacity", "capacity", int, "tasks at once (0 unlimited)"),
)
"""(flag, config field, type, help) of every LLM setting but the prices."""

if TYPE_CHECKING:
    from meshwright.agent.agent import Agent


def add_llm_arguments(parser: argparse.ArgumentParser) -> None:
    """The LLM flags (their defaults are None: unset flags leave the environment's)."""
    group = parser.add_argument_group("LLM (each overrides its MESHWRIGHT_LLM_* variable)")
    for flag, field, kind, help in _FLAGS:
        env = f"MESHWRIGHT_LLM_{field.upper()}"
        if flag == "--backend":
            group.add_argument(flag, dest=f"llm_{field}", choices=BACKENDS, help=f"{help} ({env})")
        else:
            metavar = {"--model": "M", "--llm-host": "URL"}.get(flag, "S" if kind is float else "N")
            group.add_argument(
                flag, dest=f"llm_{field}", type=kind, metavar=metavar, help=f"{help} ({env})"
            )
    group.add_argument(
        "--price",
        dest="llm_price",
        type=int,
        metavar="N",
        help="price of every skill (MESHWRIGHT_LLM_PRICE)",
    )
    for skill in SKILLS:
        group.add_argument(
            f"--price-{skill}",
            dest=f"llm_price_{skill}",
            type=int,
            metavar="N",
            help=f"price of llm.{skill} (MESHWRIGHT_LLM_PRICE_{skill.upper()})",
        )


def config_from_args(args: argparse.Namespace, environ: Any = None) -> LlmConfig:
    """The config of the environment with the flags given on top; ``LlmConfigError``."""
    overrides = {field: getattr(args, f"llm_{field}", None) for _, field, _, _ in _FLAGS}
    price = getattr(args, "llm_price", None)
    for skill in SKILLS:
        own = getattr(args, f"llm_price_{skill}", None)
        overrides[f"price_{skill}"] = own if own is not None else price
    return LlmConfig.from_env(environ, **overrides)


def llm_command(args: argparse.Namespace) -> int:
    """Serve the LLM agent ``args`` configure; the exit code (2 for a bad setting)."""
    from meshwright.agent.cli import AgentLoadError, run_command
    from meshwright.agent.llm.agent import build_llm_agent

    def load(args: argparse.Namespace) -> Agent:
        try:
            return build_llm_agent(config_from_args(args))
        except LlmConfigError as err:
            raise AgentLoadError(f"invalid LLM configuration: {err}") from None

    return run_command(args, load)


__all__ = ["add_llm_arguments", "config_from_args", "llm_command"]

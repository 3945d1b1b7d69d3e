"""``LlmConfig``: each validation rule, the environment, the API key, and the fallbacks."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from meshwright.agent.llm import LlmConfig, LlmConfigError
from meshwright.agent.llm.agent import pick_label
from meshwright.agent.llm.fallback import (
    degraded_chat,
    extractive_summary,
    keyword_classify,
    sentences,
)
from tests.agent.llm_support import TEXT
from tests.agent.test_imports import modules_after

pytestmark = pytest.mark.timeout(10)


def problems(**fields: Any) -> list[str]:
    """The fields ``LlmConfig(**fields)`` is refused for (empty when accepted)."""
    try:
        LlmConfig(**fields)
    except LlmConfigError as err:
        return [name for name, _ in err.problems]
    return []


def test_the_defaults_are_valid() -> None:
    config = LlmConfig()
    assert (config.backend, config.model, config.host) == (
        "ollama",
        "llama3.2",
        "http://127.0.0.1:11434",
    )


# Each rule, by an input that breaks it and nothing else.
@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"backend": "anthropic"}, "backend"),
        ({"model": ""}, "model"),
        ({"model": "m" * 201}, "model"),
        ({"model": "llama 3"}, "model"),
        ({"host": "ftp://example.com"}, "host"),
        ({"host": "http://"}, "host"),
        ({"host": "http://user:pw@example.com"}, "host"),
        ({"host": "http://example.com/?key=1"}, "host"),
        ({"api_key": "two words"}, "api_key"),
        ({"timeout_s": 0.0}, "timeout_s"),
        ({"timeout_s": 3600.001}, "timeout_s"),
        ({"timeout_s": math.nan}, "timeout_s"),
        ({"first_token_timeout_s": 0.0}, "first_token_timeout_s"),
        ({"timeout_s": 5.0, "first_token_timeout_s": 5.001}, "first_token_timeout_s"),
        ({"price_chat": -1}, "price_chat"),
        ({"price_summarize": 1_000_001}, "price_summarize"),
        ({"price_classify": -1}, "price_classify"),
        ({"breaker_failures": 0}, "breaker_failures"),
        ({"breaker_failures": 101}, "breaker_failures"),
        ({"breaker_open_s": 0.0}, "breaker_open_s"),
        ({"breaker_open_s": math.inf}, "breaker_open_s"),
        ({"probe_interval_s": 0.0}, "probe_interval_s"),
        ({"probe_interval_s": 3600.5}, "probe_interval_s"),
        ({"progress_every_tokens": 0}, "progress_every_tokens"),
        ({"progress_every_tokens": 10_001}, "progress_every_tokens"),
        ({"progress_interval_s": 0.0}, "progress_interval_s"),
        ({"progress_interval_s": 60.5}, "progress_interval_s"),
        ({"max_input_chars": 0}, "max_input_chars"),
        ({"max_input_chars": 10_000_001}, "max_input_chars"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 1_000_001}, "max_tokens"),
        ({"capacity": -1}, "capacity"),
    ],
)
def test_each_rule_refuses_what_only_it_refuses(fields: dict[str, Any], field: str) -> None:
    assert problems(**fields) == [field]


@pytest.mark.parametrize(
    "fields",
    [
        {"model": "m" * 200},
        {"model": "hf.co/org/Model-GGUF:Q4_K_M"},
        {"host": "https://llm.example.com:8443/v1"},
        {"timeout_s": 3600.0, "first_token_timeout_s": 3600.0},
        {"price_chat": 0, "price_summarize": 1_000_000, "price_classify": 0},
        {"breaker_failures": 1},
        {"breaker_failures": 100},
        {"breaker_open_s": 3600.0, "probe_interval_s": 3600.0},
        {"progress_every_tokens": 1},
        {"progress_every_tokens": 10_000, "progress_interval_s": 60.0},
        {"max_input_chars": 1, "max_tokens": 1},
        {"max_input_chars": 10_000_000, "max_tokens": 1_000_000},
        {"capacity": 0},
    ],
)
def test_values_at_the_limits_are_accepted(fields: dict[str, Any]) -> None:
    assert problems(**fields) == []


def test_every_problem_is_reported_at_once_and_clearly() -> None:
    with pytest.raises(LlmConfigError) as caught:
        LlmConfig(backend="x", max_tokens=0)
    assert str(caught.value) == (
        "backend: 'x' is not one of ollama, openai; max_tokens: must be between 1 and 1000000"
    )


def test_from_env_reads_every_setting_and_flags_win() -> None:
    env = {
        "MESHWRIGHT_LLM_BACKEND": "openai",
        "MESHWRIGHT_LLM_MODEL": "gpt-4o-mini",
        "MESHWRIGHT_LLM_HOST": "https://api.example.com/v1",
        "MESHWRIGHT_LLM_TIMEOUT_S": "30",
        "MESHWRIGHT_LLM_FIRST_TOKEN_TIMEOUT_S": "5.5",
        "MESHWRIGHT_LLM_PRICE": "7",
        "MESHWRIGHT_LLM_PRICE_CLASSIFY": "1",
        "MESHWRIGHT_LLM_BREAKER_FAILURES": "5",
        "MESHWRIGHT_LLM_API_KEY": "sk-test",
    }
    config = LlmConfig.from_env(env, model="other", timeout_s=None)
    assert (config.backend, config.model, config.host) == (
        "openai",
        "other",
        "https://api.example.com/v1",
    )
    assert (config.timeout_s, config.first_token_timeout_s) == (30.0, 5.5)
    assert (config.price("chat"), config.price("summarize"), config.price("classify")) == (
        7,
        7,
        1,
    )
    assert config.breaker_failures == 5 and config.api_key == "sk-test"
    assert "sk-test" not in repr(config)


def test_the_host_defaults_to_ollama_host() -> None:
    assert LlmConfig.from_env({"OLLAMA_HOST": "10.0.0.5:11434"}).host == "http://10.0.0.5:11434"
    env = {"OLLAMA_HOST": "http://a:1", "MESHWRIGHT_LLM_HOST": "http://b:2"}
    assert LlmConfig.from_env(env).host == "http://b:2"
    assert LlmConfig.from_env({}).host == "http://127.0.0.1:11434"


def test_unparsable_variables_are_named() -> None:
    with pytest.raises(LlmConfigError) as caught:
        LlmConfig.from_env({"MESHWRIGHT_LLM_TIMEOUT_S": "soon", "MESHWRIGHT_LLM_CAPACITY": "2.5"})
    assert caught.value.problems == [
        ("MESHWRIGHT_LLM_TIMEOUT_S", "'soon' is not a number"),
        ("MESHWRIGHT_LLM_CAPACITY", "'2.5' is not an integer"),
    ]


def test_the_api_key_comes_from_a_file(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text("sk-from-file\n")
    config = LlmConfig.from_env({"MESHWRIGHT_LLM_API_KEY_FILE": str(key)})
    assert config.api_key == "sk-from-file"
    missing = str(tmp_path / "nope")
    with pytest.raises(LlmConfigError, match="MESHWRIGHT_LLM_API_KEY_FILE: cannot read"):
        LlmConfig.from_env({"MESHWRIGHT_LLM_API_KEY_FILE": missing})
    both = {"MESHWRIGHT_LLM_API_KEY": "sk-env", "MESHWRIGHT_LLM_API_KEY_FILE": missing}
    assert LlmConfig.from_env(both).api_key == "sk-env"


# -- fallbacks -------------------------------------------------------------------------


def test_the_extractive_summary_keeps_the_topical_sentences_in_order() -> None:
    found = sentences(TEXT)
    assert len(found) == 5
    summary = extractive_summary(TEXT, 2)
    assert summary == f"{found[3]} {found[4]}"  # harbour, spice, warehouses: the topic
    assert extractive_summary(TEXT, 2) == summary  # deterministic
    assert extractive_summary(TEXT, 10) == " ".join(found)
    assert extractive_summary("One sentence only", 3) == "One sentence only"


def test_the_keyword_classifier_counts_label_words_and_keywords() -> None:
    labels = ["billing", "outage", "other"]
    keywords = {"outage": ["down", "unreachable"]}
    text = "The site is down again and the API is unreachable. Billing is fine."
    label, scores = keyword_classify(text, labels, keywords)
    assert label == "outage" and scores == {"billing": 0.3333, "outage": 0.6667, "other": 0.0}
    assert keyword_classify("invoices were billed twice", labels)[0] == "billing"  # stems
    # No hit: every label alike, the first one named.
    assert keyword_classify("hello", labels) == ("billing", dict.fromkeys(labels, 0.3333))


def test_the_chat_fallback_says_it_is_degraded() -> None:
    text = degraded_chat("Where is my   order?", "model server unreachable")
    assert text.startswith("[degraded] The language model is unavailable right now")
    assert "(model server unreachable)" in text and '("Where is my order?")' in text
    assert len(degraded_chat("x" * 1000, "why")) < 400


def test_a_label_is_picked_from_a_model_answer() -> None:
    labels = ["bug", "feature request", "question"]
    assert pick_label("Feature request.", labels) == "feature request"
    assert pick_label("I think this is a question, not a bug", labels) == "question"
    assert pick_label("debugging", labels) is None  # whole words only


@pytest.mark.timeout(60)  # fresh interpreters
def test_importing_the_llm_agent_loads_no_model_client() -> None:
    # What an agent program pays for before it makes a backend (and the SDK for nothing).
    for statement in ("import meshwright.agent", "from meshwright.agent.llm import llm_agent"):
        loaded = modules_after(statement)
        assert not {m for m in loaded if m.split(".")[0] in ("ollama", "httpx")}, statement
    assert "meshwright.agent.llm.agent" not in modules_after("import meshwright.agent.cli")

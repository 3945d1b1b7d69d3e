"""The LLM sample agent: chat, summarize, classify on Ollama or an OpenAI-compatible server.

``meshwright agent llm --registry HOST:PORT`` serves it (``--help`` lists the
flags; each has a ``MESHWRIGHT_LLM_*`` variable), as does ``meshwright agent run
meshwright.agent.llm:llm_agent`` configured by the environment alone. When the
model server is down, too slow for a task's deadline or lacks the model, the
skills answer from deterministic fallbacks (``fallback``), marked
``"degraded": true``, and the agent shows ``DEGRADED: ...`` as its registry
health detail until the server is back.

Names load on first use (PEP 562): importing this package loads neither
``ollama`` nor ``httpx``; only making a backend does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from meshwright.mesh.lazy import lazy_exports

if TYPE_CHECKING:
    from meshwright.agent.llm.agent import LlmAgent, LlmService, build_llm_agent, llm_agent
    from meshwright.agent.llm.config import LlmConfig, LlmConfigError
    from meshwright.agent.llm.guard import Degraded, ModelGuard

_EXPORTS: dict[str, str] = {
    "LlmAgent": "meshwright.agent.llm.agent",
    "LlmService": "meshwright.agent.llm.agent",
    "build_llm_agent": "meshwright.agent.llm.agent",
    "llm_agent": "meshwright.agent.llm.agent",
    "LlmConfig": "meshwright.agent.llm.config",
    "LlmConfigError": "meshwright.agent.llm.config",
    "Degraded": "meshwright.agent.llm.guard",
    "ModelGuard": "meshwright.agent.llm.guard",
}
"""Each public name and the module that defines it."""

__all__ = [
    "Degraded",
    "LlmAgent",
    "LlmConfig",
    "LlmConfigError",
    "LlmService",
    "ModelGuard",
    "build_llm_agent",
    "llm_agent",
]

if not TYPE_CHECKING:  # mypy sees the imports above, and no catch-all attribute
    __getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)

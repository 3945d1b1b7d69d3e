"""An agent for the manager's tests: it says lines on stdout and ends its own process."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from meshwright.agent import Agent, TaskContext
from meshwright.agent.runtime import AgentRuntime

agent = Agent("managed-test", description="Exits and talks on demand.", capacity=4)
_runtimes: list[AgentRuntime] = []


@agent.on_start
def _keep(runtime: AgentRuntime) -> None:
    _runtimes.append(runtime)


@agent.skill("test.exit", description="Ends this process: code 0 gracefully, else os._exit(code).")
async def exit_process(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    code = int(input.get("code", 0))
    loop = asyncio.get_running_loop()
    if code == 0:
        loop.call_later(0.05, _runtimes[-1].request_stop)
    else:
        loop.call_later(0.05, os._exit, code)
    return {"exiting": code}


@agent.skill("test.say", description="Prints input.text on stdout.")
async def say(input: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    print(str(input.get("text", "")), flush=True)
    print(f"said on stderr: {input.get('text', '')}", file=sys.stderr, flush=True)
    return {"said": input.get("text", "")}


not_an_agent = 42
"""For the spec check: an attribute that is no Agent."""

"""A skill: one function an agent offers under a stable id, with its price."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from meshwright.agent.context import TaskContext
from meshwright.agent.v1 import agent_pb2

SkillFn = Callable[[dict[str, Any], TaskContext], Any]
"""``fn(input, ctx)``: async or sync, returns a dict (or any value, wrapped as ``result``)."""

SKILL_ID = re.compile(r"^[a-z0-9][a-z0-9_\-]*(\.[a-z0-9][a-z0-9_\-]*)*$")
"""Skill ids are dotted lower case, e.g. ``text.wordcount``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Skill:
    """One skill of an agent."""

    id: str
    """Stable identifier, dotted lower case."""
    fn: SkillFn
    """The implementation."""
    name: str = ""
    """Human-readable name; the id when empty."""
    description: str = ""
    """What it does, its inputs and outputs."""
    price: int = 0
    """Price of one completed task in minor units; 0 is free."""
    tags: tuple[str, ...] = ()
    """Discovery keywords."""
    examples: tuple[str, ...] = ()
    """Example inputs."""
    is_async: bool = field(init=False)
    """Whether ``fn`` is a coroutine function (else it runs in a worker thread)."""

    def __post_init__(self) -> None:
        if not SKILL_ID.fullmatch(self.id):
            raise ValueError(f"skill id {self.id!r} must be dotted lower case, e.g. 'text.count'")
        if self.price < 0:
            raise ValueError(f"skill {self.id}: price must not be negative")
        # Functions, partials, and objects whose __call__ is async all count.
        is_async = inspect.iscoroutinefunction(self.fn) or inspect.iscoroutinefunction(
            type(self.fn).__call__
        )
        object.__setattr__(self, "is_async", is_async)

    def call(self, input: dict[str, Any], ctx: TaskContext) -> Awaitable[Any]:
        """Start the skill: the coroutine, or the sync function in a worker thread.

        Cancelling the awaitable of a sync skill does not stop its thread;
        ``TaskRunner`` uses ``submit`` instead, to know when the thread is done.
        """
        if self.is_async:
            return self.fn(input, ctx)
        return asyncio.to_thread(self.fn, input, ctx)

    def submit(
        self, input: dict[str, Any], ctx: TaskContext, executor: concurrent.futures.Executor
    ) -> concurrent.futures.Future[Any]:
        """Run a sync skill in ``executor``; the future is done when the thread is.

        Like ``asyncio.to_thread``, the function sees the caller's context variables.
        """
        if self.is_async:
            raise TypeError(f"skill {self.id} is async; await call() instead")
        return executor.submit(contextvars.copy_context().run, self.fn, input, ctx)

    def to_proto(self) -> agent_pb2.AgentSkill:
        """The skill as it appears on the agent card."""
        return agent_pb2.AgentSkill(
            id=self.id,
            name=self.name or self.id,
            description=self.description,
            tags=self.tags,
            examples=self.examples,
            price=self.price,
        )

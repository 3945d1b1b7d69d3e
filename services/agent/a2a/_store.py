"""A bounded, owner-scoped task store for the A2A server.

a2a-sdk's ``InMemoryTaskStore`` keeps every task forever; an agent that serves A2A for
weeks must not. This wraps it and forgets the least recently saved task once
``max_tasks`` are held. Each task belongs to the token that created it (the owner is a
hash of the bearer token), so ``tasks/get`` and ``tasks/cancel`` see only the caller's own
tasks, and a forged token owns nothing.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

from a2a.auth.user import User
from a2a.server.context import ServerCallContext
from a2a.server.tasks import InMemoryTaskStore, TaskStore
from a2a.types import ListTasksRequest, ListTasksResponse, Task

DEFAULT_MAX_TASKS = 10_000
"""Tasks an A2A server remembers for ``tasks/get`` unless told otherwise."""


class Caller(User):
    """The caller of one A2A request, named by a digest of its bearer token."""

    def __init__(self, token: str | None) -> None:
        self._name = "" if not token else hashlib.sha256(token.encode()).hexdigest()[:32]

    @property
    def is_authenticated(self) -> bool:
        return bool(self._name)

    @property
    def user_name(self) -> str:
        return self._name


class _Named(User):
    def __init__(self, name: str) -> None:
        self._name = name

    @property
    def is_authenticated(self) -> bool:
        return bool(self._name)

    @property
    def user_name(self) -> str:
        return self._name


def _owner(context: ServerCallContext) -> str:
    return context.user.user_name


class BoundedTaskStore(TaskStore):
    """``InMemoryTaskStore`` (owners by ``Caller``) that holds at most ``max_tasks`` tasks."""

    def __init__(self, max_tasks: int = DEFAULT_MAX_TASKS) -> None:
        if max_tasks < 1:
            raise ValueError(f"max_tasks must be at least 1, not {max_tasks}")
        self._inner = InMemoryTaskStore(owner_resolver=_owner)
        self._order: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.max_tasks = max_tasks

    def __len__(self) -> int:
        return len(self._order)

    async def save(self, task: Task, context: ServerCallContext) -> None:
        key = (_owner(context), task.id)
        await self._inner.save(task, context)
        self._order[key] = None
        self._order.move_to_end(key)
        while len(self._order) > self.max_tasks:
            (owner, task_id), _ = self._order.popitem(last=False)
            await self._inner.delete(task_id, ServerCallContext(user=_Named(owner)))

    async def get(self, task_id: str, context: ServerCallContext) -> Task | None:
        return await self._inner.get(task_id, context)

    async def list(self, params: ListTasksRequest, context: ServerCallContext) -> ListTasksResponse:
        return await self._inner.list(params, context)

    async def delete(self, task_id: str, context: ServerCallContext) -> None:
        self._order.pop((_owner(context), task_id), None)
        await self._inner.delete(task_id, context)


__all__ = ["DEFAULT_MAX_TASKS", "BoundedTaskStore", "Caller"]

"""Shared test helpers: polling instead of sleeps, free ports."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from tests.consul_double import (  # noqa: F401 (fixtures for every dir)
    consul_double,
    consul_double_factory,
    consul_double_process,
)
from tests.redis_server import redis_server, redis_url  # noqa: F401 (fixtures for every dir)

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T] | T], *, timeout: float = 10.0, interval: float = 0.02
) -> T:
    """Call ``check`` until it returns a truthy value without raising; return that value.

    Raises the last AssertionError (or a TimeoutError) after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            result = check()
            if asyncio.iscoroutine(result) or isinstance(result, Awaitable):
                result = await result  # type: ignore[misc]
            if result:
                return result  # type: ignore[return-value]
            last = None
        except AssertionError as err:
            last = err
        if time.monotonic() > deadline:
            if last is not None:
                raise last
            raise TimeoutError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (for processes that cannot bind 0)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run_workflow(workflows: Any, data: dict[str, Any]) -> Any:
    """Create a workflow from a JSON definition, wait for its end, return it."""
    from google.protobuf import json_format

    from meshwright.workflow.v1 import workflow_pb2 as W

    d = json_format.ParseDict(data, W.WorkflowDefinition())
    reply = await workflows.call("CreateWorkflow", W.CreateWorkflowRequest(definition=d))
    wf_id = reply.workflow.workflow_id
    async for _ in workflows.stream("WatchWorkflow", W.WatchWorkflowRequest(workflow_id=wf_id)):
        pass
    got = await workflows.call("GetWorkflow", W.GetWorkflowRequest(workflow_id=wf_id))
    return got.workflow

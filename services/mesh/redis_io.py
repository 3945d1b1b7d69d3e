"""Redis connection failures as ``Unavailable``: shared by the stores kept on Redis.

Only modules of a ``redis://`` backend import this one (it imports redis).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from meshwright.mesh.errors import Unavailable

S = TypeVar("S")
P = ParamSpec("P")
R = TypeVar("R")


def unavailable_on_redis_errors(
    what: str,
) -> Callable[
    [Callable[Concatenate[S, P], Coroutine[Any, Any, R]]],
    Callable[Concatenate[S, P], Coroutine[Any, Any, R]],
]:
    """A method decorator: connection and timeout errors become ``Unavailable`` naming
    ``what`` ("ledger store"), a gRPC UNAVAILABLE the caller may retry."""

    def decorate(
        method: Callable[Concatenate[S, P], Coroutine[Any, Any, R]],
    ) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
        @functools.wraps(method)
        async def wrapper(self: S, *args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return await method(self, *args, **kwargs)
            except (RedisConnectionError, RedisTimeoutError) as err:
                raise Unavailable(f"{what} (redis) unreachable: {err}") from err

        return wrapper

    return decorate


__all__ = ["unavailable_on_redis_errors"]

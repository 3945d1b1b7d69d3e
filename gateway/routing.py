"""Picking the route for a request: most specific template first."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from meshwright.gateway.errors import MethodNotAllowed, RouteNotFound
from meshwright.gateway.template import PathTemplate

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Route(Generic[T]):
    """An HTTP method and path template leading to a target."""

    method: str
    template: PathTemplate
    target: T


@dataclass(frozen=True, slots=True)
class RouteMatch(Generic[T]):
    """The route a request goes to and the variables its path bound."""

    route: Route[T]
    variables: dict[str, str]


class RouteTable(Generic[T]):
    """Routes ordered by template specificity.

    A request path goes to the most specific matching template: literal
    segments beat variables, which beat ``**``. A path ending in a verb that
    some template declares (``/v1/agents:watch``) is only offered to templates
    with that verb, so it never falls into ``/v1/agents/{agent_id}``-like
    variables. A path that matches only under other HTTP methods raises
    ``MethodNotAllowed``; one that matches nothing, ``RouteNotFound``.
    """

    def __init__(self) -> None:
        self._routes: list[Route[T]] = []

    def add(self, method: str, template: PathTemplate | str, target: T) -> Route[T]:
        """Add a route; raises ValueError if an equivalent one exists."""
        tpl = template if isinstance(template, PathTemplate) else PathTemplate.parse(template)
        route = Route(method.upper(), tpl, target)
        for other in self._routes:
            same_shape = (other.template.segments, other.template.verb) == (tpl.segments, tpl.verb)
            if other.method == route.method and same_shape:
                raise ValueError(
                    f"{route.method} {tpl} clashes with {other.method} {other.template}"
                )
        self._routes.append(route)
        # Stable: among equally specific templates the first added wins.
        self._routes.sort(key=lambda r: r.template.specificity, reverse=True)
        return route

    def __iter__(self) -> Iterator[Route[T]]:
        return iter(self._routes)

    def __len__(self) -> int:
        return len(self._routes)

    def match(self, method: str, raw_path: str) -> RouteMatch[T]:
        """The route for ``method`` and ``raw_path`` (percent-encoded, no query)."""
        candidates: list[RouteMatch[T]] = []
        for route in self._routes:
            variables = route.template.match(raw_path)
            if variables is not None:
                candidates.append(RouteMatch(route, variables))
        if not candidates:
            raise RouteNotFound(f"no route matches {raw_path}")
        if any(c.route.template.verb is not None for c in candidates):
            candidates = [c for c in candidates if c.route.template.verb is not None]
        wanted = method.upper()
        for c in candidates:
            if c.route.method == wanted:
                return c
        allowed = sorted({c.route.method for c in candidates})
        raise MethodNotAllowed(
            f"{wanted} is not allowed on {raw_path}; use {', '.join(allowed)}",
            allowed=allowed,
        )


__all__ = ["Route", "RouteMatch", "RouteTable"]

"""The REST gateway: routes derived from ``google.api.http`` rules.

``create_app`` reads every method's HTTP rule from the services' descriptors,
so a new RPC is reachable over REST without a line here. Requests become the
RPC's request message (path variables, query parameters, JSON body), responses
become JSON, server-streaming RPCs become Server-Sent Events, and every error
is a ``google.rpc.Status`` body with the HTTP status of one table.

As a browser-facing door: a state-changing request must declare its body
``application/json`` (415 otherwise), so no CORS-simple request can change
state; CORS is off unless origins are listed; the caller's ``Authorization``
goes to the RPC; every answer is ``Cache-Control: no-store``; an error with a
retry delay (a rate limit) carries ``Retry-After``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from google.protobuf import message
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from meshwright.gateway._media import require_json
from meshwright.gateway._metadata import PASS_THROUGH_HEADERS, forwarded_metadata
from meshwright.gateway._request import LAST_EVENT_ID, build_request
from meshwright.gateway.binding import HttpBinding, bindings_of
from meshwright.gateway.errors import BodyTooLarge, MethodNotAllowed, UnsupportedMediaType
from meshwright.gateway.routing import RouteMatch, RouteTable
from meshwright.gateway.sse import EventStream, StreamSet
from meshwright.gateway.status import NO_STORE, error_response
from meshwright.mesh import telemetry
from meshwright.mesh.client import ServiceClient
from meshwright.mesh.errors import Internal, MeshError
from meshwright.mesh.logs import access_line

log = logging.getLogger(__name__)

# An origin as a browser sends it: scheme, host (name or [IPv6]) and port, no path.
_ORIGIN = re.compile(r"https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?")

Builtin = Callable[[Request], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class RpcTarget:
    """Where a derived route leads: one binding of one client's RPC."""

    binding: HttpBinding
    client: ServiceClient


Target = RpcTarget | Builtin


def create_app(
    clients: Sequence[ServiceClient],
    *,
    cors_origins: Sequence[str] = (),
    cors_allow_credentials: bool = False,
    heartbeat_s: float = 15.0,
    extra_routes: Sequence[BaseRoute] = (),
    max_body_bytes: int = 4 * 1024 * 1024,
) -> Starlette:
    """A Starlette app serving every HTTP-bound RPC of ``clients``' services.

    CORS is off unless ``cors_origins`` lists the browser origins allowed
    (``scheme://host[:port]`` each, or ``"*"`` for any);
    ``cors_allow_credentials`` lets those pages send cookies, and is refused
    together with ``"*"`` (any page could then act as its visitors).
    ``heartbeat_s`` is the interval of keep-alive comments on idle event
    streams. ``extra_routes`` (e.g. the dashboard's static files) are tried
    before the derived routes. A body over ``max_body_bytes`` is refused with
    HTTP 413 before it is read in full. Raises ``ValueError`` when two RPCs claim the
    same method and path or a rule cannot be served.
    """
    table: RouteTable[Target] = RouteTable()
    table.add("GET", "/healthz", _healthz)
    rpc_routes: list[dict[str, Any]] = []
    for client in clients:
        for binding in bindings_of(client.service):
            table.add(binding.http_method, binding.template, RpcTarget(binding, client))
            rpc_routes.append(
                {
                    "method": binding.http_method,
                    "path": binding.template.text,
                    "rpc": binding.full_name,
                    "body": binding.body,
                    "streaming": binding.server_streaming,
                }
            )
    rpc_routes.sort(key=lambda r: (r["path"], r["method"]))

    async def list_routes(request: Request) -> Response:
        return JSONResponse({"routes": rpc_routes})

    table.add("GET", "/v1/routes", list_routes)
    streams = StreamSet()
    middleware = []
    if cors_origins:
        methods = sorted({r.method for r in table})
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=_cors_origins(cors_origins, credentials=cors_allow_credentials),
                allow_methods=methods,
                allow_headers=sorted(
                    {*PASS_THROUGH_HEADERS, "content-type", LAST_EVENT_ID.lower()}
                ),
                allow_credentials=cors_allow_credentials,
                # Not CORS-safelisted: a page could not read it otherwise.
                expose_headers=["Retry-After"],
            )
        )
    dispatcher = _Dispatcher(table, streams, heartbeat_s=heartbeat_s, max_body_bytes=max_body_bytes)
    app = Starlette(routes=list(extra_routes), middleware=middleware)
    # Every request no extra route claims goes to the dispatcher. Not a
    # catch-all Route: Starlette's path pattern stops at a newline, so a path
    # with an encoded %0A would get Starlette's plain-text 404 instead of ours.
    app.router.default = dispatcher
    app.state.event_streams = streams
    app.state.route_table = table
    return app


def _cors_origins(origins: Sequence[str], *, credentials: bool) -> list[str]:
    """The allowlist as browsers spell origins; ValueError for one that can never match."""
    out: list[str] = []
    for origin in origins:
        origin = origin.strip()
        if origin == "*":
            if credentials:
                raise ValueError(
                    "CORS origin '*' cannot be combined with credentials: list the origins"
                )
            out.append(origin)
            continue
        if not _ORIGIN.fullmatch(origin):
            raise ValueError(
                f"CORS origin {origin!r} is not scheme://host[:port] (no path, no trailing slash)"
            )
        out.append(origin.lower())
    return out


async def _healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


class _Dispatcher:
    """The ASGI app behind every derived route (one catch-all Starlette route)."""

    def __init__(
        self,
        table: RouteTable[Target],
        streams: StreamSet,
        *,
        heartbeat_s: float,
        max_body_bytes: int,
    ) -> None:
        self._table = table
        self._streams = streams
        self._heartbeat_s = heartbeat_s
        self._max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        t0 = time.perf_counter()
        request = Request(scope, receive)
        status = 0
        # The request is the root of its trace (or a child of the caller's traceparent);
        # current while it is answered, so every RPC it makes is a child.
        span = telemetry.start_http_span(
            request.method, scope.get("path", ""), list(request.headers.items())
        )
        token = telemetry.attach(span)
        try:
            response = await self._respond(request, span)

            async def no_store(msg: Message) -> None:
                nonlocal status
                # Every answer here may hold account data for the bearer of one token;
                # no shared or browser cache may keep it (errors and streams included).
                if msg["type"] == "http.response.start":
                    status = int(msg.get("status", 0))
                    headers = [(k, v) for k, v in msg.get("headers", []) if k != b"cache-control"]
                    headers.append((b"cache-control", NO_STORE.encode()))
                    msg = {**msg, "headers": headers}
                await send(msg)

            await response(scope, receive, no_store)
        finally:
            telemetry.detach(token)
            telemetry.end_http_span(span, status or 500)
            client = scope.get("client")
            access_line(
                f"{request.method} {scope.get('path', '')}",
                status or "-",
                time.perf_counter() - t0,
                "-",
                f"{client[0]}:{client[1]}" if client else "-",
            )

    async def _respond(self, request: Request, span: telemetry.Span | None) -> ASGIApp:
        try:
            found = self._table.match(request.method, _raw_path(request.scope))
            telemetry.name_http_span(span, request.method, found.route.template.text)
        except MethodNotAllowed as err:
            return error_response(err, status_code=405, headers={"Allow": ", ".join(err.allowed)})
        except BodyTooLarge as err:
            return error_response(err, status_code=413)
        except MeshError as err:
            return error_response(err)
        try:
            target = found.route.target
            if isinstance(target, RpcTarget):
                return await self._call(request, target, found)
            return await target(request)
        except BodyTooLarge as err:
            return error_response(err, status_code=413)
        except UnsupportedMediaType as err:
            return error_response(err, status_code=415)
        except MeshError as err:
            return error_response(err)
        except ClientDisconnect:
            return Response(status_code=499)
        except Exception:
            log.exception("gateway failed on %s %s", request.method, request.url.path)
            return error_response(Internal("internal error"))

    async def _call(
        self, request: Request, target: RpcTarget, found: RouteMatch[Target]
    ) -> ASGIApp:
        binding = target.binding
        require_json(request.method, request.headers)
        body = await self._body(request) if binding.body else b""
        rpc_request = build_request(
            binding,
            variables=found.variables,
            query=request.query_params.multi_items(),
            body=body,
            last_event_id=request.headers.get(LAST_EVENT_ID),
        )
        metadata = forwarded_metadata(request.headers.items())
        if binding.server_streaming:
            return EventStream(
                target.client.stream(binding.rpc, rpc_request, metadata=metadata),
                render=binding.render,
                event_id=lambda item, count: _event_id(binding, item, count),
                streams=self._streams,
                heartbeat_s=self._heartbeat_s,
            )
        reply = await target.client.call(binding.rpc, rpc_request, metadata=metadata)
        return JSONResponse(binding.render(reply))

    async def _body(self, request: Request) -> bytes:
        limit = self._max_body_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge(f"request body of {declared} bytes exceeds {limit} bytes")
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge(f"request body exceeds {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


def _event_id(binding: HttpBinding, item: message.Message, count: int) -> str:
    sequence = binding.sequence(item)
    return str(count if sequence is None else sequence)


def _raw_path(scope: Scope) -> str:
    """The request path still percent-encoded, so ``%2F`` stays inside a segment."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if raw else quote(scope["path"])
    root = scope.get("root_path", "")
    if root and path.startswith(root):
        path = path[len(root) :]
    return path


__all__ = ["RpcTarget", "create_app"]

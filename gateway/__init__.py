"""REST gateway: routes derived from the contracts' ``google.api.http`` rules.

``create_app(clients)`` builds the Starlette app; ``start_gateway(app)`` serves
it under uvicorn in the running event loop.
"""

from meshwright.gateway.app import create_app
from meshwright.gateway.binding import HttpBinding, bindings_of
from meshwright.gateway.errors import MethodNotAllowed, RouteNotFound, UnsupportedMediaType
from meshwright.gateway.routing import Route, RouteMatch, RouteTable
from meshwright.gateway.serve import GatewayHandle, start_gateway
from meshwright.gateway.sse import EventStream, StreamSet
from meshwright.gateway.status import HTTP_STATUS, http_status
from meshwright.gateway.template import PathTemplate, TemplateError

__all__ = [
    "HTTP_STATUS",
    "EventStream",
    "GatewayHandle",
    "HttpBinding",
    "MethodNotAllowed",
    "PathTemplate",
    "Route",
    "RouteMatch",
    "RouteNotFound",
    "RouteTable",
    "StreamSet",
    "TemplateError",
    "UnsupportedMediaType",
    "bindings_of",
    "create_app",
    "http_status",
    "start_gateway",
]

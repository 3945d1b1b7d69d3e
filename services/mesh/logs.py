"""Process logging: one handler on the root logger, human lines or JSON, with trace context.

``configure_logging`` installs one stream handler (stderr by default) whose
records carry the current trace and span ids (OpenTelemetry) and, inside a
call, its principal and method (``current_call()``), so a log line can be
joined with the trace and the access line of the call that wrote it. Human
lines by default::

    2026-12-03 07:02:23,123 INFO meshwright.workflow.engine [trace=<32 hex> span=<16 hex>] text

(the bracket only inside a span); ``json=True`` writes one JSON object per line
for log shippers, with the caller's ``extra=`` fields as keys.

The JSON format is written here with the standard library rather than taken
from python-json-logger: it is a dozen lines, and one dependency fewer on the
path every process starts through.

``AccessLog`` is a pipeline ``CallObserver``: one INFO line per finished call
on ``meshwright.access``. ``access_line`` writes the HTTP gateway's lines on
``meshwright.access.http``. Both are silent unless those loggers are enabled
for INFO (``configure_logging("INFO")``).
"""

from __future__ import annotations

import json as jsonlib
import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from meshwright.mesh.context import CallContext, current_call
from meshwright.mesh.errors import MeshError, grpc_code

try:
    from opentelemetry import trace as otel_trace
except ImportError:  # pragma: no cover (no tracing installed: no trace ids to stamp)
    otel_trace = None  # type: ignore[assignment]

ACCESS_LOGGER = "meshwright.access"
HTTP_ACCESS_LOGGER = "meshwright.access.http"

STAMPED = ("trace_id", "span_id", "principal", "rpc_method")
"""What ``TraceContextFilter`` sets on every record ("" when there is none)."""

# Attributes every LogRecord has: whatever else a record holds came from ``extra=``.
_RECORD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
_NOT_EXTRA = _RECORD_ATTRS | set(STAMPED) | {"time", "level", "logger", "service"}
_HUMAN_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


def _stamp(record: logging.LogRecord) -> None:
    """Set the ``STAMPED`` attributes on a record, keeping any already there.

    Kept: the first handler's stamp (made where the record was logged), and
    values the caller passed in ``extra=`` (an access line logged after its call
    ended names that call, not the empty context it is logged from).
    """
    fields = record.__dict__
    if "trace_id" not in fields or "span_id" not in fields:
        trace_id = span_id = ""
        if otel_trace is not None:
            ctx = otel_trace.get_current_span().get_span_context()
            if ctx.is_valid:
                trace_id = otel_trace.format_trace_id(ctx.trace_id)
                span_id = otel_trace.format_span_id(ctx.span_id)
        fields.setdefault("trace_id", trace_id)
        fields.setdefault("span_id", span_id)
    if "principal" not in fields or "rpc_method" not in fields:
        call = current_call()
        fields.setdefault("principal", "" if call is None else call.principal.name)
        fields.setdefault("rpc_method", "" if call is None else call.method)


class TraceContextFilter(logging.Filter):
    """Stamps each record with ``trace_id``/``span_id`` (hex, "" outside a valid span) and
    ``principal``/``rpc_method`` (the current call's, "" outside a call); drops nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        _stamp(record)
        return True


class HumanFormatter(logging.Formatter):
    """``<time> <LEVEL> <logger> [trace=<id> span=<id>] <message>``, the bracket only in a span."""

    def __init__(self) -> None:
        super().__init__(_HUMAN_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        _stamp(record)  # formatting a record no filter stamped (another handler's)
        trace_id = record.__dict__["trace_id"]
        if not trace_id:
            return super().formatMessage(record)
        return (
            f"{record.asctime} {record.levelname} {record.name} "
            f"[trace={trace_id} span={record.__dict__['span_id']}] {record.message}"
        )


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line.

    Keys: ``time`` (ISO 8601 UTC, milliseconds, ``Z``), ``level``, ``logger``,
    ``message``; ``service`` when given; ``trace_id``, ``span_id``, ``principal``,
    ``rpc_method`` when not empty; ``exc_info`` (the formatted traceback) and
    ``stack_info`` when present; then every ``extra=`` field, as JSON when it can
    be (finite numbers only), otherwise as its ``str()``. An extra named like one
    of the fixed keys is left out: the fixed key wins.
    """

    def __init__(self, service: str = "") -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        _stamp(record)
        fields = record.__dict__
        parts: dict[str, Any] = {
            "time": _iso_utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.service:
            parts["service"] = self.service
        for key in STAMPED:
            if fields.get(key):
                parts[key] = fields[key]
        if record.exc_info:
            if not record.exc_text:
                record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            parts["exc_info"] = record.exc_text
        if record.stack_info:
            parts["stack_info"] = self.formatStack(record.stack_info)
        # Each value is encoded once: a value that cannot be is written as its str().
        encoded = [f"{_dumps(k)}: {_dumps(v)}" for k, v in parts.items()]
        for key, value in fields.items():
            if key in _NOT_EXTRA:
                continue
            try:
                text = _dumps(value)
            except (TypeError, ValueError):  # not JSON, a cycle, NaN or infinity
                text = _dumps(str(value))
            encoded.append(f"{_dumps(key)}: {text}")
        return "{" + ", ".join(encoded) + "}"


def _dumps(value: Any) -> str:
    return jsonlib.dumps(value, ensure_ascii=False, allow_nan=False)


def _iso_utc(created: float) -> str:
    """``2026-12-03T07:02:23.123Z``."""
    moment = datetime.fromtimestamp(created, UTC)
    return moment.isoformat(timespec="milliseconds").removesuffix("+00:00") + "Z"


class _MeshHandler(logging.StreamHandler[TextIO]):
    """The handler ``configure_logging`` installs: told apart from others' to be replaced."""


def configure_logging(
    level: str | int = "WARNING",
    *,
    json: bool = False,
    stream: TextIO | None = None,
    service: str = "",
) -> None:
    """Send the root logger's records to ``stream`` (stderr), human-readable or as JSON.

    Idempotent: the handler a previous call installed is replaced, handlers
    installed by anyone else (pytest's caplog, an embedding application) stay.
    ``level`` is a level name (any case) or number; ``service`` names the
    process in JSON lines. Raises ``ValueError`` for an unknown level name.
    """
    root = logging.getLogger()
    root.setLevel(level.upper() if isinstance(level, str) else level)
    handler = _MeshHandler(sys.stderr if stream is None else stream)
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(JsonFormatter(service) if json else HumanFormatter())
    for old in list(root.handlers):
        if isinstance(old, _MeshHandler):
            root.removeHandler(old)
            old.close()
    root.addHandler(handler)


class AccessLog:
    """A pipeline ``CallObserver``: one INFO line per finished call.

    ``<method> <CODE> <ms>ms <principal> <peer>``, with ``rpc_method``,
    ``grpc_code`` (the code's name: ``OK``, ``NOT_FOUND``), ``duration_ms``,
    ``principal`` and ``peer`` as ``extra`` fields (keys in JSON lines). A call
    refused before it had a context (authentication, rate limit) has neither
    principal nor peer: both are ``-``.
    """

    def __init__(self, logger_name: str = ACCESS_LOGGER) -> None:
        self.log = logging.getLogger(logger_name)

    def finished(
        self, call: CallContext | None, method: str, error: MeshError | None, seconds: float
    ) -> None:
        if not self.log.isEnabledFor(logging.INFO):
            return
        code = "OK" if error is None else grpc_code(error).name
        principal = "-" if call is None else call.principal.name
        peer = "-" if call is None else call.peer
        ms = seconds * 1000.0
        self.log.info(
            "%s %s %.1fms %s %s",
            method,
            code,
            ms,
            principal,
            peer,
            extra={
                "rpc_method": method,
                "grpc_code": code,
                "duration_ms": round(ms, 3),
                "principal": principal,
                "peer": peer,
            },
        )


_http_log = logging.getLogger(HTTP_ACCESS_LOGGER)


def access_line(method: str, status: int | str, seconds: float, principal: str, peer: str) -> None:
    """Log one HTTP access line on ``meshwright.access.http`` (INFO).

    ``<method> <status> <ms>ms <principal> <peer>``; ``method`` is what the
    gateway says was asked (``GET /v1/agents/a1``), ``status`` the HTTP status.
    Extra fields: ``http_request``, ``http_status``, ``duration_ms``,
    ``principal``, ``peer``.
    """
    if not _http_log.isEnabledFor(logging.INFO):
        return
    ms = seconds * 1000.0
    _http_log.info(
        "%s %s %.1fms %s %s",
        method,
        status,
        ms,
        principal,
        peer,
        extra={
            "http_request": method,
            "http_status": status,
            "duration_ms": round(ms, 3),
            "principal": principal,
            "peer": peer,
        },
    )


__all__ = [
    "ACCESS_LOGGER",
    "HTTP_ACCESS_LOGGER",
    "STAMPED",
    "AccessLog",
    "HumanFormatter",
    "JsonFormatter",
    "TraceContextFilter",
    "access_line",
    "configure_logging",
]

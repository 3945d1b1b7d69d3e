"""Log lines: the human and JSON formats, trace and call context on them, access lines.

Every test configures the root logger into a StringIO and puts the root's
level and handlers back afterwards (the ``root`` fixture), so the rest of the
suite sees logging as it was. Spans come from a local SDK ``TracerProvider``:
the global one is left alone, other tests in this process set it.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider

from meshwright.mesh.auth import Principal, Role
from meshwright.mesh.context import CallContext, serving
from meshwright.mesh.errors import NotFound, Unauthenticated
from meshwright.mesh.logs import (
    AccessLog,
    TraceContextFilter,
    access_line,
    configure_logging,
)

METHOD = "/meshwright.economy.v1.EconomyService/GetAccount"
ALICE = Principal(Role.CLIENT, "alice")
CALL = CallContext(method=METHOD, principal=ALICE, deadline=None, peer="ipv4:127.0.0.1:5123")
HUMAN = re.compile(
    r"(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) (?P<level>[A-Z]+) (?P<logger>\S+) "
    r"(?:\[trace=(?P<trace>[0-9a-f]{32}) span=(?P<span>[0-9a-f]{16})\] )?(?P<message>.*)"
)
ISO_UTC_MS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    logger = logging.getLogger()
    level, handlers = logger.level, list(logger.handlers)
    yield logger
    for handler in ours(logger):
        if handler not in handlers:
            logger.removeHandler(handler)
            handler.close()
    logger.setLevel(level)


def human(line: str) -> re.Match[str]:
    match = HUMAN.fullmatch(line)
    assert match is not None, line
    return match


def lines(out: io.StringIO) -> list[str]:
    return out.getvalue().splitlines()


def records(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in lines(out)]


def ours(logger: logging.Logger) -> list[logging.Handler]:
    return [h for h in logger.handlers if any(isinstance(f, TraceContextFilter) for f in h.filters)]


def tracer() -> trace.Tracer:
    return TracerProvider().get_tracer("test_logs")


def test_human_line_outside_a_span(root: logging.Logger) -> None:
    out = io.StringIO()
    configure_logging("INFO", stream=out)
    logging.getLogger("meshwright.workflow.engine").info("run %s started", "r1")
    [line] = lines(out)
    match = human(line)
    assert match["level"] == "INFO"
    assert match["logger"] == "meshwright.workflow.engine"
    assert match["trace"] is None and "[trace=" not in line
    assert match["message"] == "run r1 started"


def test_human_line_inside_a_span_carries_its_ids(root: logging.Logger) -> None:
    out = io.StringIO()
    configure_logging("INFO", stream=out)
    span = tracer().start_span("work")
    with trace.use_span(span, end_on_exit=True):
        logging.getLogger("meshwright.test").warning("inside")
    ctx = span.get_span_context()
    match = human(lines(out)[0])
    assert match["trace"] == f"{ctx.trace_id:032x}"
    assert match["span"] == f"{ctx.span_id:016x}"
    assert match["message"] == "inside"


def test_human_line_keeps_the_traceback(root: logging.Logger) -> None:
    out = io.StringIO()
    configure_logging(stream=out)
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("meshwright.test").exception("failed")
    text = out.getvalue()
    assert human(text.splitlines()[0])["message"] == "failed"
    assert "Traceback (most recent call last)" in text
    assert "RuntimeError: boom" in text


def test_json_line_has_exactly_the_base_keys(root: logging.Logger) -> None:
    out = io.StringIO()
    configure_logging("INFO", json=True, stream=out)
    logging.getLogger("meshwright.registry").info("%d agents", 3)
    [record] = records(out)
    assert set(record) == {"time", "level", "logger", "message"}
    assert record["level"] == "INFO"
    assert record["logger"] == "meshwright.registry"
    assert record["message"] == "3 agents"
    assert ISO_UTC_MS.fullmatch(str(record["time"]))


def test_json_line_with_service_span_and_traceback(root: logging.Logger) -> None:
    out = io.StringIO()
    configure_logging("DEBUG", json=True, stream=out, service="registry")
    span = tracer().start_span("work")
    with trace.use_span(span, end_on_exit=True):
        try:
            raise ValueError("bad")
        except ValueError:
            logging.getLogger("meshwright.test").error("oops", exc_info=True)
    [record] = records(out)
    ctx = span.get_span_context()
    assert set(record) == {
        "time",
        "level",
        "logger",
        "message",
        "service",
        "trace_id",
        "span_id",
        "exc_info",
    }
    assert record["service"] == "registry"
    assert record["trace_id"] == f"{ctx.trace_id:032x}"
    assert record["span_id"] == f"{ctx.span_id:016x}"
    assert str(record["exc_info"]).startswith("Traceback (most recent call last)")
    assert "ValueError: bad" in str(record["exc_info"])


def test_json_line_after_the_span_has_no_ids(root: logging.Logger) -> None:
    out = io.StringIO()
    configure_logging("INFO", json=True, stream=out)
    with trace.use_span(tracer().start_span("work"), end_on_exit=True):
        pass
    logging.getLogger("meshwright.test").info("after")
    [record] = records(out)
    assert "trace_id" not in record and "span_id" not in record


def test_a_non_recording_span_without_valid_ids_stamps_nothing(root: logging.Logger) -> None:
    out = io.StringIO()
    configure_logging("INFO", json=True, stream=out)
    with trace.use_span(trace.INVALID_SPAN):
        logging.getLogger("meshwright.test").info("invalid")
    [record] = records(out)
    assert "trace_id" not in record


def test_extra_fields_become_keys_and_the_unserializable_become_str(
    root: logging.Logger,
) -> None:
    class Opaque:
        def __str__(self) -> str:
            return "<opaque>"

    out = io.StringIO()
    configure_logging("INFO", json=True, stream=out)
    logging.getLogger("meshwright.test").info(
        "with extras",
        extra={
            "agent_id": "a1",
            "count": 3,
            "tags": ["x", "y"],
            "nested": {"k": 1.5},
            "opaque": Opaque(),
            "nan": float("nan"),
            "level": "not the level",
        },
    )
    [record] = records(out)
    assert record["agent_id"] == "a1"
    assert record["count"] == 3
    assert record["tags"] == ["x", "y"]
    assert record["nested"] == {"k": 1.5}
    assert record["opaque"] == "<opaque>"
    assert record["nan"] == "nan"
    assert record["level"] == "INFO"  # a fixed key is not overwritten by an extra


def test_the_filter_stamps_the_call_and_empty_strings_outside(root: logging.Logger) -> None:
    out = io.StringIO()
    configure_logging("INFO", json=True, stream=out)
    log = logging.getLogger("meshwright.test")
    with serving(CALL):
        log.info("in the call")
    log.info("outside")
    inside, outside = records(out)
    assert inside["principal"] == "client:alice"
    assert inside["rpc_method"] == METHOD
    assert "principal" not in outside and "rpc_method" not in outside

    stamped = logging.makeLogRecord({"msg": "bare"})
    assert TraceContextFilter().filter(stamped) is True
    fields = vars(stamped)
    assert [fields[k] for k in ("trace_id", "span_id", "principal", "rpc_method")] == [""] * 4


def test_the_filter_stamps_span_ids_as_hex(root: logging.Logger) -> None:
    span = tracer().start_span("work")
    record = logging.makeLogRecord({"msg": "x"})
    with trace.use_span(span, end_on_exit=True):
        TraceContextFilter().filter(record)
    ctx = span.get_span_context()
    assert vars(record)["trace_id"] == f"{ctx.trace_id:032x}"
    assert vars(record)["span_id"] == f"{ctx.span_id:016x}"


def test_access_log_success_line(root: logging.Logger) -> None:
    out = io.StringIO()
    configure_logging("INFO", stream=out)
    AccessLog().finished(CALL, METHOD, None, 0.0123)
    match = human(lines(out)[0])
    assert match["logger"] == "meshwright.access"
    assert match["message"] == f"{METHOD} OK 12.3ms client:alice ipv4:127.0.0.1:5123"


def test_access_log_error_line_in_json_names_the_code(root: logging.Logger) -> None:
    out = io.StringIO()
    configure_logging("INFO", json=True, stream=out)
    # The pipeline observes a call after it left it: the fields come from ``call``.
    AccessLog().finished(CALL, METHOD, NotFound("no account a1"), 0.0021)
    [record] = records(out)
    assert record["logger"] == "meshwright.access"
    assert record["message"] == f"{METHOD} NOT_FOUND 2.1ms client:alice ipv4:127.0.0.1:5123"
    assert record["rpc_method"] == METHOD
    assert record["grpc_code"] == "NOT_FOUND"
    assert record["duration_ms"] == 2.1
    assert record["principal"] == "client:alice"
    assert record["peer"] == "ipv4:127.0.0.1:5123"


def test_access_log_of_a_call_refused_before_it_had_a_context(root: logging.Logger) -> None:
    out = io.StringIO()
    configure_logging("INFO", json=True, stream=out)
    AccessLog(logger_name="custom.access").finished(None, METHOD, Unauthenticated("no"), 0.0)
    [record] = records(out)
    assert record["logger"] == "custom.access"
    assert record["grpc_code"] == "UNAUTHENTICATED"
    assert (record["principal"], record["peer"]) == ("-", "-")


def test_access_log_is_silent_below_info(root: logging.Logger) -> None:
    out = io.StringIO()
    configure_logging("WARNING", stream=out)
    AccessLog().finished(CALL, METHOD, None, 0.001)
    access_line("GET /v1/agents", 200, 0.001, "client:alice", "127.0.0.1:5000")
    assert out.getvalue() == ""


def test_http_access_line(root: logging.Logger) -> None:
    out = io.StringIO()
    configure_logging("INFO", json=True, stream=out)
    access_line("GET /v1/agents/a1", 404, 0.5, "client:alice", "127.0.0.1:5000")
    [record] = records(out)
    assert record["logger"] == "meshwright.access.http"
    assert record["message"] == "GET /v1/agents/a1 404 500.0ms client:alice 127.0.0.1:5000"
    assert record["http_request"] == "GET /v1/agents/a1"
    assert record["http_status"] == 404
    assert record["duration_ms"] == 500.0
    assert (record["principal"], record["peer"]) == ("client:alice", "127.0.0.1:5000")


def test_configure_logging_is_idempotent_and_leaves_other_handlers(
    root: logging.Logger, caplog: pytest.LogCaptureFixture
) -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("INFO", stream=first)
    configure_logging("INFO", json=True, stream=second)
    assert len(ours(root)) == 1
    assert caplog.handler in root.handlers
    logging.getLogger("meshwright.test").info("once")
    assert first.getvalue() == ""
    assert [r["message"] for r in records(second)] == ["once"]
    assert [r.getMessage() for r in caplog.records] == ["once"]


def test_level_is_respected(root: logging.Logger) -> None:
    out = io.StringIO()
    configure_logging("info", stream=out)
    log = logging.getLogger("meshwright.test")
    log.debug("hidden")
    log.info("shown")
    assert [human(line)["message"] for line in lines(out)] == ["shown"]
    configure_logging(logging.DEBUG, stream=out)
    log.debug("now shown")
    assert lines(out)[-1].endswith("DEBUG meshwright.test now shown")


def test_an_unknown_level_is_refused(root: logging.Logger) -> None:
    with pytest.raises(ValueError):
        configure_logging("LOUD")

"""Trace context parsing and formatting, the exporter switch, the log processor, store spans."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState

from service import tracing, tracing_export
from service.otlp import spans

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_a_valid_traceparent_is_the_remote_parent() -> None:
    parent = tracing.parse_traceparent(f"00-{TRACE}-{SPAN}-01", "a=1,b=2")
    assert parent is not None and parent.is_remote
    assert parent.trace_id == int(TRACE, 16) and parent.span_id == int(SPAN, 16)
    assert parent.trace_flags.sampled
    assert parent.trace_state.to_header() == "a=1,b=2"
    assert tracing.format_traceparent(parent) == f"00-{TRACE}-{SPAN}-01"


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        f"00-{TRACE}-{SPAN}",  # no flags
        f"00-{TRACE.upper()}-{SPAN}-01",  # upper-case hex is invalid
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero span id
        f"ff-{TRACE}-{SPAN}-01",  # version ff is forbidden
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has exactly four fields
        f"00-{TRACE[:-1]}-{SPAN}-01",
        "not a traceparent",
    ],
)
def test_an_invalid_traceparent_starts_a_new_trace(header: str | None) -> None:
    assert tracing.parse_traceparent(header) is None


def test_a_later_version_is_read_by_its_first_four_fields() -> None:
    parent = tracing.parse_traceparent(f"cc-{TRACE}-{SPAN}-03-what-comes-later")
    assert parent is not None and parent.trace_id == int(TRACE, 16)
    # Only the sampled bit is understood; other flag bits are not passed on.
    assert parent.trace_flags == TraceFlags(1)


def test_the_propagating_tracer_keeps_the_trace_and_makes_new_span_ids() -> None:
    tracer = tracing.PropagatingTracer()
    remote = SpanContext(
        int(TRACE, 16), int(SPAN, 16), True, TraceFlags(1), TraceState([("k", "v")])
    )
    children = [tracer.start("child", remote) for _ in range(50)]
    contexts = [c.get_span_context() for c in children]
    assert {c.trace_id for c in contexts} == {remote.trace_id}
    assert len({c.span_id for c in contexts}) == 50 and remote.span_id not in {
        c.span_id for c in contexts
    }
    assert all(c.trace_flags.sampled and c.trace_state == remote.trace_state for c in contexts)
    assert not any(c.is_recording() for c in children)
    roots = {tracer.start("root", None) for _ in range(50)}
    assert len({r.get_span_context().trace_id for r in roots}) == 50
    assert all(r.get_span_context().is_valid for r in roots)


def test_an_unrecorded_request_span_continues_the_caller_or_starts_a_trace() -> None:
    outside = tracing.current_span()
    token, new_trace = tracing.enter_unrecorded_span(f"00-{TRACE}-{SPAN}-01", "a=1")
    assert new_trace is None  # the caller's trace
    try:
        span = tracing.current_span()
        context = span.get_span_context()
        assert not span.is_recording() and context.is_valid and not context.is_remote
        assert f"{context.trace_id:032x}" == TRACE and f"{context.span_id:016x}" != SPAN
        assert context.trace_flags.sampled and context.trace_state.to_header() == "a=1"
        event = tracing.add_trace_ids(None, "info", {})
        assert event == {"trace_id": TRACE, "span_id": f"{context.span_id:016x}"}
    finally:
        tracing.leave_unrecorded_span(token)
    assert tracing.current_span() is outside
    for header in (None, "00-broken", f"00-{TRACE}-{SPAN}-01-extra"):
        token, new_trace = tracing.enter_unrecorded_span(header, None)
        try:
            context = tracing.current_span().get_span_context()
            assert context.is_valid and f"{context.trace_id:032x}" != TRACE
            assert new_trace == f"{context.trace_id:032x}"  # a new trace, and its id
            assert not context.trace_flags.sampled
        finally:
            tracing.leave_unrecorded_span(token)
    assert not tracing.Active.recording  # no exporter in these tests


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_TRACES_EXPORTER": "console"}, False),
        ({"OTEL_TRACES_EXPORTER": "console,otlp"}, True),
    ],
)
def test_export_only_when_the_otel_variables_configure_it(
    environ: dict[str, str], expected: bool
) -> None:
    assert tracing_export.exporter_configured(environ) is expected


def test_log_lines_carry_the_current_trace_and_span() -> None:
    assert tracing.add_trace_ids(None, "info", {"event": "x"}) == {"event": "x"}
    remote = SpanContext(int(TRACE, 16), int(SPAN, 16), False)
    with tracing.using(NonRecordingSpan(remote)):
        event = tracing.add_trace_ids(None, "info", {"event": "x"})
    assert event == {"event": "x", "trace_id": TRACE, "span_id": SPAN}


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_tracer(provider.get_tracer("test"))
    yield exporter
    tracing.use_tracer(None)
    provider.shutdown()


class _FakeStore:
    """Stands in for a backend: only the methods the wrapper looks for."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def get_booking(self, booking_id: str) -> Any:
        self.calls.append(booking_id)
        if booking_id == "boom":
            raise RuntimeError("store down")
        return {"id": booking_id}

    async def ping(self) -> None:
        self.calls.append("ping")


async def test_store_calls_get_spans_only_inside_a_trace(exporter: InMemorySpanExporter) -> None:
    store: Any = tracing.trace_store(_FakeStore())
    assert await store.get_booking("outside") == {"id": "outside"}
    assert exporter.get_finished_spans() == ()  # a background poll: no trace, no span

    with tracing.using(tracing.Active.tracer.start("request", None)) as outer:
        assert await store.get_booking("inside") == {"id": "inside"}
        with pytest.raises(RuntimeError):
            await store.get_booking("boom")
        await store.ping()
    outer.end()
    names = [s.name for s in exporter.get_finished_spans()]
    assert names == ["store get_booking", "store get_booking", "request"]
    ok, failed, request = exporter.get_finished_spans()
    assert ok.parent is not None and ok.parent.span_id == request.context.span_id
    assert ok.attributes is not None and ok.attributes["db.operation.name"] == "get_booking"
    assert not failed.status.is_ok and failed.status.description == "RuntimeError"
    assert store.calls == ["outside", "inside", "boom", "ping"]


async def test_concurrent_store_calls_are_siblings(exporter: InMemorySpanExporter) -> None:
    store: Any = tracing.trace_store(_FakeStore())
    with tracing.using(tracing.Active.tracer.start("request", None)) as outer:
        await asyncio.gather(*(store.get_booking(str(i)) for i in range(3)))
    outer.end()
    *calls, request = exporter.get_finished_spans()
    assert len(calls) == 3
    assert {c.parent.span_id for c in calls if c.parent} == {request.context.span_id}


def test_a_malformed_tracestate_is_dropped_without_a_log_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level("DEBUG"):
        parent = tracing.parse_traceparent(f"00-{TRACE}-{SPAN}-01", "a=1,%%not a member%%")
    assert parent is not None and parent.trace_id == int(TRACE, 16)
    assert parent.trace_state.to_header() == ""
    assert caplog.records == []


def test_an_upstream_span_names_the_call_and_records_its_answer_or_failure(
    exporter: InMemorySpanExporter,
) -> None:
    outer = tracing.Active.tracer.start("request", None)
    sent: dict[str, str] = {}
    with tracing.using(outer):
        ok = tracing.upstream_started("GET", "/v2/events/65a1b2", "vyte.example", 443, sent)
        tracing.upstream_ended(ok, 200, None)
        refused = tracing.upstream_started("GET", "/v2/slots", "vyte.example", 443, {})
        tracing.upstream_ended(refused, 503, None)
        failed = tracing.upstream_started("POST", "/v2/events", "vyte.example", 443, {})
        tracing.upstream_ended(failed, None, ConnectionResetError())
        cut = tracing.upstream_started("GET", "/v2/slots", "vyte.example", 443, {})
        tracing.upstream_ended(cut, 200, ValueError("body cut short"))
    outer.end()
    ok_span, refused_span, failed_span, cut_span, request = exporter.get_finished_spans()
    assert request.name == "request"
    assert ok_span.name == "GET /v2/events/{id}"  # no Vyte ids in span names
    assert all(
        s.parent is not None and s.parent.span_id == request.context.span_id
        for s in (ok_span, refused_span, failed_span, cut_span)
    )
    assert dict(ok_span.attributes or {}) == {
        "http.request.method": "GET",
        "server.address": "vyte.example",
        "server.port": 443,
        "url.path": "/v2/events/65a1b2",
        "peer.service": "vyte",
        "http.response.status_code": 200,
    }
    assert ok_span.status.is_unset
    assert sent["traceparent"] == tracing.format_traceparent(ok_span.context)
    assert refused_span.attributes is not None
    assert refused_span.attributes["http.response.status_code"] == 503
    assert not refused_span.status.is_ok and not refused_span.status.is_unset
    assert failed_span.attributes is not None
    assert failed_span.attributes["error.type"] == "ConnectionResetError"
    assert "http.response.status_code" not in failed_span.attributes
    assert failed_span.status.description == "ConnectionResetError"
    # An answer whose body failed: its status and the error, both.
    assert cut_span.attributes is not None
    assert cut_span.attributes["http.response.status_code"] == 200
    assert cut_span.attributes["error.type"] == "ValueError"


def test_without_an_exporter_upstream_calls_carry_child_ids_of_the_request() -> None:
    token, _ = tracing.enter_unrecorded_span(f"00-{TRACE}-{SPAN}-01", "k=v")
    try:
        request = tracing.current_span()
        first: dict[str, str] = {}
        second: dict[str, str] = {}
        for headers in (first, second):
            span = tracing.upstream_started("GET", "/v2/slots", "vyte.example", 443, headers)
            assert not span.is_recording()
            tracing.upstream_ended(span, 200, None)
        stored = tracing.current_trace_context()
    finally:
        tracing.leave_unrecorded_span(token)
    request_span = f"{request.get_span_context().span_id:016x}"
    assert stored == f"00-{TRACE}-{request_span}-01\nk=v"
    children = set()
    for headers in (first, second):
        version, trace_id, span_id, flags = headers["traceparent"].split("-")
        assert (version, trace_id, flags) == ("00", TRACE, "01")
        assert span_id not in (SPAN, request_span) and span_id != "0" * 16
        children.add(span_id)
        assert headers["tracestate"] == "k=v"
    assert len(children) == 2
    assert tracing.current_trace_context() is None  # outside any trace


def test_the_id_pools_never_hold_an_all_zero_id(monkeypatch: pytest.MonkeyPatch) -> None:
    # Zero bytes first, as the system's randomness could (once in 2^64) give them.
    real = os.urandom
    monkeypatch.setattr(spans.os, "urandom", lambda n: bytes(24) + real(n - 24))
    spans._forget_ids()
    try:
        pairs = [spans.new_ids() for _ in range(spans._POOL)]
        span_ids = [spans.new_span_hex() for _ in range(spans._POOL)]
    finally:
        spans._forget_ids()
    assert all(t != "0" * 32 and s != "0" * 16 for t, s in pairs)
    assert "0" * 16 not in span_ids
    assert all(len(t) == 32 and len(s) == 16 for t, s in pairs)
    # The zeros left out, a pool's worth took a second refill: every id still new.
    assert len({t for t, _ in pairs}) == spans._POOL

"""service.otlp: sampler rules, the recorded span, its protobuf (decoded with
opentelemetry-proto), the bounded queue, the OTEL_* settings and the export over HTTP."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status as ProtoStatus
from opentelemetry.sdk.trace.sampling import TraceIdRatioBased
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from service import tracing, tracing_export
from service.otlp import encoding
from service.otlp.export import BatchExporter, ExportSettings, HTTPPoster, settings
from service.otlp.spans import RecordingSpan, RecordingTracer, sampler
from tests.e2e.process import free_port
from tests.otlp import Receiver, otlp_receiver

TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
PARENT = 0x00F067AA0BA902B7


def remote_parent(sampled: bool = True, state: TraceState | None = None) -> Context:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    remote = SpanContext(TRACE, PARENT, is_remote=True, trace_flags=flags, trace_state=state)
    return trace.set_span_in_context(NonRecordingSpan(remote), Context())


def decode(body: bytes) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest.FromString(body)


def spans_of(request: ExportTraceServiceRequest) -> list[ProtoSpan]:
    return [s for rs in request.resource_spans for ss in rs.scope_spans for s in ss.spans]


def attributes(span: Any) -> dict[str, Any]:
    found = {}
    for kv in span.attributes:
        which = kv.value.WhichOneof("value")
        value = getattr(kv.value, which)
        if which == "array_value":
            value = [getattr(v, v.WhichOneof("value")) for v in value.values]
        found[kv.key] = value
    return found


class Posts:
    """Stands in for the HTTP poster: keeps every body."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.times: list[float] = []

    def __call__(self, body: bytes) -> bool:
        self.times.append(time.monotonic())
        self.bodies.append(body)
        return True

    def wait(self, count: int, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.bodies) < count and time.monotonic() < deadline:
            time.sleep(0.01)

    def spans(self) -> list[ProtoSpan]:
        return [s for body in self.bodies for s in spans_of(decode(body))]


def unstarted(posts: Posts, **config: Any) -> BatchExporter:
    """An exporter whose thread never runs: shutdown() exports in the calling thread."""
    return BatchExporter(ExportSettings(**config), {"service.name": "test"}, "test", posts)


# -- sampling ----------------------------------------------------------------------------------


def ids(count: int) -> list[int]:
    generator = random.Random(7)
    return [generator.getrandbits(128) or 1 for _ in range(count)]


@pytest.mark.parametrize(
    ("environ", "root", "sampled_parent", "unsampled_parent"),
    [
        ({}, True, True, False),  # parentbased_always_on, the SDK's default
        ({"OTEL_TRACES_SAMPLER": "parentbased_always_on"}, True, True, False),
        ({"OTEL_TRACES_SAMPLER": "parentbased_always_off"}, False, True, False),
        ({"OTEL_TRACES_SAMPLER": "always_on"}, True, True, True),
        ({"OTEL_TRACES_SAMPLER": "always_off"}, False, False, False),
        ({"OTEL_TRACES_SAMPLER": " Always_On "}, True, True, True),
        ({"OTEL_TRACES_SAMPLER": "jaeger_remote"}, True, True, False),  # unsupported: default
    ],
)
def test_the_sampler_follows_its_rule_and_the_parent(
    environ: dict[str, str], root: bool, sampled_parent: bool, unsampled_parent: bool
) -> None:
    sample = sampler(environ)
    on = SpanContext(TRACE, PARENT, True, TraceFlags(TraceFlags.SAMPLED))
    off = SpanContext(TRACE, PARENT, True, TraceFlags(TraceFlags.DEFAULT))
    assert sample(trace.INVALID_SPAN_CONTEXT, TRACE) is root
    assert sample(on, TRACE) is sampled_parent
    assert sample(off, TRACE) is unsampled_parent
    assert sample.roots is root  # these rules answer every new trace alike


@pytest.mark.parametrize("rate", ["0", "0.001", "0.25", "0.5", "0.9", "1"])
def test_the_ratio_rule_keeps_the_traces_the_sdk_keeps(rate: str) -> None:
    ours = sampler({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": rate})
    sdk = TraceIdRatioBased(float(rate))
    decisions = [ours(trace.INVALID_SPAN_CONTEXT, t) for t in ids(4000)]
    expected = [sdk.should_sample(None, t, "span").decision.is_sampled() for t in ids(4000)]
    assert decisions == expected
    assert abs(sum(decisions) / 4000 - float(rate)) < 0.05
    assert ours.roots is None  # it depends on the trace id: asked each time


def test_a_request_span_from_a_ratio_rule_is_sampled_by_its_trace_id() -> None:
    ended: list[Any] = []
    tracer = RecordingTracer(
        sampler({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.5"}),
        ended.append,
    )
    spans = [tracer.start_request(None, None, "GET", "/v1/x") for _ in range(400)]
    recorded = [s.is_recording() for s in spans]
    assert recorded == [int(s.trace_hex[16:], 16) < 1 << 63 for s in spans]
    assert 120 < sum(recorded) < 280


def test_a_parent_based_ratio_follows_a_parent_and_samples_roots_by_ratio() -> None:
    sample = sampler(
        {"OTEL_TRACES_SAMPLER": "parentbased_traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.1"}
    )
    off = SpanContext(TRACE, PARENT, True, TraceFlags(TraceFlags.DEFAULT))
    on = SpanContext(TRACE, PARENT, True, TraceFlags(TraceFlags.SAMPLED))
    roots = [sample(trace.INVALID_SPAN_CONTEXT, t) for t in ids(4000)]
    assert 0.07 < sum(roots) / 4000 < 0.13
    assert all(sample(on, t) for t in ids(100)) and not any(sample(off, t) for t in ids(100))


@pytest.mark.parametrize("arg", ["", "lots", "1.5", "-0.1"])
def test_a_bad_ratio_samples_everything(arg: str) -> None:
    sample = sampler({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": arg})
    assert all(sample(trace.INVALID_SPAN_CONTEXT, t) for t in ids(200))


# -- spans -------------------------------------------------------------------------------------


def test_a_recorded_child_keeps_the_trace_and_a_sampled_out_one_records_nothing() -> None:
    ended: list[RecordingSpan] = []
    tracer = RecordingTracer(sampler({}), ended.append)
    state = TraceState([("vendor", "x")])
    span = tracer.start_span("child", context=remote_parent(state=state), kind=SpanKind.SERVER)
    own = span.get_span_context()
    assert isinstance(span, RecordingSpan) and span.is_recording()
    assert own.trace_id == TRACE and own.span_id not in (0, PARENT)
    assert own.trace_flags.sampled and own.trace_state == state and not own.is_remote
    assert span.parent_id == PARENT and span.remote_parent
    span.end()
    span.end()
    assert ended == [span] and not span.is_recording()

    unsampled = tracer.start_span("child", context=remote_parent(sampled=False))
    assert not unsampled.is_recording() and not unsampled.get_span_context().trace_flags.sampled
    assert unsampled.get_span_context().trace_id == TRACE
    unsampled.end()
    assert ended == [span]

    root = tracer.start_span("root", context=Context())
    assert root.get_span_context().trace_id != TRACE and root.parent_id == 0  # type: ignore[attr-defined]
    assert not root.remote_parent  # type: ignore[attr-defined]


def test_the_current_span_is_the_parent_when_no_context_is_given() -> None:
    tracer = RecordingTracer(sampler({}), lambda span: None)
    parent = tracer.start_span("parent", context=Context())
    token = otel_context.attach(trace.set_span_in_context(parent))
    try:
        child = tracer.start_span("child")
    finally:
        otel_context.detach(token)
    assert child.parent_id == parent.get_span_context().span_id  # type: ignore[attr-defined]
    assert not child.remote_parent  # type: ignore[attr-defined]


def test_a_span_takes_no_change_once_ended_and_keeps_an_ok_status() -> None:
    span = RecordingTracer(sampler({}), lambda s: None).start_span("s", attributes={"a": 1})
    assert isinstance(span, RecordingSpan)
    span.set_status(StatusCode.UNSET)
    assert span.status_code is StatusCode.UNSET
    span.set_status(Status(StatusCode.ERROR, "boom"))
    assert (span.status_code, span.status_message) == (StatusCode.ERROR, "boom")
    span.set_status(StatusCode.OK, "a description only an error keeps")
    assert (span.status_code, span.status_message) == (StatusCode.OK, "")
    span.set_status(StatusCode.ERROR)
    assert span.status_code is StatusCode.OK
    span.set_attributes({"b": "x"})
    span.end()
    span.set_attribute("c", 3)
    span.set_attributes({"d": 4})
    span.add_event("late")
    span.update_name("renamed")
    assert dict(span.attributes) == {"a": 1, "b": "x"} and span.name == "s"
    assert span.events == () and span.end_time >= span.start_time > 0


def test_attributes_and_events_past_their_limits_are_dropped_and_counted() -> None:
    span = RecordingTracer(sampler({}), lambda s: None).start_span("s")
    assert isinstance(span, RecordingSpan)
    span.set_attributes({f"k{i}": i for i in range(100)})
    span.set_attributes({f"k{i}": -i for i in range(90, 140)})  # 10 updates, 40 new
    assert len(span.attributes) == 128 and span.dropped_attributes == 12
    assert span.attributes["k95"] == -95
    for i in range(130):
        span.add_event(f"e{i}")
    assert len(span.events) == 128 and span.dropped_events == 2


def test_used_as_a_context_manager_a_span_records_the_exception() -> None:
    ended: list[RecordingSpan] = []
    span = RecordingTracer(sampler({}), ended.append).start_span("s")
    with pytest.raises(ValueError), span:
        raise ValueError("bad input")
    assert ended == [span]
    assert span.status_code is StatusCode.ERROR  # type: ignore[attr-defined]
    assert span.status_message == "ValueError: bad input"  # type: ignore[attr-defined]
    ((name, _, recorded),) = span.events  # type: ignore[attr-defined]
    assert name == "exception" and recorded["exception.type"] == "ValueError"


# -- encoding ----------------------------------------------------------------------------------


def test_spans_decode_with_opentelemetry_proto_as_they_were_recorded() -> None:
    posts = Posts()
    exporter = unstarted(posts)
    tracer = RecordingTracer(sampler({}), exporter.add)
    state = TraceState([("vendor", "x"), ("other", "y")])
    server = tracer.start_span("GET /v1/availability", remote_parent(state=state), SpanKind.SERVER)
    values: dict[str, Any] = {
        "text": "héllo",
        "count": 200,
        "negative": -3,
        "big": 2**40,
        "flag": True,
        "off": False,
        "ratio": 0.25,
        "names": ["a", "b"],
        "numbers": (1, 2),
    }
    server.set_attributes(values)
    server.set_attribute("unsupported", object())  # type: ignore[arg-type]
    client = tracer.start_span(
        "GET /v2/slots",
        trace.set_span_in_context(server),
        SpanKind.CLIENT,
        attributes={"peer.service": "vyte"},
    )
    client.add_event("retry", {"attempt": 2}, timestamp=123)
    client.set_status(Status(StatusCode.ERROR, "ClientError"))
    client.end()
    server.set_status(StatusCode.OK)
    server.end()
    exporter.shutdown()

    (body,) = posts.bodies
    request = decode(body)
    (resource_spans,) = request.resource_spans
    assert attributes(resource_spans.resource) == {"service.name": "test"}
    (scope_spans,) = resource_spans.scope_spans
    assert scope_spans.scope.name == "test"
    got_client, got_server = scope_spans.spans
    recorded_server = server.get_span_context()
    assert got_server.trace_id == TRACE.to_bytes(16, "big")
    assert got_server.span_id == recorded_server.span_id.to_bytes(8, "big")
    assert got_server.parent_span_id == PARENT.to_bytes(8, "big")
    assert got_server.trace_state == "vendor=x,other=y"
    assert (
        got_server.name == "GET /v1/availability" and got_server.kind == ProtoSpan.SPAN_KIND_SERVER
    )
    assert got_server.start_time_unix_nano == server.start_time  # type: ignore[attr-defined]
    assert got_server.end_time_unix_nano == server.end_time  # type: ignore[attr-defined]
    assert attributes(got_server) == {**values, "names": ["a", "b"], "numbers": [1, 2]}
    assert got_server.status.code == ProtoStatus.STATUS_CODE_OK
    assert got_server.flags == 0x300  # the parent's remoteness is known, and it is remote

    assert (
        got_client.parent_span_id == got_server.span_id
        and got_client.trace_id == TRACE.to_bytes(16, "big")
    )
    assert got_client.kind == ProtoSpan.SPAN_KIND_CLIENT and got_client.flags == 0x100
    assert attributes(got_client) == {"peer.service": "vyte"}
    assert got_client.status.code == ProtoStatus.STATUS_CODE_ERROR
    assert got_client.status.message == "ClientError"
    (event,) = got_client.events
    assert (event.name, event.time_unix_nano, attributes(event)) == ("retry", 123, {"attempt": 2})


class ThroughTheApi:
    """The same tracer, seen by service.tracing as any other one: its request spans are
    RecordingSpans, ended through the span API."""

    def __init__(self, tracer: RecordingTracer) -> None:
        self._tracer = tracer

    def start(self, *args: Any, **kwargs: Any) -> trace.Span:
        return self._tracer.start(*args, **kwargs)


def served(
    tracer: Any, traceparent: str | None, tracestate: str | None, status: int, rid: str | None
) -> tuple[tuple[str, str] | None, list[str], dict[str, str]]:
    """One request through the request span hooks: the trace and span ids its log lines get
    (hex), and the fields of its Vyte call's traceparent and that call's headers."""
    tracing.use_tracer(tracer)
    try:
        route = "/v1/availability" if status < 500 else None
        span, new_trace = tracing.start_server_span(
            "GET", route, "/v1/availability", traceparent, tracestate
        )
        logged = tracing._hex_ids(tracing.current_span())
        # A new trace's id comes back (to be the request id), the caller's does not.
        assert logged is not None
        assert new_trace == (None if tracing.parse_traceparent(traceparent) else logged[0])
        headers: dict[str, str] = {}
        call = tracing.upstream_started("GET", "/v2/slots", "vyte.test", 443, headers)
        tracing.upstream_ended(call, 200, None)
        tracing.leave_server_span(span, status, rid)
        return logged, headers["traceparent"].split("-"), headers
    finally:
        tracing.use_tracer(None)


@pytest.mark.parametrize(
    ("traceparent", "tracestate", "status", "rid"),
    [
        (None, None, 200, "0123456789abcdef0123456789abcdef"),
        (f"00-{TRACE:032x}-{PARENT:016x}-01", "vendor=x,other=y", 503, None),
        # A caller's request id of up to 128 characters: past 106, lengths take two bytes.
        (f"00-{TRACE:032x}-{PARENT:016x}-01", None, 404, "r" * 106),
        (None, None, 200, "é" * 64),
    ],
)
def test_a_request_span_encodes_as_the_span_the_api_records(
    traceparent: str | None, tracestate: str | None, status: int, rid: str | None
) -> None:
    ended: list[Any] = []
    tracer = RecordingTracer(sampler({}), ended.append)
    lean_ids = served(tracer, traceparent, tracestate, status, rid)
    api_ids = served(ThroughTheApi(tracer), traceparent, tracestate, status, rid)
    # The request span is a RequestRecord one way, a RecordingSpan the other; each after
    # its Vyte call's span.
    kinds = [type(item).__name__ for item in ended]
    assert kinds == ["RecordingSpan", "RequestRecord", "RecordingSpan", "RecordingSpan"]
    posts = Posts()
    exporter = unstarted(posts)
    for item in ended:
        exporter.add(item)
    exporter.shutdown()
    lean_call, lean, api_call, api = posts.spans()
    assert ("http.request.id" in attributes(lean)) == (rid is not None)
    assert lean.status.code == (ProtoStatus.STATUS_CODE_ERROR if status >= 500 else 0)
    if traceparent is not None:
        assert lean.trace_id == api.trace_id == TRACE.to_bytes(16, "big")
    for call, request, (logged, sent, _) in ((lean_call, lean, lean_ids), (api_call, api, api_ids)):
        # Its log lines and its Vyte call name the span that was exported, which holds the
        # call's span.
        assert logged == (request.trace_id.hex(), request.span_id.hex())
        assert sent[1:3] == [request.trace_id.hex(), call.span_id.hex()]
        assert call.parent_span_id == request.span_id and call.trace_id == request.trace_id
        assert request.start_time_unix_nano <= call.start_time_unix_nano
        assert call.end_time_unix_nano <= request.end_time_unix_nano
    # The same bytes, once what differs by nature (its own ids and times) is the same.
    for field in ("trace_id", "span_id", "start_time_unix_nano", "end_time_unix_nano"):
        setattr(api, field, getattr(lean, field))
    assert lean.SerializeToString() == api.SerializeToString()


def test_a_request_sampled_out_records_nothing_and_keeps_the_trace_going() -> None:
    ended: list[Any] = []
    unsampled = f"00-{TRACE:032x}-{PARENT:016x}-00"
    tracer = RecordingTracer(sampler({}), ended.append)
    logged, sent, headers = served(tracer, unsampled, "x=y", 200, "r")
    assert ended == []
    # The caller's trace goes on to Vyte, unsampled, with its tracestate.
    assert logged is not None and logged[0] == sent[1] == f"{TRACE:032x}"
    assert sent[3] == "00" and headers["tracestate"] == "x=y"
    never = RecordingTracer(
        sampler({"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0"}),
        ended.append,
    )
    logged, sent, headers = served(never, None, None, 200, "r")
    assert ended == [] and logged is not None and logged[0] == sent[1]
    assert sent[3] == "00" and "tracestate" not in headers


def test_repeated_attribute_values_encode_as_the_first_did() -> None:
    tracer = RecordingTracer(sampler({}), lambda s: None)
    encoded = []
    for value in ["GET", "GET", 1, True, 1.0, 1, "GET"]:
        span = tracer.start_span("s", attributes={"key": value})
        span.end()
        encoded.append(attributes(spans_of(decode(encoding.encode_request(b"", b"", [span])))[0]))  # type: ignore[arg-type]
    assert [e["key"] for e in encoded] == ["GET", "GET", 1, True, 1.0, 1, "GET"]
    assert [type(e["key"]) for e in encoded] == [str, str, int, bool, float, int, str]


# -- the queue ---------------------------------------------------------------------------------


def test_a_full_queue_drops_spans_and_counts_them() -> None:
    posts = Posts()
    exporter = unstarted(posts, max_queue=3, max_batch=2)
    tracer = RecordingTracer(sampler({}), exporter.add)
    for i in range(5):
        tracer.start_span(f"span {i}", context=Context()).end()
    assert exporter.dropped == 2
    exporter.shutdown()
    assert [len(spans_of(decode(b))) for b in posts.bodies] == [2, 1]  # batches of max_batch
    assert [s.name for s in posts.spans()] == ["span 0", "span 1", "span 2"]
    assert exporter.exported == 3


def test_the_thread_exports_a_full_batch_at_once_and_the_rest_after_the_delay() -> None:
    posts = Posts()
    exporter = unstarted(posts, max_batch=4, schedule_delay=1.0)
    exporter.start()
    tracer = RecordingTracer(sampler({}), exporter.add)
    try:
        for _ in range(5):
            tracer.start_span("s", context=Context()).end()
        ended = time.monotonic()
        posts.wait(2)
    finally:
        exporter.shutdown()
    assert [len(spans_of(decode(b))) for b in posts.bodies] == [4, 1]
    assert posts.times[0] - ended < 0.9  # full: sent without waiting for the delay
    assert posts.times[1] - ended > 0.9  # the rest: after it


def test_flush_exports_what_is_queued_without_waiting_for_the_delay() -> None:
    posts = Posts()
    exporter = unstarted(posts, max_batch=4, schedule_delay=60.0)
    assert not exporter.flush(timeout=0.1)  # no thread: nothing can export
    exporter.start()
    tracer = RecordingTracer(sampler({}), exporter.add)
    try:
        for i in range(6):
            tracer.start_span(f"span {i}", context=Context()).end()
        assert exporter.flush(timeout=5)  # well within the minute's delay
        # Already posted when flush returns: the full batch and the partial one.
        assert [len(spans_of(decode(b))) for b in posts.bodies] == [4, 2]
        assert exporter.exported == 6
        assert exporter.flush(timeout=5)  # an empty queue: nothing more is posted
        assert len(posts.bodies) == 2
    finally:
        exporter.shutdown()
    assert [s.name for s in posts.spans()] == [f"span {i}" for i in range(6)]


def test_a_batch_that_fails_to_encode_is_dropped_and_the_thread_goes_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    posts = Posts()
    exporter = unstarted(posts, max_batch=1, schedule_delay=0.01)
    real = encoding.encode_span

    def encode_span(span: RecordingSpan) -> bytes:
        if span.name == "bad":
            raise ValueError("a bug")
        return real(span)

    monkeypatch.setattr(encoding, "encode_span", encode_span)
    exporter.start()
    tracer = RecordingTracer(sampler({}), exporter.add)
    try:
        for name in ("bad", "good"):
            tracer.start_span(name, context=Context()).end()
            time.sleep(0.05)
        posts.wait(1)
    finally:
        exporter.shutdown()
    assert [s.name for s in posts.spans()] == ["good"] and exporter.exported == 1


# -- settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "endpoint"),
    [
        ({}, "http://localhost:4318/v1/traces"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"},
            "http://collector:4318/v1/traces",
        ),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "https://c/otlp/"}, "https://c/otlp/v1/traces"),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://ignored:4318",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/custom",
            },
            "http://collector:4318/custom",  # the signal's own endpoint is used as it is
        ),
    ],
)
def test_the_endpoint_is_the_sdks(environ: dict[str, str], endpoint: str) -> None:
    assert settings(environ).endpoint == endpoint


def test_headers_timeout_and_batching_come_from_the_otel_variables() -> None:
    got = settings(
        {
            "OTEL_EXPORTER_OTLP_HEADERS": "api-key=secret, X-Team=a%20b,broken",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "2.5",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "gzip",
            "OTEL_BSP_SCHEDULE_DELAY": "250",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "64",
            "OTEL_BSP_MAX_QUEUE_SIZE": "100",
        }
    )
    assert dict(got.headers) == {"api-key": "secret", "x-team": "a b"}
    assert got.timeout == 2.5 and got.compression == "gzip"
    assert (got.schedule_delay, got.max_batch, got.max_queue) == (0.25, 64, 100)

    traces = settings(
        {
            "OTEL_EXPORTER_OTLP_HEADERS": "a=1",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS": "b=2",
            "OTEL_EXPORTER_OTLP_TIMEOUT": "3",
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT": "4",
        }
    )
    assert dict(traces.headers) == {"b": "2"} and traces.timeout == 4.0


def test_bad_values_fall_back_to_the_defaults() -> None:
    got = settings(
        {
            "OTEL_EXPORTER_OTLP_TIMEOUT": "soon",
            "OTEL_EXPORTER_OTLP_COMPRESSION": "zstd",
            "OTEL_BSP_SCHEDULE_DELAY": "-1",
            "OTEL_BSP_MAX_QUEUE_SIZE": "0",
            "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "many",
        }
    )
    assert got == ExportSettings()
    # A batch larger than the queue could never fill: it is cut to the queue's size.
    assert settings({"OTEL_BSP_MAX_QUEUE_SIZE": "100"}).max_batch == 100


# -- over HTTP ---------------------------------------------------------------------------------


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with otlp_receiver() as receiver:
        yield receiver


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_TRACES_SAMPLER"):
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch
    tracing.use_tracer(None)


async def test_the_export_context_posts_what_is_left_when_the_app_stops(
    receiver: Receiver, environ: pytest.MonkeyPatch
) -> None:
    environ.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    environ.setenv("OTEL_BSP_SCHEDULE_DELAY", "60000")  # nothing leaves before the stop
    environ.setenv("OTEL_SERVICE_NAME", "svc-under-test")
    context = tracing_export.export(object())
    await anext(context)
    span, _ = tracing.start_server_span("GET", "/v1/things", "/v1/things", None, None)
    tracing.leave_server_span(span, 503, "req-1")
    await asyncio.sleep(0.1)
    assert receiver.spans == []
    with pytest.raises(StopAsyncIteration):
        await anext(context)
    (got,) = receiver.spans
    assert got.name == "GET /v1/things" and got.service == "svc-under-test"
    assert got.attributes["http.response.status_code"] == 503
    assert got.attributes["http.request.id"] == "req-1"
    assert tracing.Active.tracer is tracing._PROPAGATING  # back to recording nothing


@pytest.fixture
async def flaky() -> AsyncIterator[dict[str, Any]]:
    """An OTLP endpoint that answers 503 first, then 200, and keeps what it was sent."""
    state: dict[str, Any] = {"script": [503], "requests": []}

    async def traces(request: web.Request) -> web.Response:
        body = await request.read()  # aiohttp undoes a Content-Encoding itself
        state["requests"].append((dict(request.headers), body))
        return web.Response(status=state["script"].pop(0) if state["script"] else 200)

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state["url"] = str(server.make_url("/v1/traces"))
    yield state
    await server.close()


async def test_a_503_is_retried_with_the_configured_headers(flaky: dict[str, Any]) -> None:
    config = ExportSettings(
        endpoint=flaky["url"], headers={"api-key": "secret"}, timeout=5, compression="gzip"
    )
    poster = HTTPPoster(config, threading.Event())
    tracer_spans = Posts()
    exporter = unstarted(tracer_spans)
    RecordingTracer(sampler({}), exporter.add).start_span("s", context=Context()).end()
    exporter.shutdown()
    started = time.monotonic()
    try:
        assert await asyncio.to_thread(poster, tracer_spans.bodies[0])
    finally:
        poster.close()
    assert 0.7 < time.monotonic() - started < 3  # one backoff of about a second
    (first_headers, first), (_, second) = flaky["requests"]
    assert first == second == tracer_spans.bodies[0]
    assert first_headers["api-key"] == "secret"
    assert first_headers["Content-Type"] == "application/x-protobuf"
    assert first_headers["Content-Encoding"] == "gzip"


async def test_a_400_is_not_retried(flaky: dict[str, Any]) -> None:
    flaky["script"] = [400]
    poster = HTTPPoster(ExportSettings(endpoint=flaky["url"]), threading.Event())
    try:
        assert not await asyncio.to_thread(poster, b"")
    finally:
        poster.close()
    assert len(flaky["requests"]) == 1


def test_abort_ends_the_retries_against_a_dead_collector() -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1/traces"
    posts: list[bool] = []
    exporter = BatchExporter(
        ExportSettings(endpoint=dead, timeout=30, schedule_delay=0.01), {}, "test"
    )
    real_post = exporter._post
    exporter._post = lambda body: posts.append(real_post(body)) or False  # type: ignore[method-assign]
    exporter.start()
    RecordingTracer(sampler({}), exporter.add).start_span("s", context=Context()).end()
    deadline = time.monotonic() + 5
    while exporter._queue and time.monotonic() < deadline:  # taken: being posted
        time.sleep(0.01)
    time.sleep(0.1)  # the first attempt failed: the thread waits out its backoff
    started = time.monotonic()
    exporter.abort()
    exporter._thread.join(2)
    assert not exporter._thread.is_alive() and time.monotonic() - started < 1
    assert posts == [False]

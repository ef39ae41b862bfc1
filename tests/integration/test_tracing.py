"""Trace context through the real app: the request span, the upstream fan-out, store calls, logs.

Vyte is the sandbox behind a recording proxy, so the `traceparent` each upstream call carried
can be compared with the spans the gateway recorded (an in-memory SDK exporter).
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp
import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from service import logging as service_logging
from service import tracing
from tests.conftest import AUTH
from tests.dates import iso, meeting_day

PEOPLE = ("5f3feb7821046c3bb9327e6a", "5f3feb7821046c3bb9327e6b", "5f3feb7821046c3bb9327e6c")
INCOMING_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING_PARENT = "00f067aa0ba902b7"


@attrs.define
class RecordingVyte:
    """Forwards every request to the sandbox and remembers what headers it came with."""

    url: str = ""
    seen: list[tuple[str, str, dict[str, str]]] = attrs.field(factory=list)

    def traceparents(self, method: str, path: str) -> list[str]:
        return [h["traceparent"] for m, p, h in self.seen if (m, p) == (method, path)]


@pytest.fixture
async def vyte(sandbox_url: str) -> AsyncIterator[RecordingVyte]:
    state = RecordingVyte()
    async with aiohttp.ClientSession() as upstream:

        async def forward(request: web.Request) -> web.Response:
            state.seen.append((request.method, request.path, dict(request.headers)))
            async with upstream.request(
                request.method,
                sandbox_url + request.path_qs,
                data=await request.read(),
                headers={
                    k: v
                    for k, v in request.headers.items()
                    if k.lower() in ("authorization", "content-type", "accept")
                },
            ) as resp:
                body = await resp.read()
                return web.Response(status=resp.status, body=body, content_type=resp.content_type)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", forward)
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        state.url = str(server.make_url("")).rstrip("/")
        yield state
        await server.close()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.use_tracer(provider.get_tracer("test"))
    yield exporter
    tracing.use_tracer(None)
    provider.shutdown()


@pytest.fixture
def logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    yield stream
    service_logging.reset()


def query() -> str:
    first = datetime.now(UTC).date() + timedelta(days=14)
    params = {
        "participants": ",".join(PEOPLE),
        "duration": "60",
        "from": first.isoformat(),
        "to": (first + timedelta(days=1)).isoformat(),
        "timezone": "Europe/Paris",
    }
    return "/v1/availability?" + urlencode(params)


def lines(stream: io.StringIO, **match: Any) -> list[dict[str, Any]]:
    parsed = [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
    return [p for p in parsed if all(p.get(k) == v for k, v in match.items())]


def parts(traceparent: str) -> tuple[str, str, str]:
    version, trace_id, span_id, flags = traceparent.split("-")
    assert version == "00"
    return trace_id, span_id, flags


def hex_span(span: ReadableSpan) -> str:
    return f"{span.context.span_id:016x}"


async def test_an_incoming_trace_continues_into_every_upstream_call(
    gateway_factory: Any, vyte: RecordingVyte
) -> None:
    gateway = await gateway_factory(vyte_base_url=vyte.url, slot_cache_ttl=0)
    incoming = f"00-{INCOMING_TRACE}-{INCOMING_PARENT}-01"
    resp = await gateway.get(
        query(), headers={**AUTH, "traceparent": incoming, "tracestate": "vendor=abc,other=1"}
    )
    assert resp.status == 200, await resp.text()

    sent = vyte.traceparents("GET", "/v2/slots")
    assert len(sent) == len(PEOPLE)
    assert {parts(t)[0] for t in sent} == {INCOMING_TRACE}
    assert {parts(t)[2] for t in sent} == {"01"}  # the caller's sampling decision goes on
    children = {parts(t)[1] for t in sent}
    assert len(children) == len(PEOPLE) and INCOMING_PARENT not in children
    assert {h["tracestate"] for m, _, h in vyte.seen if m == "GET"} == {"vendor=abc,other=1"}


async def test_without_a_traceparent_one_trace_starts_and_its_id_is_in_the_logs(
    gateway_factory: Any, vyte: RecordingVyte, logs: io.StringIO
) -> None:
    gateway = await gateway_factory(vyte_base_url=vyte.url, slot_cache_ttl=0)
    service_logging.configure("info", "json", stream=logs)
    for _ in range(2):
        resp = await gateway.get(query(), headers={**AUTH, "traceparent": "00-zz-broken-01"})
        assert resp.status == 200

    sent = vyte.traceparents("GET", "/v2/slots")
    assert len(sent) == 2 * len(PEOPLE)
    first, second = {parts(t)[0] for t in sent[:3]}, {parts(t)[0] for t in sent[3:]}
    assert len(first) == len(second) == 1 and first != second  # one new trace per request
    (trace_id,) = first
    assert trace_id != "0" * 32

    (access,) = lines(logs, event="request", trace_id=trace_id)
    assert access["route"] == "/v1/availability" and len(access["span_id"]) == 16
    upstream = lines(logs, event="upstream", trace_id=trace_id)
    assert len(upstream) == len(PEOPLE)
    # Log lines name the request's span; each upstream call is a child of it.
    assert {u["span_id"] for u in upstream} == {access["span_id"]}


async def test_a_request_that_starts_a_trace_is_named_by_its_trace_id(
    gateway_factory: Any, vyte: RecordingVyte, logs: io.StringIO
) -> None:
    gateway = await gateway_factory(vyte_base_url=vyte.url, slot_cache_ttl=0)
    service_logging.configure("info", "json", stream=logs)
    started = await gateway.get(query(), headers=AUTH)
    continued = await gateway.get(
        query(), headers={**AUTH, "traceparent": f"00-{INCOMING_TRACE}-{INCOMING_PARENT}-01"}
    )
    named = await gateway.get(query(), headers={**AUTH, "X-Request-ID": "caller-chose-this"})
    assert started.status == continued.status == named.status == 200

    sent = vyte.traceparents("GET", "/v2/slots")
    new_trace = parts(sent[0])[0]
    # No request id given: the new trace's random id is the request id too.
    assert started.headers["X-Request-ID"] == new_trace
    (access,) = lines(logs, event="request", trace_id=new_trace)
    assert access["request_id"] == new_trace
    # The caller's trace is not a request's id: one is drawn for it.
    drawn = continued.headers["X-Request-ID"]
    assert len(drawn) == 32 and drawn not in (INCOMING_TRACE, new_trace)
    assert named.headers["X-Request-ID"] == "caller-chose-this"
    assert parts(sent[2 * len(PEOPLE)])[0] not in ("caller-chose-this", new_trace)


async def test_spans_the_request_its_parallel_upstream_children_and_store_calls(
    gateway_factory: Any, vyte: RecordingVyte, spans: InMemorySpanExporter
) -> None:
    gateway = await gateway_factory(vyte_base_url=vyte.url, slot_cache_ttl=0)
    incoming = f"00-{INCOMING_TRACE}-{INCOMING_PARENT}-01"
    resp = await gateway.get(query(), headers={**AUTH, "traceparent": incoming})
    assert resp.status == 200

    finished = [
        s for s in spans.get_finished_spans() if s.context.trace_id == int(INCOMING_TRACE, 16)
    ]
    (request,) = [s for s in finished if s.kind == SpanKind.SERVER]
    assert request.name == "GET /v1/availability"
    assert request.parent is not None and request.parent.span_id == int(INCOMING_PARENT, 16)
    assert request.attributes is not None
    assert request.attributes["http.response.status_code"] == 200
    assert request.attributes["http.request.id"] == resp.headers["X-Request-ID"]

    upstream = [s for s in finished if s.name == "GET /v2/slots"]
    assert len(upstream) == len(PEOPLE)
    assert all(
        s.parent is not None and s.parent.span_id == request.context.span_id for s in upstream
    )
    # What Vyte was sent is exactly these spans.
    assert {hex_span(s) for s in upstream} == {
        parts(t)[1] for t in vyte.traceparents("GET", "/v2/slots")
    }
    # The fan-out runs in parallel: every call started before any of them ended.
    assert max(s.start_time or 0 for s in upstream) < min(s.end_time or 0 for s in upstream)
    for s in upstream:
        assert s.attributes is not None and s.attributes["http.response.status_code"] == 200
        assert "users=" not in str(dict(s.attributes))  # no participants in span attributes

    # The availability path's store read has no span of its own (it is the warm path).
    assert not [s for s in finished if s.name.startswith("store ")]

    resp = await gateway.get("/v1/subscriptions", headers={**AUTH, "traceparent": incoming})
    assert resp.status == 200
    (listing,) = [s for s in spans.get_finished_spans() if s.name == "GET /v1/subscriptions"]
    (store,) = [s for s in spans.get_finished_spans() if s.name == "store list_subscriptions"]
    assert store.kind == SpanKind.CLIENT
    assert store.parent is not None and store.parent.span_id == listing.context.span_id


async def test_probes_carry_trace_ids_but_are_never_recorded(
    gateway: Any, spans: InMemorySpanExporter
) -> None:
    sampled = {"traceparent": f"00-{INCOMING_TRACE}-{INCOMING_PARENT}-01"}
    for path in ("/livez", "/readyz", "/metrics"):
        resp = await gateway.get(path, headers=sampled)
        assert resp.status == 200
    # Nothing recorded: not the probes, not the store calls they make, not the background
    # polls of the store (no trace around them).
    assert [(x.name, x.parent) for x in spans.get_finished_spans()] == []
    resp = await gateway.get("/v1/subscriptions", headers={**AUTH, **sampled})
    assert resp.status == 200
    assert [s.name for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER] == [
        "GET /v1/subscriptions"
    ]


async def test_an_accepted_operation_continues_the_accepting_requests_trace(
    gateway_factory: Any, vyte: RecordingVyte, spans: InMemorySpanExporter
) -> None:
    gateway = await gateway_factory(vyte_base_url=vyte.url)
    day = meeting_day()
    body = {
        "organizer": PEOPLE[0],
        "title": "Traced later",
        "start": iso(day, "14:00", "Europe/Paris"),
        "end": iso(day, "15:00", "Europe/Paris"),
        "timezone": "Europe/Paris",
        "invitees": [{"full_name": "Ada Lovelace", "email": "ada@example.com"}],
    }
    resp = await gateway.post("/v1/bookings", json=body, headers=AUTH)
    assert resp.status == 201
    booking_id = (await resp.json())["id"]

    incoming = f"00-{INCOMING_TRACE}-{INCOMING_PARENT}-01"
    resp = await gateway.post(
        f"/v1/bookings/{booking_id}/confirm",
        headers={**AUTH, "traceparent": incoming, "Prefer": "respond-async"},
    )
    assert resp.status == 202
    operation = (await resp.json())["id"]
    deadline = time.monotonic() + 10
    while True:
        resp = await gateway.get(f"/v1/operations/{operation}", headers=AUTH)
        if (await resp.json())["status"] != "pending":
            break
        assert time.monotonic() < deadline, "the operation never ran"
        await asyncio.sleep(0.05)
    assert (await resp.json())["status"] == "succeeded"

    (sent,) = vyte.traceparents("POST", f"/v2/events/{booking_id}/confirm")
    assert parts(sent)[0] == INCOMING_TRACE
    finished = spans.get_finished_spans()
    (accepting,) = [s for s in finished if s.name == "POST /v1/bookings/{booking_id}/confirm"]
    (applied,) = [s for s in finished if s.name == "operation confirm"]
    assert applied.context.trace_id == int(INCOMING_TRACE, 16)
    assert applied.parent is not None and applied.parent.span_id == accepting.context.span_id
    (call,) = [s for s in finished if s.name == "POST /v2/events/{id}/confirm"]
    assert call.parent is not None and call.parent.span_id == applied.context.span_id
    assert hex_span(call) == parts(sent)[1]


async def test_the_tracestate_travels_with_stored_work_into_vyte_calls_and_webhooks(
    gateway_factory: Any, vyte: RecordingVyte, spans: InMemorySpanExporter, receiver: Any
) -> None:
    from service import keys

    gateway = await gateway_factory(vyte_base_url=vyte.url)
    day = meeting_day(1)
    body = {
        "organizer": PEOPLE[0],
        "title": "Traced with state",
        "start": iso(day, "14:00", "Europe/Paris"),
        "end": iso(day, "15:00", "Europe/Paris"),
        "timezone": "Europe/Paris",
        "invitees": [{"full_name": "Ada Lovelace", "email": "ada@example.com"}],
        "callback_url": receiver.url,
    }
    resp = await gateway.post("/v1/bookings", json=body, headers=AUTH)
    assert resp.status == 201
    booking_id = (await resp.json())["id"]
    await receiver.wait_for(1)  # booking.requested, in another trace

    incoming = f"00-{INCOMING_TRACE}-{INCOMING_PARENT}-01"
    state = "vendor=abc,other=1"
    resp = await gateway.post(
        f"/v1/bookings/{booking_id}/confirm",
        headers={**AUTH, "traceparent": incoming, "tracestate": state, "Prefer": "respond-async"},
    )
    assert resp.status == 202
    await receiver.wait_for(2)
    headers, payload = receiver.received[1]
    assert json.loads(payload)["type"] == "booking.confirmed"
    # The operation was stored, then run by the worker: its Vyte call carries the caller's
    # state, and so does the webhook of the change, delivered from the stored outbox.
    (sent,) = [h for m, p, h in vyte.seen if p == f"/v2/events/{booking_id}/confirm"]
    assert parts(sent["traceparent"])[0] == INCOMING_TRACE and sent["tracestate"] == state
    assert parts(headers["traceparent"])[0] == INCOMING_TRACE
    assert headers["tracestate"] == state
    stored = await gateway.app[keys.STORE].list_deliveries(None, 10, caller="alpha")
    (confirmed,) = [d for d in stored if d.event_type == "booking.confirmed"]
    traceparent, _, kept_state = (confirmed.trace_context or "").partition("\n")
    assert parts(traceparent)[0] == INCOMING_TRACE and kept_state == state

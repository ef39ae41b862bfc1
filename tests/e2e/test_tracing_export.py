"""Spans of a real `serve --sandbox` process, exported over OTLP/HTTP to a loopback receiver."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from service.config import SANDBOX_TOKEN
from tests.dates import iso, meeting_day
from tests.e2e.process import Process, free_port, start
from tests.otlp import CLIENT, SERVER, Receiver, otlp_receiver

pytestmark = pytest.mark.e2e

AUTH = {"Authorization": f"Bearer {SANDBOX_TOKEN}"}
PEOPLE = ("5f3feb7821046c3bb9327e6a", "5f3feb7821046c3bb9327e6b", "5f3feb7821046c3bb9327e6c")


def traceparent(trace_id: str, parent: str) -> dict[str, str]:
    return {"traceparent": f"00-{trace_id}-{parent}-01"}


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with otlp_receiver() as receiver:
        yield receiver


async def serve(receiver: Receiver, tmp_path: Path, **extra: str) -> Process:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # milliseconds: spans arrive while the test waits
        "OTEL_SERVICE_NAME": "gateway-under-test",
        "CALLBACK_DENY_NETWORKS": "none",  # the webhook receiver is on loopback
        "RESYNC_INTERVAL": "0",  # a restarted sandbox forgets its events: no re-reads
        "LOG_LEVEL": "info",
        **extra,
    }
    return await asyncio.to_thread(start, ["serve", "--sandbox"], tmp_path, env)


@pytest.fixture
async def gateway(receiver: Receiver, tmp_path: Path) -> AsyncIterator[Process]:
    served = await serve(receiver, tmp_path)
    try:
        yield served
    finally:
        assert await asyncio.to_thread(served.stop) == 0


@attrs.define
class Hooks:
    """An internal service receiving webhooks: answers `script` first, then 204."""

    url: str = ""
    script: list[int] = attrs.field(factory=list)
    received: list[tuple[int, dict[str, str], dict[str, Any]]] = attrs.field(factory=list)

    def of(self, event_type: str, status: int = 204) -> list[dict[str, str]]:
        return [h for s, h, b in self.received if b["type"] == event_type and s == status]

    async def wait_for(self, event_type: str, status: int = 204, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while not self.of(event_type, status):
            assert time.monotonic() < deadline, f"no {event_type} answered {status}"
            await asyncio.sleep(0.05)


@pytest.fixture
async def hooks() -> AsyncIterator[Hooks]:
    state = Hooks()

    async def hook(request: web.Request) -> web.Response:
        status = state.script.pop(0) if state.script else 204
        state.received.append((status, dict(request.headers), json.loads(await request.read())))
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.url = str(server.make_url("/hook"))
    yield state
    await server.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
        yield session


def log_lines(served: Process) -> list[dict[str, Any]]:
    return [json.loads(line) for line in served.output().splitlines() if line.startswith("{")]


async def test_one_trace_holds_the_request_and_its_parallel_upstream_calls(
    gateway: Process, receiver: Receiver, http: aiohttp.ClientSession
) -> None:
    trace_id, caller_span = "5b8efff798038103d269b633813fc60c", "eee19b7ec3c1b174"
    first = datetime.now(UTC).date() + timedelta(days=7)
    params = {
        "participants": ",".join(PEOPLE),
        "duration": "30",
        "from": first.isoformat(),
        "to": (first + timedelta(days=2)).isoformat(),
        "timezone": "Europe/Paris",
    }
    async with http.get(
        f"{gateway.url}/v1/availability",
        params=params,
        headers={**AUTH, **traceparent(trace_id, caller_span)},
    ) as resp:
        assert resp.status == 200, await resp.text()

    def complete(r: Receiver) -> bool:
        return bool(r.find(trace_id=trace_id, kind=SERVER)) and (
            len(r.find(trace_id=trace_id, name="GET /v2/slots")) == len(PEOPLE)
        )

    await receiver.wait_for(complete, what="request span and upstream spans")
    (request,) = receiver.find(trace_id=trace_id, kind=SERVER)
    assert request.name == "GET /v1/availability"
    assert request.parent_id == caller_span
    assert request.service == "gateway-under-test"
    assert request.attributes["http.response.status_code"] == 200

    upstream = receiver.find(trace_id=trace_id, name="GET /v2/slots")
    assert {u.kind for u in upstream} == {CLIENT}
    assert {u.parent_id for u in upstream} == {request.span_id}
    assert len({u.span_id for u in upstream}) == len(PEOPLE)
    # Parallel children: each started before any ended, all inside the request span.
    assert max(u.start for u in upstream) < min(u.end for u in upstream)
    assert all(request.start <= u.start and u.end <= request.end for u in upstream)

    # trace_id (and the request span's id) in the request's log lines.
    lines = [line for line in log_lines(gateway) if line.get("trace_id") == trace_id]
    events = [line["event"] for line in lines]
    assert "request" in events and events.count("upstream") == len(PEOPLE)
    assert {line["span_id"] for line in lines} == {request.span_id}


async def book_and_confirm(
    http: aiohttp.ClientSession, served: Process, callback_url: str, trace_id: str, parent: str
) -> str:
    """Create a booking for John with `callback_url`, then confirm it inside trace `trace_id`."""
    day = meeting_day()
    body = {
        "organizer": PEOPLE[0],
        "title": "Traced meeting",
        "start": iso(day, "10:00", "Europe/Paris"),
        "end": iso(day, "11:00", "Europe/Paris"),
        "timezone": "Europe/Paris",
        "invitees": [{"full_name": "Ada Lovelace", "email": "ada@example.com"}],
        "callback_url": callback_url,
    }
    async with http.post(f"{served.url}/v1/bookings", json=body, headers=AUTH) as resp:
        assert resp.status == 201, await resp.text()
        booking_id = str((await resp.json())["id"])
    async with http.post(
        f"{served.url}/v1/bookings/{booking_id}/confirm",
        headers={**AUTH, **traceparent(trace_id, parent)},
    ) as resp:
        assert resp.status == 200, await resp.text()
    return booking_id


def tp_parts(header: str) -> tuple[str, str]:
    _, trace_id, span_id, _ = header.split("-")
    return trace_id, span_id


async def test_the_webhook_delivery_continues_the_trace_of_the_change(
    gateway: Process, receiver: Receiver, hooks: Hooks, http: aiohttp.ClientSession
) -> None:
    trace_id, caller_span = "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"
    await book_and_confirm(http, gateway, hooks.url, trace_id, caller_span)
    await hooks.wait_for("booking.confirmed")
    (headers,) = hooks.of("booking.confirmed")
    sent_trace, sent_parent = tp_parts(headers["traceparent"])
    assert sent_trace == trace_id

    def delivered(r: Receiver) -> bool:
        return bool(r.find(trace_id=trace_id, name="webhook booking.confirmed"))

    await receiver.wait_for(delivered, what="delivery span")
    (confirm,) = receiver.find(trace_id=trace_id, kind=SERVER)
    assert confirm.name == "POST /v1/bookings/{booking_id}/confirm"
    assert confirm.parent_id == caller_span
    (delivery,) = receiver.find(trace_id=trace_id, name="webhook booking.confirmed")
    assert delivery.kind == CLIENT
    assert delivery.parent_id == confirm.span_id  # caused by the confirm
    assert delivery.span_id == sent_parent  # the receiver's parent is the attempt's span
    assert delivery.attributes["webhook.id"] == headers["webhook-id"]
    assert delivery.start >= confirm.end  # delivered after the change was committed

    # The confirm's own work in the same trace: Vyte's confirm and the store's writes.
    (vyte_confirm,) = receiver.find(trace_id=trace_id, name="POST /v2/events/{id}/confirm")
    assert vyte_confirm.parent_id == confirm.span_id
    store_calls = {s.name for s in receiver.find(trace_id=trace_id, parent_id=confirm.span_id)}
    assert "store put_booking" in store_calls

    # The booking.requested webhook belongs to the create's trace, not this one.
    (requested,) = hooks.of("booking.requested")
    assert tp_parts(requested["traceparent"])[0] != trace_id


async def test_a_delivery_retried_after_a_restart_keeps_its_trace(
    receiver: Receiver, hooks: Hooks, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    trace_id, caller_span = "d4cda95b652f4a1592b449d5929fda1b", "6e0c63257de34c92"
    hooks.script = [204, 503]  # booking.requested goes through, booking.confirmed fails once
    first = await serve(receiver, tmp_path, WEBHOOK_RETRY_SCHEDULE="5")
    try:
        await book_and_confirm(http, first, hooks.url, trace_id, caller_span)
        await hooks.wait_for("booking.confirmed", status=503)
    finally:
        assert await asyncio.to_thread(first.stop) == 0
    assert not hooks.of("booking.confirmed")  # not delivered before the restart

    second = await serve(receiver, tmp_path, WEBHOOK_RETRY_SCHEDULE="5")
    try:
        await hooks.wait_for("booking.confirmed", timeout=20)
    finally:
        assert await asyncio.to_thread(second.stop) == 0
    (failed,) = hooks.of("booking.confirmed", status=503)
    (delivered,) = hooks.of("booking.confirmed")
    assert delivered["webhook-id"] == failed["webhook-id"]
    assert tp_parts(failed["traceparent"])[0] == trace_id
    assert tp_parts(delivered["traceparent"])[0] == trace_id  # read back from the store

    def both(r: Receiver) -> bool:
        return len(r.find(trace_id=trace_id, name="webhook booking.confirmed")) == 2

    await receiver.wait_for(both, what="two delivery attempt spans")
    (confirm,) = receiver.find(trace_id=trace_id, kind=SERVER)
    attempts = receiver.find(trace_id=trace_id, name="webhook booking.confirmed")
    assert {a.parent_id for a in attempts} == {confirm.span_id}
    assert sorted(a.attributes["webhook.attempt"] for a in attempts) == [1, 2]
    assert {a.span_id for a in attempts} == {
        tp_parts(failed["traceparent"])[1],
        tp_parts(delivered["traceparent"])[1],
    }


async def test_a_collector_that_is_down_costs_no_request_and_a_bounded_shutdown(
    http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": dead, "OTEL_BSP_SCHEDULE_DELAY": "100"}
    served = await asyncio.to_thread(start, ["serve", "--sandbox"], tmp_path, env)
    try:
        for _ in range(20):
            async with http.get(f"{served.url}/v1/subscriptions", headers=AUTH) as resp:
                assert resp.status == 200
        await asyncio.sleep(0.5)  # the exporter is now retrying against the dead endpoint
    finally:
        started = time.monotonic()
        assert await asyncio.to_thread(served.stop) == 0
    # The exporter alone would retry for its 10 s timeout; the flush is cut at 3 s.
    assert time.monotonic() - started < 9
    assert "tracing_flush_abandoned" in served.output()

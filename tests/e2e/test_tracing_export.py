"""Spans of a real `serve --sandbox` process, exported over OTLP/HTTP to a loopback receiver."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from service.config import SANDBOX_TOKEN
from tests.e2e.process import Process, start
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


@pytest.fixture
async def gateway(receiver: Receiver, tmp_path: Path) -> AsyncIterator[Process]:
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # milliseconds: spans arrive while the test waits
        "OTEL_SERVICE_NAME": "gateway-under-test",
        "CALLBACK_DENY_NETWORKS": "none",  # the webhook receiver is on loopback
        "LOG_LEVEL": "info",
    }
    served = await asyncio.to_thread(start, ["serve", "--sandbox"], tmp_path, env)
    try:
        yield served
    finally:
        assert await asyncio.to_thread(served.stop) == 0


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

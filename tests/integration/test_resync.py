"""The resync (DESIGN §3.3): changes made inside Vyte reach callers with Vyte's hooks off,
once each; reads are bounded, spread out, and shared by replicas on one Redis."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from service import metrics
from service.notify import resync
from service.sandbox import SANDBOX_API_KEY, SandboxConfig, create_sandbox_app
from tests.conftest import AUTH, JOHN, GatewayFactory
from tests.dates import at, iso, meeting_day, zulu
from tests.integration.conftest import Receiver

if TYPE_CHECKING:
    from tests.redis_server import RedisServer

pytest_plugins = ("tests.redis_server",)

VYTE = {"Authorization": SANDBOX_API_KEY}
PARIS = "Europe/Paris"
EVENT_READ = re.compile(r"/v2/events/([0-9a-f]{24})")
REDIS_DB = 5  # the shared server's database for these tests


@attrs.define
class Reads:
    """Every `GET /v2/events/{id}` the sandbox answered: when, per event; how many at once."""

    times: dict[str, list[float]] = attrs.field(factory=dict)
    in_flight: int = 0
    most_in_flight: int = 0
    delay: float = 0.0
    """Seconds each read takes (a slow Vyte)."""

    def count(self, event_id: str) -> int:
        return len(self.times.get(event_id, []))


@pytest.fixture
def reads() -> Reads:
    return Reads()


@pytest.fixture
async def sandbox(reads: Reads) -> AsyncIterator[TestServer]:
    """The sandbox of conftest, with each event read recorded on the way in."""
    app = create_sandbox_app(SandboxConfig(allow_http_hooks=True))

    @web.middleware
    async def record(request: web.Request, handler: Any) -> web.StreamResponse:
        found = EVENT_READ.fullmatch(request.path) if request.method == "GET" else None
        if found is None:
            response: web.StreamResponse = await handler(request)
            return response
        reads.times.setdefault(found[1], []).append(time.monotonic())
        reads.in_flight += 1
        reads.most_in_flight = max(reads.most_in_flight, reads.in_flight)
        try:
            if reads.delay:
                await asyncio.sleep(reads.delay)
            response = await handler(request)
            return response
        finally:
            reads.in_flight -= 1

    app.middlewares.insert(0, record)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


async def book(gw: Any, hour: int, callback: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "organizer": JOHN,
        "title": f"Resync {hour}",
        "start": iso(meeting_day(2), f"{hour // 4:02d}:{hour % 4 * 15:02d}", PARIS),
        "duration": 15,
        "timezone": PARIS,
        "invitees": [{"full_name": "Guest", "email": "guest@example.com"}],
        "check_availability": False,
    }
    if callback:
        body["callback_url"] = callback
    resp = await gw.post("/v1/bookings", json=body, headers=AUTH)
    assert resp.status == 201, await resp.text()
    created: dict[str, Any] = await resp.json()
    return created


async def arrives_within(receiver: Receiver, count: int, seconds: float) -> float:
    started = time.monotonic()
    await receiver.wait_for(count, timeout=seconds)
    return time.monotonic() - started


async def test_changes_made_inside_vyte_reach_the_callback_without_hooks(
    gateway_factory: GatewayFactory,
    sandbox_admin: aiohttp.ClientSession,
    receiver: Receiver,
) -> None:
    interval = 1.5
    changed = metrics.RESYNC_READS.labels("changed")
    changes_before = changed._value.get()
    gw = await gateway_factory(resync_interval=interval)  # no PUBLIC_URL: no Vyte hooks
    created = await book(gw, 40, receiver.url)
    await receiver.wait_for(1)
    event_id = created["id"]

    await sandbox_admin.post(f"_sandbox/events/{event_id}/confirm")
    assert await arrives_within(receiver, 2, 2 * interval) < 2 * interval
    await sandbox_admin.post(f"_sandbox/events/{event_id}/cancel")
    assert await arrives_within(receiver, 3, 2 * interval) < 2 * interval

    await asyncio.sleep(1.5 * interval)  # more re-reads: they change nothing
    bodies = receiver.bodies()
    assert [b["type"] for b in bodies] == [
        "booking.requested",
        "booking.confirmed",
        "booking.cancelled",
    ]
    assert [b["data"]["version"] for b in bodies] == [1, 2, 3]
    async with sandbox_admin.get("_sandbox/deliveries") as r:
        assert (await r.json())["deliveries"] == []  # Vyte's hooks played no part
    read = await (await gw.get(f"/v1/bookings/{event_id}", headers=AUTH)).json()
    assert read["status"] == "cancelled"
    assert changed._value.get() - changes_before == 2


async def test_a_requested_event_moved_inside_vyte_is_updated(
    gateway_factory: GatewayFactory,
    sandbox_admin: aiohttp.ClientSession,
    receiver: Receiver,
) -> None:
    # Vyte announces no edit of a still-requested event: only a re-read finds it.
    interval = 1.5
    gw = await gateway_factory(resync_interval=interval)
    created = await book(gw, 41, receiver.url)
    await receiver.wait_for(1)
    start = at(meeting_day(2), "16:00", PARIS)
    dates = [{"date": zulu(start), "end_date": zulu(start + timedelta(minutes=15))}]
    async with sandbox_admin.put(
        f"v2/events/{created['id']}", headers=VYTE, json={"dates": dates}
    ) as r:
        assert r.status == 200, await r.text()
    assert await arrives_within(receiver, 2, 2 * interval) < 2 * interval
    updated = receiver.bodies()[1]
    assert updated["type"] == "booking.updated"
    assert updated["data"]["start"] == start.isoformat()
    assert updated["data"]["status"] == "requested"


async def first_pass(gateway_factory: GatewayFactory, reads: Reads, **settings: Any) -> list[float]:
    """Start a gateway with 16 bookings already stored; when it first read each of them."""
    writer = await gateway_factory()
    ids = [(await book(writer, hour))["id"] for hour in range(16)]
    await writer.close()
    await gateway_factory(**settings)
    deadline = time.monotonic() + 3 * settings["resync_interval"]
    while not all(reads.count(i) for i in ids):
        assert time.monotonic() < deadline, {i: reads.count(i) for i in ids}
        await asyncio.sleep(0.05)
    return sorted(reads.times[i][0] for i in ids)


async def test_reads_leave_most_of_vyte_concurrency_to_others(
    gateway_factory: GatewayFactory, reads: Reads
) -> None:
    reads.delay = 0.3  # a slow Vyte: unbounded, the paced reads would pile up
    await first_pass(gateway_factory, reads, resync_interval=1.0, vyte_concurrency=16)
    # VYTE_CONCURRENCY 16: the resync takes at most 2 of them.
    assert reads.most_in_flight == 2


async def test_a_backlog_is_read_a_batch_per_tick_not_in_a_burst(
    gateway_factory: GatewayFactory, reads: Reads, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resync, "BATCH", 4)  # sixteen bookings due at once: four batches
    interval = 4.0
    tick = interval * resync.TICK_SHARE
    firsts = await first_pass(gateway_factory, reads, resync_interval=interval)
    # Each batch is spread over a tick and the next starts after it: at least three ticks
    # from the first read to the last, and the whole backlog well inside the interval.
    assert 3 * tick * 0.9 <= firsts[-1] - firsts[0] <= interval / 2
    gaps = [later - earlier for earlier, later in itertools.pairwise(firsts)]
    assert max(gaps) < tick  # evenly: no batch read at once, then a pause


async def test_replicas_on_one_redis_read_each_booking_once_per_interval(
    gateway_factory: GatewayFactory, redis_server: RedisServer, reads: Reads
) -> None:
    await redis_server.flush(REDIS_DB)
    store_url = redis_server.url(REDIS_DB)
    writer = await gateway_factory(store_url=store_url)
    ids = [(await book(writer, hour))["id"] for hour in range(12)]
    await writer.close()
    interval = 1.0
    for _ in range(3):
        await gateway_factory(store_url=store_url, resync_interval=interval)
    started = time.monotonic()
    await asyncio.sleep(3.6 * interval)
    elapsed = time.monotonic() - started
    for event_id in ids:
        seen = reads.times.get(event_id, [])
        # Each replica reading each booking would make about 3 reads per interval.
        assert 3 <= len(seen) <= elapsed / interval + 1, (event_id, seen)
        gaps = [later - earlier for earlier, later in itertools.pairwise(seen)]
        assert min(gaps) >= 0.5 * interval, (event_id, gaps)

"""The gateway on Redis while Redis is away: 503 problems, nothing half-done, and recovery.

Redis here keeps an append-only file, so a restart brings the data back as a managed Redis
would; what the gateway accepted before the outage must still be there after it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import aiohttp

from tests.conftest import AUTH, upstream_calls
from tests.dates import iso
from tests.integration.test_webhooks import MEETING_DAY, booking, wait_operation

if TYPE_CHECKING:
    from tests.redis_server import RedisServer

pytest_plugins = ("tests.redis_server",)


async def wait_ready(gw: Any, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while (await gw.get("/readyz")).status != 200:
        assert time.monotonic() < deadline, "not ready again after Redis came back"
        await asyncio.sleep(0.1)


async def test_redis_outage_is_503_and_the_gateway_recovers_by_itself(
    durable_redis_server: RedisServer,
    gateway_factory: Callable[..., Awaitable[Any]],
    sandbox_admin: aiohttp.ClientSession,
) -> None:
    gw = await gateway_factory(store_url=durable_redis_server.url(), retry_base=0.05)
    created = await gw.post("/v1/bookings", json=booking(None), headers=AUTH)
    assert created.status == 201
    accepted = await created.json()
    await wait_ready(gw)

    await asyncio.to_thread(durable_redis_server.stop)
    ready = await gw.get("/readyz")
    assert ready.status == 503
    assert (await ready.json())["checks"]["store"].startswith("unavailable")

    events_before = await upstream_calls(sandbox_admin, "POST /v2/events")
    later = booking(None, start=iso(MEETING_DAY, "12:00", "Europe/Paris"))
    for method, path, body, headers in (
        ("GET", f"/v1/bookings/{accepted['id']}", None, AUTH),
        ("POST", "/v1/bookings", later, AUTH),
        ("POST", "/v1/bookings", later, {**AUTH, "Idempotency-Key": "outage-1"}),
        ("POST", "/v1/bookings", later, {**AUTH, "Prefer": "respond-async"}),
        ("POST", f"/v1/bookings/{accepted['id']}/confirm", None, AUTH),
        ("GET", "/v1/subscriptions", None, AUTH),
        ("GET", "/v1/deliveries", None, AUTH),
    ):
        resp = await gw.request(method, path, json=body, headers=headers)
        assert resp.status == 503, (method, path, resp.status)
        assert resp.content_type == "application/problem+json"
        problem = await resp.json()
        assert problem["type"] == "/problems/service-unavailable"
        assert int(resp.headers["Retry-After"]) >= 1
    # Nothing reached Vyte while the gateway could not record it.
    assert await upstream_calls(sandbox_admin, "POST /v2/events") == events_before

    await asyncio.to_thread(durable_redis_server.start)
    await wait_ready(gw)
    read = await gw.get(f"/v1/bookings/{accepted['id']}", headers=AUTH)
    assert read.status == 200
    assert await read.json() == accepted
    # The background workers came back too: an async create completes.
    resp = await gw.post("/v1/bookings", json=later, headers={**AUTH, "Prefer": "respond-async"})
    assert resp.status == 202
    op = await wait_operation(gw, resp.headers["Location"])
    assert op["status"] == "succeeded"
    # The key that failed with 503 was not kept: it works now.
    keyed = await gw.post(
        "/v1/bookings",
        json=booking(None, start=iso(MEETING_DAY, "15:00", "Europe/Paris")),
        headers={**AUTH, "Idempotency-Key": "outage-1"},
    )
    assert keyed.status == 201

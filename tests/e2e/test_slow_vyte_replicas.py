"""A replica killed while its async creates are inside a slow Vyte: one event per create.

Vyte takes 3 s per create and the gateway gives up after 2 s; the replica dies half a second
before Vyte stores the events, after its own timeouts. Neither its retries nor the survivors
may look once, find nothing and send again: they wait for the reconciler, which finds each
event once Vyte has stored it, and every operation succeeds with that event.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from service.sandbox import SANDBOX_API_KEY
from tests.conftest import JOHN
from tests.dates import iso, meeting_day
from tests.e2e.process import Process, start

if TYPE_CHECKING:
    from tests.redis_server import RedisServer

pytest_plugins = ("tests.redis_server",)
pytestmark = pytest.mark.e2e

TOKEN = "e2e-slow-vyte-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CREATES = 6
VYTE_SECONDS = 3.0  # per create, inside Vyte


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def test_a_replica_killed_inside_a_slow_vyte_leaves_one_event_per_create(
    tmp_path: Path, own_redis_server: RedisServer
) -> None:
    announced: dict[str, dict[str, Any]] = {}

    async def hook(request: web.Request) -> web.Response:
        announced[request.headers["webhook-id"]] = json.loads(await request.read())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    receiver = TestServer(app, host="127.0.0.1")
    await receiver.start_server()
    sandbox = await asyncio.to_thread(
        start, ["sandbox", "--port", "{port}"], tmp_path, {}, "/_sandbox/stats", "sandbox"
    )
    env = {
        "VYTE_BASE_URL": sandbox.url,
        "VYTE_API_KEY": SANDBOX_API_KEY,
        "API_TOKENS": f"e2e:{TOKEN}",
        "STORE_URL": own_redis_server.url(),
        "VYTE_TIMEOUT": "2",
        "REQUEST_BUDGET": "3",
        "RETRY_BASE": "0.1",
        "RETRY_CAP": "0.5",
        "UNKNOWN_OUTCOME_TIMEOUT": "30",
        # The breaker stays closed, so the replica's own retries run before it dies.
        "BREAKER_THRESHOLD": "1000",
        "WEBHOOK_RETRY_SCHEDULE": "0.2,0.5,1",
    }
    replicas: list[Process] = []
    try:
        for i in range(3):
            replicas.append(await asyncio.to_thread(start, ["serve"], tmp_path, env, name=f"r{i}"))
        async with aiohttp.ClientSession() as http:
            await http.post(
                f"{sandbox.url}/_sandbox/faults",
                json={"latency": VYTE_SECONDS, "path": "/v2/events", "method": "POST"},
            )
            doomed, survivors = replicas[0], replicas[1:]
            day = meeting_day()
            locations = []
            sent = time.monotonic()  # no create reaches Vyte before this
            for n in range(CREATES):
                create = {
                    "organizer": JOHN,
                    "title": f"Slow Vyte {n}",
                    "start": iso(day, f"{9 + n:02d}:00", "Europe/Paris"),
                    "duration": 30,
                    "timezone": "Europe/Paris",
                    "invitees": [{"email": f"guest{n}@example.com"}],
                    "callback_url": str(receiver.make_url("/hook")),
                    "check_availability": False,
                }
                async with http.post(
                    f"{doomed.url}/v1/bookings",
                    json=create,
                    headers={**AUTH, "Prefer": "respond-async"},
                ) as resp:
                    assert resp.status == 202
                    locations.append(resp.headers["Location"])

            async def creates_sent() -> int:
                async with http.get(f"{sandbox.url}/_sandbox/stats") as resp:
                    stats = await resp.json()
                return int(stats["requests"].get("POST /v2/events", 0))

            async def all_sent() -> bool:
                return await creates_sent() >= CREATES

            await eventually(all_sent, "the doomed replica to send every create", 5)
            async with http.get(f"{sandbox.url}/_sandbox/events") as resp:
                assert await resp.json() == [], "Vyte answered faster than it should"
            # Past the replica's own timeout (its retries would look once, find nothing yet
            # and send again), and before Vyte has stored anything: killed mid-flight.
            await asyncio.sleep(max(0.0, sent + VYTE_SECONDS - 0.5 - time.monotonic()))
            async with http.get(f"{sandbox.url}/_sandbox/events") as resp:
                assert await resp.json() == [], "killed too late: Vyte has stored the events"
            assert doomed.stop(signal.SIGKILL) == -signal.SIGKILL

            ops: list[dict[str, Any]] = []

            async def operations_done() -> bool:
                ops.clear()
                for n, location in enumerate(locations):
                    async with http.get(survivors[n % 2].url + location, headers=AUTH) as resp:
                        ops.append(await resp.json())
                return all(op["status"] != "pending" for op in ops)

            await eventually(operations_done, "the survivors to finish the operations", 60)
            assert {op["status"] for op in ops} == {"succeeded"}, ops
            async with http.get(f"{sandbox.url}/_sandbox/events") as resp:
                events = await resp.json()
            by_title: dict[str, list[str]] = {}
            for event in events:
                by_title.setdefault(event["title"], []).append(event["_id"])
            assert {t: len(ids) for t, ids in by_title.items()} == {
                f"Slow Vyte {n}": 1 for n in range(CREATES)
            }
            assert [op["booking_id"] for op in ops] == [
                by_title[f"Slow Vyte {n}"][0] for n in range(CREATES)
            ]
            async with http.get(f"{sandbox.url}/_sandbox/stats") as resp:
                stats = await resp.json()
            assert stats["requests"]["POST /v2/events"] == CREATES

            async def all_announced() -> bool:
                return len(announced) >= CREATES

            await eventually(all_announced, "booking.requested for every booking", 20)
            await asyncio.sleep(0.5)
            requested = sorted(
                b["data"]["id"] for b in announced.values() if b["type"] == "booking.requested"
            )
            assert requested == sorted(op["booking_id"] for op in ops)
    finally:
        for replica in replicas:
            replica.stop()
        sandbox.stop()
        await receiver.close()

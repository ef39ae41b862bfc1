"""Accepted asynchronous operations survive SIGKILL: applied once, every webhook delivered."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from service.sandbox import SANDBOX_API_KEY
from tests.conftest import JOHN
from tests.dates import iso, meeting_day
from tests.e2e.process import Process, start

pytestmark = pytest.mark.e2e
TOKEN = "e2e-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


async def test_sigkill_then_restart_applies_every_operation_once(tmp_path: Path) -> None:
    received: dict[str, dict[str, Any]] = {}

    async def hook(request: web.Request) -> web.Response:
        received[request.headers["webhook-id"]] = json.loads(await request.read())
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", hook)
    receiver = TestServer(app, host="127.0.0.1")
    await receiver.start_server()
    callback = str(receiver.make_url("/hook"))

    sandbox = await asyncio.to_thread(
        start, ["sandbox", "--port", "{port}"], tmp_path, {}, "/_sandbox/stats", "sandbox"
    )
    env = {
        "VYTE_BASE_URL": sandbox.url,
        "VYTE_API_KEY": SANDBOX_API_KEY,
        "API_TOKENS": f"e2e:{TOKEN}",
        "VYTE_TIMEOUT": "1",
        "REQUEST_BUDGET": "2",
        "RETRY_BASE": "0.1",
        "RETRY_CAP": "0.5",
        "WEBHOOK_RETRY_SCHEDULE": "0.1,0.2,0.5,1",
    }
    gateway: Process | None = None
    try:
        gateway = await asyncio.to_thread(start, ["serve"], tmp_path, env)
        async with aiohttp.ClientSession() as http:
            # Vyte stores each event, then never answers: the outcome is unknown to the gateway.
            await http.post(
                f"{sandbox.url}/_sandbox/faults",
                json={"hang": True, "apply": True, "path": "/v2/events", "method": "POST"},
            )
            locations = []
            for hour in range(9, 14):
                body = {
                    "organizer": JOHN,
                    "title": f"Crash test {hour}",
                    "start": iso(meeting_day(), f"{hour:02d}:00", "Europe/Paris"),
                    "duration": 30,
                    "timezone": "Europe/Paris",
                    "invitees": [{"email": f"guest{hour}@example.com"}],
                    "callback_url": callback,
                    "check_availability": False,
                }
                async with http.post(
                    f"{gateway.url}/v1/bookings",
                    json=body,
                    headers={**AUTH, "Prefer": "respond-async"},
                ) as resp:
                    assert resp.status == 202
                    locations.append(resp.headers["Location"])

            deadline = time.monotonic() + 15
            while True:
                async with http.get(f"{sandbox.url}/_sandbox/events") as resp:
                    if len(await resp.json()) == 5:
                        break
                assert time.monotonic() < deadline, "Vyte never saw the creates"
                await asyncio.sleep(0.05)

            assert gateway.stop(signal.SIGKILL) == -signal.SIGKILL
            await http.delete(f"{sandbox.url}/_sandbox/faults")
            gateway = await asyncio.to_thread(start, ["serve"], tmp_path, env)

            deadline = time.monotonic() + 30
            ops: list[dict[str, Any]] = []
            while True:
                ops = []
                for location in locations:
                    async with http.get(gateway.url + location, headers=AUTH) as resp:
                        ops.append(await resp.json())
                if all(op["status"] != "pending" for op in ops):
                    break
                assert time.monotonic() < deadline, ops
                await asyncio.sleep(0.1)
            assert {op["status"] for op in ops} == {"succeeded"}

            async with http.get(f"{sandbox.url}/_sandbox/events") as resp:
                events = await resp.json()
            assert len(events) == 5, "an operation reached Vyte twice"
            assert {op["booking_id"] for op in ops} == {e["_id"] for e in events}

            deadline = time.monotonic() + 15
            while len({b["data"]["id"] for b in received.values()}) < 5:
                assert time.monotonic() < deadline, received
                await asyncio.sleep(0.05)
            requested = {
                b["data"]["id"] for b in received.values() if b["type"] == "booking.requested"
            }
            assert requested == {e["_id"] for e in events}
    finally:
        if gateway is not None:
            gateway.stop()
        sandbox.stop()
        await receiver.close()

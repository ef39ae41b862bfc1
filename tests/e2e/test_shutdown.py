"""Graceful shutdown of a real `booking-gateway serve` process on SIGTERM.

readyz turns 503 at once, the listener closes after DRAIN_DELAY, the request in flight
still gets its 200, the app's cleanup runs, and the exit code is 0.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from service.sandbox import SANDBOX_API_KEY
from tests.conftest import JOHN, upstream_calls
from tests.dates import in_days
from tests.e2e.process import Process, start

pytestmark = pytest.mark.e2e
TOKEN = "e2e-shutdown-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DRAIN_DELAY = 1.0
# How long Vyte takes to answer the request that is in flight at SIGTERM.
SLOW_ANSWER = 3.0
QUERY = (
    f"/v1/availability?participants={JOHN}&duration=60&from={in_days(2)}&to={in_days(3)}"
    "&timezone=Europe/Paris"
)


@pytest.fixture
async def gateway(tmp_path: Path, sandbox_url: str) -> AsyncIterator[Process]:
    env = {
        "VYTE_BASE_URL": sandbox_url,
        "VYTE_API_KEY": SANDBOX_API_KEY,
        "API_TOKENS": f"e2e:{TOKEN}",
        "VYTE_TIMEOUT": "10",
        "REQUEST_BUDGET": "10",
        "DRAIN_DELAY": str(DRAIN_DELAY),
        "SHUTDOWN_TIMEOUT": "10",
    }
    # The sandbox runs in this event loop: start the process without blocking it.
    process = await asyncio.to_thread(start, ["serve"], tmp_path, env)
    yield process
    await asyncio.to_thread(process.stop, signal.SIGKILL)


async def refused(url: str) -> bool:
    """Whether a new connection to `url` is refused."""
    try:
        async with (
            aiohttp.ClientSession() as fresh,
            fresh.get(url, timeout=aiohttp.ClientTimeout(total=2)) as resp,
        ):
            await resp.read()
    except aiohttp.ClientConnectionError:
        return True
    return False


async def exit_code(process: Process, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while (code := process.proc.poll()) is None:
        assert time.monotonic() < deadline, "the process did not exit"
        await asyncio.sleep(0.05)
    return code


async def test_sigterm_lets_the_request_in_flight_finish_and_exits_0(
    gateway: Process, sandbox_admin: aiohttp.ClientSession
) -> None:
    async with sandbox_admin.post(
        "_sandbox/faults", json={"latency": SLOW_ANSWER, "path": "/v2/slots", "count": 1}
    ) as resp:
        assert resp.status == 200

    async with aiohttp.ClientSession(base_url=gateway.url) as http:
        async with http.get("/readyz") as resp:
            assert resp.status == 200

        async def slow_request() -> tuple[int, Any]:
            async with http.get(QUERY, headers=AUTH) as resp:
                return resp.status, await resp.json()

        in_flight = asyncio.create_task(slow_request())
        while await upstream_calls(sandbox_admin, "GET /v2/slots") < 1:
            assert not in_flight.done(), in_flight.result()
            await asyncio.sleep(0.02)

        signalled = time.monotonic()
        gateway.proc.send_signal(signal.SIGTERM)

        # Draining: readyz says 503 at once (on a new connection) while the listener is open.
        await asyncio.sleep(0.2)
        async with aiohttp.ClientSession() as fresh, fresh.get(gateway.url + "/readyz") as resp:
            assert resp.status == 503
            assert (await resp.json())["checks"]["draining"] == "yes"
        assert time.monotonic() - signalled < DRAIN_DELAY

        # Then no new connections, while the request in flight still runs.
        while not await refused(gateway.url + "/livez"):
            assert time.monotonic() - signalled < DRAIN_DELAY + 1.5
            await asyncio.sleep(0.05)
        assert not in_flight.done()

        status, body = await in_flight
        assert status == 200, body
        assert body["slots"]

    assert await exit_code(gateway, timeout=10) == 0
    lines = [json.loads(line) for line in gateway.output().splitlines() if line.startswith("{")]
    events = [line["event"] for line in lines]
    assert events.index("draining") < events.index("closing_listener") < events.index("stopped")
    (access,) = [
        line for line in lines if line["event"] == "request" and line["route"] == "/v1/availability"
    ]
    assert access["status"] == 200 and access["caller"] == "e2e"
    # Workers, sessions and the store were closed in order: nothing leaked or crashed.
    assert "Traceback" not in gateway.output()
    assert not [line for line in lines if line["level"] in ("error", "critical")]


async def test_sigterm_when_idle_exits_0_promptly(gateway: Process) -> None:
    started = time.monotonic()
    gateway.proc.send_signal(signal.SIGTERM)
    assert await exit_code(gateway, timeout=10) == 0
    assert time.monotonic() - started < DRAIN_DELAY + 3
    assert "stopped" in gateway.output()

"""Readiness of a `booking-gateway serve` process: a hanging Vyte is reported but never makes
the replica unready (async work is still accepted, queries answer 503 problems), while an
unreachable store does. Runs on plain Redis and on Redis over TLS (`rediss://`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import pytest

from service.sandbox import SANDBOX_API_KEY
from tests.conftest import JOHN
from tests.e2e.process import Process, start

pytest_plugins = ("tests.redis_server", "tests.tls_redis")
pytestmark = pytest.mark.e2e

TOKEN = "e2e-readiness-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
# Readiness must answer well inside a probe's timeout even while a Vyte probe hangs.
READYZ_LIMIT = 1.5


class StoreServer(Protocol):
    def url(self, db: int = 0) -> str: ...
    def stop(self) -> None: ...
    def start(self) -> None: ...


@pytest.fixture(params=["redis", "rediss"])
def store_server(request: pytest.FixtureRequest) -> Iterator[StoreServer]:
    """A Redis of this test's own (it is stopped and started again), plain or TLS-only."""
    # Imported here: pytest loads these modules first, as plugins.
    from tests.redis_server import running_redis_server
    from tests.tls_redis import running_tls_redis_server

    running = running_redis_server() if request.param == "redis" else running_tls_redis_server()
    with running as server:
        yield server


@pytest.fixture
async def sandbox(tmp_path: Path) -> AsyncIterator[Process]:
    process = await asyncio.to_thread(
        start, ["sandbox", "--port", "{port}"], tmp_path, {}, "/_sandbox/stats", "sandbox"
    )
    yield process
    process.stop()


@pytest.fixture
async def gateway(
    tmp_path: Path, sandbox: Process, store_server: StoreServer
) -> AsyncIterator[Process]:
    env = {
        "VYTE_BASE_URL": sandbox.url,
        "VYTE_API_KEY": SANDBOX_API_KEY,
        "API_TOKENS": f"e2e:{TOKEN}",
        "STORE_URL": store_server.url(),
        "VYTE_TIMEOUT": "0.3",
        "REQUEST_BUDGET": "1",
        "BREAKER_THRESHOLD": "2",
        # Long enough that the breaker is still open when the query below runs.
        "BREAKER_COOLDOWN": "3",
        "RETRY_BASE": "0.2",
        "RETRY_CAP": "1",
    }
    process = await asyncio.to_thread(start, ["serve"], tmp_path, env)
    yield process
    process.stop()


async def eventually(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := await check()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)
    return result


def future_booking() -> dict[str, Any]:
    day = datetime.now(UTC).date() + timedelta(days=9)
    return {
        "organizer": JOHN,
        "title": "Readiness check meeting",
        "start": f"{day.isoformat()}T10:00:00+00:00",
        "duration": 30,
        "timezone": "UTC",
        "invitees": [{"email": "quentin.tarantino@hollywood.com"}],
        "check_availability": False,
    }


def metric(text: str, name: str) -> float:
    """The value of an unlabelled (or the first labelled) sample of `name`."""
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_vyte_hanging_is_reported_not_unready_and_the_store_decides(
    gateway: Process, sandbox: Process, store_server: StoreServer
) -> None:
    async with (
        aiohttp.ClientSession(base_url=gateway.url) as gw,
        aiohttp.ClientSession(base_url=sandbox.url) as vyte,
    ):

        async def readiness() -> tuple[int, dict[str, Any]]:
            started = time.monotonic()
            async with gw.get("/readyz") as resp:
                body = await resp.json()
            assert time.monotonic() - started < READYZ_LIMIT, "readiness waited on Vyte"
            return resp.status, body

        async def vyte_is(prefix: str) -> dict[str, Any] | None:
            status, body = await readiness()
            assert status == 200, body
            return body if body["checks"]["vyte"].startswith(prefix) else None

        healthy = await eventually(lambda: vyte_is("ok"), "Vyte to be seen")
        assert healthy["status"] == "ok"
        assert healthy["checks"]["store"] == "ok"
        assert healthy["checks"]["hooks"].startswith("off")

        async with vyte.post("/_sandbox/faults", json={"hang": True}) as resp:
            assert resp.status == 200
        down = await eventually(lambda: vyte_is("unavailable"), "Vyte to be unavailable")
        assert down["status"] == "ok" and down["checks"]["store"] == "ok"
        await eventually(lambda: vyte_is("unavailable: circuit open"), "the breaker to open")

        async with gw.get("/metrics") as resp:
            scraped = await resp.text()
        assert metric(scraped, "gateway_vyte_up") == 0
        assert metric(scraped, "gateway_circuit_state") == 2  # open

        day = (datetime.now(UTC).date() + timedelta(days=9)).isoformat()
        query = f"participants={JOHN}&duration=30&from={day}&to={day}"
        async with gw.get(f"/v1/availability?{query}", headers=AUTH) as resp:
            assert resp.status == 503, await resp.text()
            assert resp.content_type == "application/problem+json"
            assert int(resp.headers["Retry-After"]) >= 1
            assert (await resp.json())["status"] == 503

        prefer = {**AUTH, "Prefer": "respond-async"}
        async with gw.post("/v1/bookings", json=future_booking(), headers=prefer) as resp:
            assert resp.status == 202, await resp.text()
            location = resp.headers["Location"]
        async with gw.get(location, headers=AUTH) as resp:
            assert (await resp.json())["status"] == "pending"

        async with vyte.delete("/_sandbox/faults") as resp:
            assert resp.status == 204

        async def finished() -> dict[str, Any] | None:
            async with gw.get(location, headers=AUTH) as resp:
                op: dict[str, Any] = await resp.json()
            return op if op["status"] != "pending" else None

        op = await eventually(finished, "the operation to complete once Vyte is back")
        assert op["status"] == "succeeded", op
        async with gw.get(f"/v1/bookings/{op['booking_id']}", headers=AUTH) as resp:
            assert resp.status == 200
        async with vyte.get("/_sandbox/events") as resp:
            titles = [e["title"] for e in await resp.json()]
        assert titles.count("Readiness check meeting") == 1
        await eventually(lambda: vyte_is("ok"), "Vyte to be seen again")
        async with gw.get("/metrics") as resp:
            assert metric(await resp.text(), "gateway_vyte_up") == 1

        await asyncio.to_thread(store_server.stop)
        status, body = await readiness()
        assert status == 503, body
        assert body["status"] == "unavailable"
        assert body["checks"]["store"].startswith("unavailable")
        assert body["checks"]["vyte"] == "ok"  # still reported, and not the reason

        await asyncio.to_thread(store_server.start)

        async def ready_again() -> bool:
            status, _ = await readiness()
            return status == 200

        await eventually(ready_again, "readiness once the store is back")

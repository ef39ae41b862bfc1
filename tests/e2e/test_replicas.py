"""Three `booking-gateway serve` processes on one Redis and the sandbox behave as one service.

Concurrent creates with one Idempotency-Key give one Vyte event; overlapping bookings give one
success; operations accepted by a replica that is then SIGKILLed are completed by the others;
Redis restarting mid-test is answered with 503s and then recovered from; and every webhook is
delivered (the receiver refuses each first attempt, so each one is retried, possibly by another
replica) under a stable webhook-id, in version order per booking. It runs once on plain Redis
and once on Redis over TLS (`rediss://`).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import aiohttp
import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from service.sandbox import SANDBOX_API_KEY
from tests.conftest import JOHN
from tests.dates import iso, meeting_day
from tests.e2e.process import Process, start

pytest_plugins = ("tests.redis_server", "tests.tls_redis")
pytestmark = pytest.mark.e2e

TOKEN = "e2e-replicas-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
REQUEST_BUDGET = 2  # seconds; a dead replica's operations are claimed again 10 s after it
EVENT_TYPES = {"booking.requested": 1, "booking.confirmed": 2, "booking.cancelled": 3}


@attrs.define
class Receiver:
    """Webhook receiver that refuses the first attempt of every webhook-id."""

    url: str = ""
    attempts: dict[str, int] = attrs.Factory(dict)
    accepted: dict[str, dict[str, Any]] = attrs.Factory(dict)
    order: list[str] = attrs.Factory(list)

    async def handle(self, request: web.Request) -> web.Response:
        webhook_id = request.headers["webhook-id"]
        body = json.loads(await request.read())
        self.attempts[webhook_id] = self.attempts.get(webhook_id, 0) + 1
        if self.attempts[webhook_id] == 1:
            return web.Response(status=503)
        if webhook_id in self.accepted:
            assert self.accepted[webhook_id] == body, "a retry changed the payload"
        else:
            self.accepted[webhook_id] = body
            self.order.append(webhook_id)
        return web.Response(status=204)

    def events_of(self, booking_id: str) -> list[tuple[str, int]]:
        """(type, version) of the accepted webhooks about one booking, in arrival order."""
        bodies = (self.accepted[i] for i in self.order)
        return [(b["type"], b["data"]["version"]) for b in bodies if b["data"]["id"] == booking_id]


class StoreServer(Protocol):
    def url(self, db: int = 0) -> str: ...
    def stop(self) -> None: ...
    def start(self) -> None: ...


@pytest.fixture(params=["redis", "rediss"])
def store_server(request: pytest.FixtureRequest) -> StoreServer:
    """A Redis of this test's own whose data survives a restart, plain or TLS-only (with an
    ACL user and password, CA and client certificate in the rediss:// URL)."""
    fixture = "durable_redis_server" if request.param == "redis" else "durable_tls_redis_server"
    server: StoreServer = request.getfixturevalue(fixture)
    return server


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    hooks = Receiver()
    app = web.Application()
    app.router.add_post("/hook", hooks.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    hooks.url = str(server.make_url("/hook"))
    yield hooks
    await server.close()


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


PARIS = "Europe/Paris"
DAYS = [meeting_day() + timedelta(days=n) for n in range(4)]
"""One day for each part of the replica test, so no part's bookings overlap another's."""


def body(title: str, start: str, callback: str, minutes: int = 60) -> dict[str, Any]:
    return {
        "organizer": JOHN,
        "title": title,
        "start": start,
        "duration": minutes,
        "timezone": "Europe/Paris",
        "invitees": [{"email": "quentin.tarantino@hollywood.com"}],
        "callback_url": callback,
        "check_availability": False,
    }


async def test_three_replicas_on_one_redis_behave_as_one(
    tmp_path: Path, store_server: StoreServer, receiver: Receiver
) -> None:
    redis = store_server
    sandbox = await asyncio.to_thread(
        start, ["sandbox", "--port", "{port}"], tmp_path, {}, "/_sandbox/stats", "sandbox"
    )
    env = {
        "VYTE_BASE_URL": sandbox.url,
        "VYTE_API_KEY": SANDBOX_API_KEY,
        "API_TOKENS": f"e2e:{TOKEN}",
        "STORE_URL": redis.url(),
        "VYTE_TIMEOUT": "1",
        "REQUEST_BUDGET": str(REQUEST_BUDGET),
        "RETRY_BASE": "0.1",
        "RETRY_CAP": "0.5",
        "WEBHOOK_RETRY_SCHEDULE": "0.2,0.5,1,2",
    }
    replicas: list[Process] = []
    try:
        for i in range(3):
            replicas.append(await asyncio.to_thread(start, ["serve"], tmp_path, env, name=f"r{i}"))
        async with aiohttp.ClientSession() as http:

            async def events(title: str) -> list[dict[str, Any]]:
                async with http.get(f"{sandbox.url}/_sandbox/events") as resp:
                    return [e for e in await resp.json() if e["title"] == title]

            async def post(replica: Process, path: str, **kwargs: Any) -> tuple[int, Any]:
                headers = {**AUTH, **kwargs.pop("headers", {})}
                async with http.post(replica.url + path, headers=headers, **kwargs) as resp:
                    return resp.status, await resp.json()

            booking_ids: set[str] = set()

            # -- one Idempotency-Key hitting every replica at once: one event -----------------
            keyed = body("Same key", iso(DAYS[0], "09:00", PARIS), receiver.url)
            key = {"Idempotency-Key": "e2e-one-key"}
            answers = await asyncio.gather(
                *(post(replicas[i % 3], "/v1/bookings", json=keyed, headers=key) for i in range(9))
            )
            assert {status for status, _ in answers} <= {201, 409}
            assert [s for s, _ in answers].count(201) >= 1
            for status, problem in answers:
                if status == 409:
                    assert problem["type"] == "/problems/idempotency-key-in-flight"
            replays = [await post(r, "/v1/bookings", json=keyed, headers=key) for r in replicas]
            ids = {b["id"] for s, b in answers + replays if s == 201}
            assert len(ids) == 1 and {s for s, _ in replays} == {201}
            assert [e["_id"] for e in await events("Same key")] == list(ids)
            booking_ids |= ids

            # -- overlapping bookings across replicas: exactly one wins -------------------------
            starts = [iso(DAYS[1], f"10:{m:02d}", PARIS) for m in (0, 10, 20, 30, 40, 50)] * 2
            answers = await asyncio.gather(
                *(
                    post(replicas[i % 3], "/v1/bookings", json=body("Overlap", s, receiver.url))
                    for i, s in enumerate(starts)
                )
            )
            statuses = sorted(status for status, _ in answers)
            assert statuses == [201] + [409] * 11, statuses
            assert {b["type"] for s, b in answers if s == 409} == {"/problems/slot-unavailable"}
            (winner,) = [b for s, b in answers if s == 201]
            assert [e["_id"] for e in await events("Overlap")] == [winner["id"]]
            booking_ids.add(winner["id"])

            # -- async operations on a replica that is SIGKILLed: the others finish them --------
            # Vyte stores each event and never answers, so the outcome is unknown when it dies.
            await http.post(
                f"{sandbox.url}/_sandbox/faults",
                json={"hang": True, "apply": True, "path": "/v2/events", "method": "POST"},
            )
            doomed = replicas[0]
            locations = []
            for hour in range(9, 14):
                create = body(f"Async {hour}", iso(DAYS[2], f"{hour:02d}:00", PARIS), receiver.url)
                status, accepted = await post(
                    doomed, "/v1/bookings", json=create, headers={"Prefer": "respond-async"}
                )
                assert status == 202 and accepted["status"] == "pending"
                locations.append(f"/v1/operations/{accepted['id']}")

            async def vyte_saw_all() -> bool:
                async with http.get(f"{sandbox.url}/_sandbox/events") as resp:
                    titles = {e["title"] for e in await resp.json()}
                return all(f"Async {hour}" in titles for hour in range(9, 14))

            await eventually(vyte_saw_all, "Vyte to receive the creates", 15)
            assert doomed.stop(signal.SIGKILL) == -signal.SIGKILL
            await http.delete(f"{sandbox.url}/_sandbox/faults")
            survivors = replicas[1:]

            ops: list[dict[str, Any]] = []

            async def operations_done() -> bool:
                ops.clear()
                for n, location in enumerate(locations):
                    async with http.get(survivors[n % 2].url + location, headers=AUTH) as resp:
                        ops.append(await resp.json())
                return all(op["status"] != "pending" for op in ops)

            await eventually(operations_done, "the survivors to finish the operations", 40)
            assert {op["status"] for op in ops} == {"succeeded"}, ops
            for hour, op in zip(range(9, 14), ops, strict=True):
                assert [e["_id"] for e in await events(f"Async {hour}")] == [op["booking_id"]]
                booking_ids.add(op["booking_id"])

            # -- Redis restarts mid-test: 503 meanwhile, then every replica recovers ------------
            await asyncio.to_thread(redis.stop)
            for replica in survivors:
                async with http.get(replica.url + "/readyz") as resp:
                    assert resp.status == 503
                async with http.get(f"{replica.url}/v1/bookings/{winner['id']}", headers=AUTH) as r:
                    assert r.status == 503
                    assert (await r.json())["type"] == "/problems/service-unavailable"
            await asyncio.to_thread(redis.start)

            async def all_ready() -> bool:
                for replica in survivors:
                    async with http.get(replica.url + "/readyz") as resp:
                        if resp.status != 200:
                            return False
                return True

            await eventually(all_ready, "the replicas to be ready again", 20)
            async with http.get(
                f"{survivors[1].url}/v1/bookings/{winner['id']}", headers=AUTH
            ) as r:
                assert r.status == 200
                assert (await r.json())["id"] == winner["id"]

            # A lifecycle split over both survivors after the restart.
            after = body("After restart", iso(DAYS[3], "09:00", PARIS), receiver.url)
            status, created = await post(survivors[0], "/v1/bookings", json=after)
            assert status == 201
            booking_id = created["id"]
            booking_ids.add(booking_id)
            status, confirmed = await post(survivors[1], f"/v1/bookings/{booking_id}/confirm")
            assert (status, confirmed["status"], confirmed["version"]) == (200, "confirmed", 2)
            status, cancelled = await post(survivors[0], f"/v1/bookings/{booking_id}/cancel")
            assert (status, cancelled["status"], cancelled["version"]) == (200, "cancelled", 3)

            # -- every webhook delivered, once accepted per webhook-id, in version order --------
            expected = {b: [("booking.requested", 1)] for b in booking_ids}
            expected[booking_id] = [(kind, version) for kind, version in EVENT_TYPES.items()]

            async def all_delivered() -> bool:
                return all(receiver.events_of(b) == want for b, want in expected.items())

            await eventually(all_delivered, "every webhook", 30)
            assert all(n >= 2 for n in receiver.attempts.values()), "a first attempt was kept"
            assert len(receiver.accepted) == sum(len(want) for want in expected.values())
    finally:
        for replica in replicas:
            replica.stop()
        sandbox.stop()

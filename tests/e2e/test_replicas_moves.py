"""Three `booking-gateway serve` processes on one Redis and the sandbox: reschedules into one
slot and a reschedule racing a create give one winner, the old time is free on every replica
at once, and a listing walked across the replicas while they take bookings lists each booking
that exists throughout exactly once, by start then id."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import aiohttp
import pytest

from service.sandbox import SANDBOX_API_KEY
from tests.conftest import JOHN
from tests.dates import iso, meeting_day
from tests.e2e.process import Process, start

if TYPE_CHECKING:
    from tests.redis_server import RedisServer

pytest_plugins = ("tests.redis_server",)
pytestmark = pytest.mark.e2e

TOKEN = "e2e-moves-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PARIS = "Europe/Paris"
DAY = meeting_day(3)


def body(start: str, end: str, title: str = "Moves") -> dict[str, Any]:
    return {
        "organizer": JOHN,
        "title": title,
        "start": start,
        "end": end,
        "timezone": PARIS,
        "invitees": [{"email": "quentin.tarantino@hollywood.com"}],
    }


def at(clock: str) -> str:
    return iso(DAY, clock, PARIS)


@pytest.fixture
async def replicas(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[list[Process]]:
    await redis_server.flush(5)
    sandbox = await asyncio.to_thread(
        start, ["sandbox", "--port", "{port}"], tmp_path, {}, "/_sandbox/stats", "sandbox"
    )
    env = {
        "VYTE_BASE_URL": sandbox.url,
        "VYTE_API_KEY": SANDBOX_API_KEY,
        "API_TOKENS": f"e2e:{TOKEN}",
        "STORE_URL": redis_server.url(5),
    }
    started: list[Process] = [sandbox]
    try:
        for i in range(3):
            started.append(await asyncio.to_thread(start, ["serve"], tmp_path, env, name=f"m{i}"))
        yield started[1:]
    finally:
        for process in reversed(started):
            process.stop()


async def test_moves_and_listing_across_three_replicas(replicas: list[Process]) -> None:
    async with aiohttp.ClientSession() as http:

        async def call(replica: Process, method: str, path: str, **kw: Any) -> tuple[int, Any]:
            async with http.request(method, replica.url + path, headers=AUTH, **kw) as resp:
                return resp.status, await resp.json(content_type=None)

        async def book(replica: Process, start: str, end: str) -> dict[str, Any]:
            status, made = await call(replica, "POST", "/v1/bookings", json=body(start, end))
            assert status == 201, made
            return dict(made)

        # -- three reschedules into one slot, one per replica: one wins --------------------
        moving = [await book(replicas[0], at(f"{h:02d}:00"), at(f"{h:02d}:30")) for h in (8, 9, 10)]
        targets = [("15:00", "16:00"), ("15:20", "16:20"), ("15:40", "16:40")]
        answers = await asyncio.gather(
            *(
                call(
                    replica,
                    "POST",
                    f"/v1/bookings/{b['id']}/reschedule",
                    json={"start": at(s), "end": at(e)},
                )
                for replica, b, (s, e) in zip(replicas, moving, targets, strict=True)
            )
        )
        assert sorted(s for s, _ in answers) == [200, 409, 409], answers
        assert {a["type"] for s, a in answers if s == 409} == {"/problems/slot-unavailable"}
        (won,) = [b for b, (s, _) in zip(moving, answers, strict=True) if s == 200]

        # -- its old time is free at once on every replica: in availability, and to book -----
        query = urlencode(
            {"participants": JOHN, "duration": 30, "from": str(DAY), "to": str(DAY)}
            | {"timezone": PARIS, "step": 30}
        )
        for replica in replicas:
            status, free = await call(replica, "GET", f"/v1/availability?{query}")
            assert status == 200
            starts = {s["start"] for s in free["slots"]}
            assert won["start"] in starts, (replica.url, won["start"])
        await book(replicas[2], won["start"], won["end"])

        # -- a reschedule racing a create on other replicas: one wins ---------------------------
        mover = await book(replicas[1], at("18:00"), at("18:30"))
        move, create = await asyncio.gather(
            call(
                replicas[1],
                "POST",
                f"/v1/bookings/{mover['id']}/reschedule",
                json={"start": at("19:00"), "end": at("20:00")},
            ),
            call(replicas[2], "POST", "/v1/bookings", json=body(at("19:30"), at("20:30"))),
        )
        assert sorted([move[0], create[0]]) in ([200, 409], [201, 409]), (move, create)

        # -- a listing walked across the replicas while they take bookings ----------------------
        status, everything = await call(replicas[0], "GET", "/v1/bookings?limit=200")
        assert status == 200 and everything["next_cursor"] is None
        existing = {b["id"] for b in everything["bookings"]}
        listed: list[dict[str, Any]] = []
        cursor = None
        for n in range(20):
            params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
            status, page = await call(replicas[n % 3], "GET", f"/v1/bookings?{urlencode(params)}")
            assert status == 200, page
            listed += page["bookings"]
            cursor = page["next_cursor"]
            if cursor is None:
                break
            # Five minutes later in the evening each time: ahead of the walk's position.
            begin = datetime.fromisoformat(at("21:00")) + timedelta(minutes=5 * n)
            end = begin + timedelta(minutes=5)
            await book(replicas[(n + 1) % 3], begin.isoformat(), end.isoformat())
        assert cursor is None and len(existing) >= 5
        ids = [b["id"] for b in listed]
        assert len(ids) == len(set(ids)) and existing <= set(ids)

        def key(b: dict[str, Any]) -> tuple[datetime, str]:
            return datetime.fromisoformat(b["start"]), b["id"]

        assert listed == sorted(listed, key=key)

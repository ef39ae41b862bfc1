"""Whole availability answers are reused only while nothing they depend on changed: a
booking made, moved or cancelled shows in the very next answer, on every replica and on
both stores, and the second of two identical queries reads neither Vyte nor the store."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import AUTH, JOHN, upstream_calls
from tests.dates import iso, meeting_day

pytest_plugins = ("tests.redis_server",)

PARIS = "Europe/Paris"


def at(day: Any, clock: str) -> str:
    return iso(day, clock, PARIS)


def query(day: Any) -> str:
    return (
        f"/v1/availability?participants={JOHN}&duration=60&from={day}&to={day}"
        f"&timezone={PARIS}&step=60"
    )


async def starts(gw: Any, day: Any) -> list[str]:
    resp = await gw.get(query(day), headers=AUTH)
    assert resp.status == 200, await resp.text()
    return [s["start"] for s in (await resp.json())["slots"]]


@pytest.fixture(params=["sqlite", "redis"])
async def replicas(request: pytest.FixtureRequest, gateway_factory: Any) -> list[Any]:
    """One gateway on SQLite (its only deployment), or two on one Redis."""
    if request.param == "sqlite":
        return [await gateway_factory()]
    redis_server = request.getfixturevalue("redis_server")
    await redis_server.flush(5)
    return [await gateway_factory(store_url=redis_server.url(5)) for _ in range(2)]


def count_reads(gw: Any) -> list[str]:
    """Record the store's own-booking reads of `gw`'s app."""
    from service import keys

    store = gw.app[keys.STORE]
    reads: list[str] = []
    original = store.active_bookings

    async def active_bookings(*args: Any, **kwargs: Any) -> Any:
        reads.append("active_bookings")
        return await original(*args, **kwargs)

    store.active_bookings = active_bookings
    return reads


async def test_a_repeated_query_is_answered_without_reading_vyte_or_the_store(
    replicas: list[Any], sandbox_admin: Any
) -> None:
    day = meeting_day(3)
    gw = replicas[0]
    reads = count_reads(gw)
    first = await starts(gw, day)
    assert reads == ["active_bookings"]
    calls = await upstream_calls(sandbox_admin, "GET /v2/slots")
    assert await starts(gw, day) == first
    assert reads == ["active_bookings"], "the second answer read the store again"
    assert await upstream_calls(sandbox_admin, "GET /v2/slots") == calls


async def test_made_moved_and_cancelled_bookings_show_in_the_next_answer_everywhere(
    replicas: list[Any],
) -> None:
    day = meeting_day(4)
    ten, three = at(day, "10:00"), at(day, "15:00")
    for gw in replicas:  # every replica keeps an answer with 10:00 and 15:00 free
        free = await starts(gw, day)
        assert ten in free and three in free
    booking = {
        "organizer": JOHN,
        "title": "Planning",
        "start": ten,
        "end": at(day, "11:00"),
        "timezone": PARIS,
        "invitees": [{"email": "quentin.tarantino@hollywood.com"}],
    }
    made = await replicas[0].post("/v1/bookings", json=booking, headers=AUTH)
    assert made.status == 201, await made.text()
    booking_id = (await made.json())["id"]
    # Made: the slot cache still holds Vyte's answer from before, with 10:00 free in it;
    # only the gateway's own booking takes it out, on every replica.
    for gw in reversed(replicas):
        free = await starts(gw, day)
        assert ten not in free and three in free
    moved = await replicas[-1].post(
        f"/v1/bookings/{booking_id}/reschedule",
        json={"start": three, "end": at(day, "16:00")},
        headers=AUTH,
    )
    assert moved.status == 200, await moved.text()
    for gw in replicas:
        free = await starts(gw, day)
        assert ten in free and three not in free
    cancelled = await replicas[0].post(f"/v1/bookings/{booking_id}/cancel", headers=AUTH)
    assert cancelled.status == 200, await cancelled.text()
    for gw in reversed(replicas):
        free = await starts(gw, day)
        assert ten in free and three in free


async def test_read_queries_and_rendered_bodies_stay_within_their_bounds(
    gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from service.http import handlers

    monkeypatch.setattr(handlers, "QUERY_ENTRIES", 2)
    monkeypatch.setattr(handlers, "_QUERIES", {})
    monkeypatch.setattr(handlers, "_BODIES", {})
    monkeypatch.setattr(handlers, "_body_bytes", 0)
    days = [meeting_day(w) for w in range(3)]
    bodies = [await (await gateway.get(query(d), headers=AUTH)).read() for d in days]
    assert len(handlers._QUERIES) == 2 and len(handlers._BODIES) == 3
    # What is kept is what rendering the (reused) answers again gives, byte for byte.
    monkeypatch.setattr(handlers, "_BODIES", {})
    monkeypatch.setattr(handlers, "_body_bytes", 0)
    assert [await (await gateway.get(query(d), headers=AUTH)).read() for d in days] == bodies
    assert len(handlers._BODIES) == 3
    monkeypatch.setattr(handlers, "BODY_BYTES", max(map(len, bodies)) + 1)
    await gateway.get(query(meeting_day(5)), headers=AUTH)
    assert len(handlers._BODIES) == 1 and handlers._body_bytes <= handlers.BODY_BYTES
    # A query that is refused is read again each time, never kept.
    for _ in range(2):
        resp = await gateway.get(query(days[0]) + "&duration=30", headers=AUTH)
        assert resp.status == 400 and "duration" in await resp.text()
    assert all("duration=30" not in text for text in handlers._QUERIES)

"""Rescheduling through the gateway against the sandbox: the booking's own time counts as
free, the new time is held like a create's, the old one is freed, and the edge rules."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from tests.conftest import AUTH, JOHN, OTHER_AUTH, upstream_calls
from tests.dates import iso, meeting_day, seed_thursday, zulu
from tests.integration.conftest import Receiver

pytest_plugins = ("tests.redis_server",)

PARIS = "Europe/Paris"
DAY = meeting_day()
PUT = "PUT /v2/events/{id}"


def body(start: str, end: str, **extra: Any) -> dict[str, Any]:
    return {
        "organizer": JOHN,
        "title": "Planning",
        "start": start,
        "end": end,
        "timezone": PARIS,
        "invitees": [{"email": "quentin.tarantino@hollywood.com"}],
        **extra,
    }


async def book(gw: Any, start: str, end: str, **extra: Any) -> dict[str, Any]:
    resp = await gw.post("/v1/bookings", json=body(start, end, **extra), headers=AUTH)
    assert resp.status == 201, await resp.text()
    booking: dict[str, Any] = await resp.json()
    return booking


def at(clock: str, day: Any = DAY) -> str:
    return iso(day, clock, PARIS)


async def vyte_dates(admin: aiohttp.ClientSession, event_id: str) -> tuple[str, str]:
    from service.sandbox import SANDBOX_API_KEY

    async with admin.get(f"v2/events/{event_id}", headers={"Authorization": SANDBOX_API_KEY}) as r:
        event = await r.json()
    first = event["dates"][0]
    return first["date"][:19], first["end_date"][:19]


async def test_moving_into_its_own_time_works_and_is_announced(
    gateway_factory: Any, sandbox_admin: aiohttp.ClientSession, receiver: Receiver
) -> None:
    gw = await gateway_factory()
    created = await book(gw, at("10:00"), at("11:00"), callback_url=receiver.url)
    path = f"/v1/bookings/{created['id']}/reschedule"
    resp = await gw.post(path, json={"start": at("10:30"), "end": at("11:30")}, headers=AUTH)
    assert resp.status == 200, await resp.text()
    moved = await resp.json()
    assert (moved["id"], moved["start"], moved["end"]) == (created["id"], at("10:30"), at("11:30"))
    assert (moved["status"], moved["version"]) == ("requested", 2)
    start, end = (datetime.fromisoformat(at(t)) for t in ("10:30", "11:30"))
    assert await vyte_dates(sandbox_admin, created["id"]) == (zulu(start)[:19], zulu(end)[:19])
    read = await (await gw.get(f"/v1/bookings/{created['id']}", headers=AUTH)).json()
    assert read == moved
    await receiver.wait_for(2)
    (updated,) = receiver.bodies("booking.updated")
    assert updated["data"]["start"] == at("10:30") and updated["data"]["version"] == 2

    # `duration` instead of `end`; a confirmed booking stays confirmed (Vyte reconfirms it).
    await gw.post(f"/v1/bookings/{created['id']}/confirm", headers=AUTH)
    resp = await gw.post(path, json={"start": at("09:00"), "duration": 30}, headers=AUTH)
    again = await resp.json()
    assert (again["start"], again["end"], again["status"]) == (
        at("09:00"),
        at("09:30"),
        "confirmed",
    )
    assert again["version"] == 4


async def test_conflicts_with_another_booking_and_with_vyte_busy_time(
    gateway: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    first = await book(gateway, at("10:00"), at("11:00"))
    await book(gateway, at("12:00"), at("13:00"))
    path = f"/v1/bookings/{first['id']}/reschedule"
    calls = await upstream_calls(sandbox_admin, PUT)
    resp = await gateway.post(path, json={"start": at("12:30"), "end": at("13:30")}, headers=AUTH)
    assert resp.status == 409
    assert (await resp.json(content_type=None))["type"] == "/problems/slot-unavailable"
    # Even unchecked in Vyte, the other booking's hold refuses it.
    unchecked = {"start": at("12:30"), "end": at("13:30"), "check_availability": False}
    resp = await gateway.post(path, json=unchecked, headers=AUTH)
    assert resp.status == 409
    assert await upstream_calls(sandbox_admin, PUT) == calls

    # John is busy 12:00-14:00 Paris on the seed's Thursday: Vyte's answer refuses it.
    thursday = seed_thursday()
    lunch = {"start": at("13:00", thursday), "end": at("14:00", thursday)}
    resp = await gateway.post(path, json=lunch, headers=AUTH)
    assert resp.status == 409
    assert (await resp.json(content_type=None))["type"] == "/problems/slot-unavailable"
    assert await upstream_calls(sandbox_admin, PUT) == calls
    still = await (await gateway.get(f"/v1/bookings/{first['id']}", headers=AUTH)).json()
    assert (still["start"], still["version"]) == (at("10:00"), 1)


async def test_the_old_time_is_free_in_the_next_availability_answer(gateway: Any) -> None:
    created = await book(gateway, at("10:00"), at("11:00"))
    query = (
        f"/v1/availability?participants={JOHN}&duration=60&from={DAY}&to={DAY}"
        f"&timezone={PARIS}&step=60"
    )
    # The answer is cached now (SLOT_CACHE_TTL), with Vyte showing 10:00 busy.
    starts = [s["start"] for s in (await (await gateway.get(query, headers=AUTH)).json())["slots"]]
    assert at("10:00") not in starts and at("15:00") in starts
    path = f"/v1/bookings/{created['id']}/reschedule"
    resp = await gateway.post(path, json={"start": at("15:00"), "end": at("16:00")}, headers=AUTH)
    assert resp.status == 200
    starts = [s["start"] for s in (await (await gateway.get(query, headers=AUTH)).json())["slots"]]
    assert at("10:00") in starts and at("15:00") not in starts


async def test_a_cancelled_time_is_free_in_the_next_availability_answer(gateway: Any) -> None:
    created = await book(gateway, at("10:00"), at("11:00"))
    confirmed = await gateway.post(f"/v1/bookings/{created['id']}/confirm", headers=AUTH)
    assert confirmed.status == 200
    query = (
        f"/v1/availability?participants={JOHN}&duration=60&from={DAY}&to={DAY}"
        f"&timezone={PARIS}&step=60"
    )
    # Cached now, with Vyte showing 10:00 busy: the cancel must not wait for the cache to age.
    starts = [s["start"] for s in (await (await gateway.get(query, headers=AUTH)).json())["slots"]]
    assert at("10:00") not in starts
    resp = await gateway.post(f"/v1/bookings/{created['id']}/cancel", headers=AUTH)
    assert resp.status == 200
    starts = [s["start"] for s in (await (await gateway.get(query, headers=AUTH)).json())["slots"]]
    assert at("10:00") in starts


async def test_concurrent_reschedules_into_one_slot_one_wins(
    gateway: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    created = [await book(gateway, at(f"{h:02d}:00"), at(f"{h:02d}:30")) for h in (8, 9, 10, 11)]
    targets = [("15:00", "16:00"), ("15:15", "16:15"), ("15:30", "16:30"), ("15:45", "16:45")]
    answers = await asyncio.gather(
        *(
            gateway.post(
                f"/v1/bookings/{b['id']}/reschedule",
                json={"start": at(s), "end": at(e)},
                headers=AUTH,
            )
            for b, (s, e) in zip(created, targets, strict=True)
        )
    )
    assert sorted(a.status for a in answers) == [200, 409, 409, 409]
    assert await upstream_calls(sandbox_admin, PUT) == 1


async def test_same_times_answer_200_without_asking_vyte(
    gateway: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    created = await book(gateway, at("10:00"), at("11:00"))
    path = f"/v1/bookings/{created['id']}/reschedule"
    # The same instants written in another offset are the same times.
    utc = datetime.fromisoformat(at("10:00")).astimezone(UTC).isoformat()
    resp = await gateway.post(path, json={"start": utc, "duration": 60}, headers=AUTH)
    assert resp.status == 200
    assert await resp.json() == created
    assert await upstream_calls(sandbox_admin, PUT) == 0
    assert await upstream_calls(sandbox_admin, "GET /v2/slots") == 1  # the create's check only


async def test_cancelled_is_409_and_other_callers_get_404(
    gateway: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    created = await book(gateway, at("10:00"), at("11:00"))
    path = f"/v1/bookings/{created['id']}/reschedule"
    move = {"start": at("14:00"), "end": at("15:00")}
    for headers in ({}, {"Prefer": "respond-async"}):
        resp = await gateway.post(path, json=move, headers={**OTHER_AUTH, **headers})
        assert resp.status == 404, await resp.text()
        missing = await gateway.post(
            f"/v1/bookings/{'b' * 24}/reschedule", json=move, headers={**OTHER_AUTH, **headers}
        )
        assert missing.status == 404
        problem, absent = await resp.json(content_type=None), await missing.json(content_type=None)
        assert (problem["type"], problem["title"]) == (absent["type"], absent["title"])
    await gateway.post(f"/v1/bookings/{created['id']}/cancel", headers=AUTH)
    resp = await gateway.post(path, json=move, headers=AUTH)
    assert resp.status == 409
    assert (await resp.json(content_type=None))["type"] == "/problems/booking-cancelled"
    assert await upstream_calls(sandbox_admin, PUT) == 0


@pytest.mark.parametrize(
    ("move", "field"),
    [
        ({"start": "PAST", "duration": 30}, "start"),
        ({"start": "LATER"}, "end"),
        ({"start": "LATER", "end": "LATER", "duration": 30}, "end"),
        ({"start": "LATER", "duration": 2}, "duration"),
        ({"start": "LATER", "duration": 30, "title": "x"}, "title"),
        ({"start": "2037-01-01T10:00:00", "duration": 30}, "start"),
        ({"start": "LATER", "duration": 30, "check_availability": "yes"}, "check_availability"),
    ],
)
async def test_bad_bodies_are_400_naming_the_field_before_vyte(
    gateway: Any, sandbox_admin: aiohttp.ClientSession, move: dict[str, Any], field: str
) -> None:
    created = await book(gateway, at("10:00"), at("11:00"))
    past = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=0).isoformat()
    values = {"PAST": past, "LATER": at("14:00")}
    sent = {k: values.get(v, v) if isinstance(v, str) else v for k, v in move.items()}
    resp = await gateway.post(f"/v1/bookings/{created['id']}/reschedule", json=sent, headers=AUTH)
    assert resp.status == 400, await resp.text()
    problem = await resp.json(content_type=None)
    assert field in {e["field"] for e in problem["errors"]}
    if field == "start" and move["start"] == "PAST":
        assert "must not be in the past" in {e["message"] for e in problem["errors"]}
    assert await upstream_calls(sandbox_admin, PUT) == 0


async def test_a_create_in_the_past_is_400_without_a_vyte_call(
    gateway: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    start = datetime.now(UTC) - timedelta(hours=4)
    for headers in ({}, {"Prefer": "respond-async"}):
        resp = await gateway.post(
            "/v1/bookings",
            json=body(start.isoformat(), (start + timedelta(hours=1)).isoformat()),
            headers={**AUTH, **headers},
        )
        assert resp.status == 400
        errors = (await resp.json(content_type=None))["errors"]
        assert {"field": "start", "message": "must not be in the past"} in errors
    assert await upstream_calls(sandbox_admin, "GET /v2/slots") == 0
    assert await upstream_calls(sandbox_admin, "POST /v2/events") == 0


async def test_a_keyed_retry_replays_the_first_answer(
    gateway: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    created = await book(gateway, at("10:00"), at("11:00"))
    path = f"/v1/bookings/{created['id']}/reschedule"
    move = {"start": at("14:00"), "end": at("15:00")}
    headers = {**AUTH, "Idempotency-Key": "move-1"}
    first = await gateway.post(path, json=move, headers=headers)
    assert first.status == 200
    again = await gateway.post(path, json=move, headers=headers)
    assert again.status == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert await again.json() == await first.json()
    assert await upstream_calls(sandbox_admin, PUT) == 1
    other = await gateway.post(path, json={**move, "end": at("14:30")}, headers=headers)
    assert other.status == 422


async def test_an_async_reschedule_runs_as_an_operation(
    gateway: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    created = await book(gateway, at("10:00"), at("11:00"))
    resp = await gateway.post(
        f"/v1/bookings/{created['id']}/reschedule",
        json={"start": at("16:00"), "duration": 45},
        headers={**AUTH, "Prefer": "respond-async"},
    )
    assert resp.status == 202, await resp.text()
    op = await resp.json()
    assert (op["type"], op["booking_id"]) == ("reschedule", created["id"])
    for _ in range(200):
        op = await (await gateway.get(resp.headers["Location"], headers=AUTH)).json()
        if op["status"] != "pending":
            break
        await asyncio.sleep(0.05)
    assert op["status"] == "succeeded", op
    moved = await (await gateway.get(f"/v1/bookings/{created['id']}", headers=AUTH)).json()
    assert (moved["start"], moved["end"], moved["version"]) == (at("16:00"), at("16:45"), 2)
    assert await upstream_calls(sandbox_admin, PUT) == 1


async def reschedule_vs_create(gateway_factory: Any, day: Any = DAY, **settings: Any) -> None:
    """Replicas on one store: a create and a reschedule into overlapping time, many times."""
    one, two = await gateway_factory(**settings), await gateway_factory(**settings)
    for round_ in range(5):
        hour = 8 + 2 * round_
        created = await book(one, at(f"{hour:02d}:00", day), at(f"{hour:02d}:30", day))
        target = {"start": at(f"{hour + 1:02d}:00", day), "end": at(f"{hour + 1:02d}:45", day)}
        move, new = await asyncio.gather(
            one.post(f"/v1/bookings/{created['id']}/reschedule", json=target, headers=AUTH),
            two.post(
                "/v1/bookings",
                json=body(at(f"{hour + 1:02d}:30", day), at(f"{hour + 2:02d}:00", day)),
                headers=AUTH,
            ),
        )
        assert sorted([move.status, new.status]) == [200, 409] or sorted(
            [move.status, new.status]
        ) == [201, 409], (move.status, new.status)


async def test_reschedule_vs_create_one_wins(gateway_factory: Any) -> None:
    await reschedule_vs_create(gateway_factory)


async def concurrent_moves_across_replicas(gateway_factory: Any, **settings: Any) -> None:
    replicas = [await gateway_factory(**settings) for _ in range(3)]
    created = [await book(replicas[0], at(f"{h:02d}:00"), at(f"{h:02d}:30")) for h in (8, 9, 10)]
    answers = await asyncio.gather(
        *(
            gw.post(
                f"/v1/bookings/{b['id']}/reschedule",
                json={"start": at("15:00"), "end": at("15:30"), "check_availability": False},
                headers=AUTH,
            )
            for gw, b in zip(replicas, created, strict=True)
        )
    )
    assert sorted(a.status for a in answers) == [200, 409, 409]
    # The winner's old time is free on every replica: another create takes it.
    (winner,) = [b for b, a in zip(created, answers, strict=True) if a.status == 200]
    resp = await replicas[2].post(
        "/v1/bookings", json=body(winner["start"], winner["end"]), headers=AUTH
    )
    assert resp.status == 201, await resp.text()


async def test_concurrent_moves_on_redis_one_wins(gateway_factory: Any, redis_server: Any) -> None:
    await redis_server.flush(1)
    url = redis_server.url(1)
    await concurrent_moves_across_replicas(gateway_factory, store_url=url)
    await reschedule_vs_create(gateway_factory, meeting_day(1), store_url=url)


async def test_the_old_time_is_free_on_every_replica(
    gateway_factory: Any, redis_server: Any
) -> None:
    await redis_server.flush(3)
    replicas = [await gateway_factory(store_url=redis_server.url(3)) for _ in range(2)]
    day = meeting_day(2)
    created = await book(replicas[0], at("10:00", day), at("11:00", day))
    query = (
        f"/v1/availability?participants={JOHN}&duration=60&from={day}&to={day}"
        f"&timezone={PARIS}&step=60"
    )

    async def starts(gw: Any) -> list[str]:
        answer = await (await gw.get(query, headers=AUTH)).json()
        return [s["start"] for s in answer["slots"]]

    for gw in replicas:  # both replicas hold Vyte's answer now, 10:00 busy in it
        assert at("10:00", day) not in await starts(gw)
    move = {"start": at("15:00", day), "end": at("16:00", day)}
    resp = await replicas[0].post(
        f"/v1/bookings/{created['id']}/reschedule", json=move, headers=AUTH
    )
    assert resp.status == 200
    for gw in reversed(replicas):
        free = await starts(gw)
        assert at("10:00", day) in free and at("15:00", day) not in free


async def concurrent_moves_of_one_booking(
    replicas: list[Any], sandbox_admin: aiohttp.ClientSession, day: Any
) -> None:
    """Two moves of one booking to different free times, while Vyte is slow to move it: one
    wins, the other is 409, and the gateway's times are Vyte's."""
    created = await book(replicas[0], at("08:00", day), at("08:30", day))
    path = f"/v1/bookings/{created['id']}/reschedule"
    await sandbox_admin.post(
        "_sandbox/faults", json={"latency": 0.3, "path": "/v2/events/", "method": "PUT"}
    )
    before = await upstream_calls(sandbox_admin, PUT)
    targets = [("14:00", "14:30"), ("16:00", "16:30")]
    moves = asyncio.gather(
        *(
            gw.post(
                path,
                json={"start": at(s, day), "end": at(e, day), "check_availability": False},
                headers=AUTH,
            )
            for gw, (s, e) in zip(replicas, targets, strict=True)
        )
    )
    await asyncio.sleep(0.1)  # a move holds the lock, waiting on Vyte
    stranger = await replicas[-1].post(
        path, json={"start": at("18:00", day), "duration": 30}, headers=OTHER_AUTH
    )
    assert stranger.status == 404  # not 409: another caller learns nothing of the booking
    answers = await moves
    assert sorted(a.status for a in answers) == [200, 409], [a.status for a in answers]
    assert await upstream_calls(sandbox_admin, PUT) - before == 1
    (lost,) = [a for a in answers if a.status == 409]
    assert "rescheduled by another request" in (await lost.json())["detail"]
    (won,) = [await a.json() for a in answers if a.status == 200]
    for gw in replicas:
        read = await (await gw.get(f"/v1/bookings/{created['id']}", headers=AUTH)).json()
        assert (read["start"], read["end"]) == (won["start"], won["end"])
    start, end = (datetime.fromisoformat(won[k]) for k in ("start", "end"))
    assert await vyte_dates(sandbox_admin, created["id"]) == (zulu(start)[:19], zulu(end)[:19])
    # Once the first is done, the booking moves again.
    again = await replicas[-1].post(
        path,
        json={"start": at("17:00", day), "end": at("17:30", day), "check_availability": False},
        headers=AUTH,
    )
    assert again.status == 200, await again.text()


async def test_two_moves_of_one_booking_at_once_one_wins(
    gateway: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    await concurrent_moves_of_one_booking([gateway, gateway], sandbox_admin, DAY)


async def test_two_moves_of_one_booking_on_two_redis_replicas_one_wins(
    gateway_factory: Any, redis_server: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    await redis_server.flush(4)
    replicas = [await gateway_factory(store_url=redis_server.url(4)) for _ in range(2)]
    await concurrent_moves_of_one_booking(replicas, sandbox_admin, meeting_day(3))

"""Bookings through the gateway against the sandbox: create, read, confirm, cancel,
idempotency and no double booking."""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aioresponses import aioresponses

from service import keys
from service.domain.booking import Booking, BookingStatus, Invitee
from service.sandbox import SANDBOX_API_KEY
from tests.conftest import ADMIN_AUTH, AUTH, JOHN, OTHER_AUTH, upstream_calls
from tests.dates import iso, meeting_day, seed_thursday, zulu

VYTE = {"Authorization": SANDBOX_API_KEY}
FAKE = "http://vyte.test"
PARIS = "Europe/Paris"
MEETING_DAY = meeting_day()


def booking_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "organizer": JOHN,
        "title": "Meeting with Quentin Tarantino",
        "start": iso(MEETING_DAY, "10:00", PARIS),
        "end": iso(MEETING_DAY, "11:00", PARIS),
        "timezone": "Europe/Paris",
        "invitees": [
            {"full_name": "Quentin Tarantino", "email": "quentin.tarantino@hollywood.com"}
        ],
        "place": {"name": "Place for the meeting."},
        "message": "See you there",
        "callback_url": "https://crm.internal/hooks/bookings",
    }
    body.update(changes)
    return {k: v for k, v in body.items() if v is not None}


async def vyte_event(admin: aiohttp.ClientSession, event_id: str) -> dict[str, Any]:
    async with admin.get(f"v2/events/{event_id}", headers=VYTE) as resp:
        assert resp.status == 200
        event: dict[str, Any] = await resp.json()
        return event


async def test_create_forwards_the_vyteme_event(
    gateway: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    resp = await gateway.post("/v1/bookings", json=booking_body(), headers=AUTH)
    assert resp.status == 201, await resp.text()
    booking = await resp.json()
    assert booking["status"] == "requested" and booking["version"] == 1
    assert booking["start"] == iso(MEETING_DAY, "10:00", PARIS)
    assert booking["end"] == iso(MEETING_DAY, "11:00", PARIS)
    assert booking["organizer"] == JOHN
    assert booking["callback_url"] == "https://crm.internal/hooks/bookings"
    assert resp.headers["Location"] == f"/v1/bookings/{booking['id']}"

    event = await vyte_event(sandbox_admin, booking["id"])
    assert event["vyteme"] is True
    assert event["title"] == "Meeting with Quentin Tarantino"
    assert event["created_by"]["user"] == JOHN
    start, end = (datetime.fromisoformat(iso(MEETING_DAY, t, PARIS)) for t in ("10:00", "11:00"))
    assert event["dates"][0]["date"].startswith(zulu(start)[:19])
    assert event["dates"][0]["end_date"].startswith(zulu(end)[:19])
    emails = [i.get("email") for i in event["invitees"] if not i.get("su")]
    assert emails == ["quentin.tarantino@hollywood.com"]
    assert event["places"][0]["name"] == "Place for the meeting."

    read = await gateway.get(f"/v1/bookings/{booking['id']}", headers=AUTH)
    assert await read.json() == booking


async def test_duration_instead_of_end(gateway: Any) -> None:
    start = datetime.combine(MEETING_DAY, time(8), UTC)
    resp = await gateway.post(
        "/v1/bookings",
        json=booking_body(end=None, duration=30, start=f"{MEETING_DAY}T08:00:00Z"),
        headers=AUTH,
    )
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    # Answered in the booking's time zone.
    assert (body["start"], body["end"]) == (
        start.astimezone(ZoneInfo(PARIS)).isoformat(),
        (start + timedelta(minutes=30)).astimezone(ZoneInfo(PARIS)).isoformat(),
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"organizer": None}, "organizer"),
        ({"organizer": "john"}, "organizer"),
        ({"title": ""}, "title"),
        ({"title": None}, "title"),
        ({"place": {"name": None}}, "place.name"),
        ({"place": {"address": "1 Main St"}}, "place.name"),
        ({"title": "x" * 256}, "title"),
        ({"start": f"{MEETING_DAY}T10:00:00"}, "start"),
        ({"start": "tomorrow"}, "start"),
        ({"duration": 30}, "end"),
        ({"end": None}, "end"),
        ({"end": None, "duration": 2}, "duration"),
        ({"end": iso(MEETING_DAY, "09:00", PARIS)}, "end"),
        ({"timezone": "Europe/Atlantis"}, "timezone"),
        ({"invitees": []}, "invitees"),
        ({"invitees": [{"email": "not-an-email"}]}, "invitees[0].email"),
        ({"invitees": [{"email": "a@example.com", "age": 3}]}, "invitees[0].age"),
        ({"invitees": [{"email": f"p{i}@example.com"} for i in range(51)]}, "invitees"),
        ({"callback_url": "ftp://x"}, "callback_url"),
        ({"check_availability": "false"}, "check_availability"),
        ({"colour": "red"}, "colour"),
    ],
)
async def test_bad_bodies_are_400_naming_the_field(
    gateway: Any, changes: dict[str, Any], field: str
) -> None:
    body = booking_body()
    for k, v in changes.items():
        if v is None:
            body.pop(k, None)
        else:
            body[k] = v
    resp = await gateway.post("/v1/bookings", json=body, headers=AUTH)
    assert resp.status == 400, await resp.text()
    problem = await resp.json(content_type=None)
    assert field in [e["field"] for e in problem["errors"]]


async def test_busy_slot_is_409(gateway: Any) -> None:
    # John is busy 12:00-14:00 Paris on the sandbox seed's Thursday.
    thursday = seed_thursday()
    lunch = {"start": iso(thursday, "13:00", PARIS), "end": iso(thursday, "14:00", PARIS)}
    resp = await gateway.post("/v1/bookings", json=booking_body(**lunch), headers=AUTH)
    assert resp.status == 409
    assert (await resp.json(content_type=None))["type"] == "/problems/slot-unavailable"
    resp = await gateway.post(
        "/v1/bookings",
        json=booking_body(**lunch, check_availability=False),
        headers=AUTH,
    )
    assert resp.status == 201


async def test_overlapping_concurrent_bookings_one_wins(
    gateway: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    starts = [
        iso(MEETING_DAY, f"{h:02d}:{m:02d}", PARIS) for h, m in [(10, 0), (10, 15), (10, 30)] * 3
    ] + [iso(MEETING_DAY, "10:45", PARIS)]
    bodies = [
        booking_body(start=s, end=None, duration=60, check_availability=False) for s in starts
    ]
    answers = await asyncio.gather(
        *(gateway.post("/v1/bookings", json=b, headers=AUTH) for b in bodies)
    )
    statuses = sorted(a.status for a in answers)
    assert statuses == [201] + [409] * 9
    assert await upstream_calls(sandbox_admin, "POST /v2/events") == 1


async def test_own_bookings_block_availability_before_vyte_knows(gateway: Any) -> None:
    store = gateway.server.app[keys.STORE]
    now = datetime.now(UTC)
    path = f"/v1/availability?participants={JOHN}&duration=60&from={MEETING_DAY}&to={MEETING_DAY}"
    # Asked once before, with nothing booked: what was read then is not what is answered next.
    before = await (await gateway.get(path + "&notice=0", headers=AUTH)).json()
    assert f"{MEETING_DAY}T09:00:00+00:00" in [s["start"] for s in before["slots"]]
    await store.put_booking(
        Booking(
            id="a" * 24,
            status=BookingStatus.REQUESTED,
            title="held",
            organizer=JOHN,
            start=datetime.combine(MEETING_DAY, time(9), UTC),
            end=datetime.combine(MEETING_DAY, time(10), UTC),
            timezone="UTC",
            invitees=(Invitee(email="x@example.com"),),
            place=None,
            message=None,
            callback_url=None,
            caller="alpha",
            version=1,
            created_at=now,
            updated_at=now,
        ),
        expected_version=None,
    )
    resp = await gateway.get(path, headers=AUTH)
    starts = [s["start"] for s in (await resp.json())["slots"]]
    assert f"{MEETING_DAY}T08:00:00+00:00" in starts and f"{MEETING_DAY}T10:00:00+00:00" in starts
    assert f"{MEETING_DAY}T09:00:00+00:00" not in starts


async def test_confirm_cancel_state_machine(
    gateway: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    created = await (await gateway.post("/v1/bookings", json=booking_body(), headers=AUTH)).json()
    path = f"/v1/bookings/{created['id']}"
    confirmed = await gateway.post(f"{path}/confirm", headers=AUTH)
    assert confirmed.status == 200
    body = await confirmed.json()
    assert (body["status"], body["version"]) == ("confirmed", 2)
    assert (await vyte_event(sandbox_admin, created["id"]))["confirmed"]["flag"] is True

    calls = await upstream_calls(sandbox_admin, "POST /v2/events/{id}/confirm")
    again = await gateway.post(f"{path}/confirm", headers=AUTH)
    assert (await again.json())["version"] == 2
    assert await upstream_calls(sandbox_admin, "POST /v2/events/{id}/confirm") == calls

    cancelled = await (await gateway.post(f"{path}/cancel", headers=AUTH)).json()
    assert (cancelled["status"], cancelled["version"]) == ("cancelled", 3)
    assert (await vyte_event(sandbox_admin, created["id"]))["cancelled"]
    calls = await upstream_calls(sandbox_admin, "POST /v2/events/{id}/cancel")
    assert (await (await gateway.post(f"{path}/cancel", headers=AUTH)).json())["version"] == 3
    assert await upstream_calls(sandbox_admin, "POST /v2/events/{id}/cancel") == calls

    refused = await gateway.post(f"{path}/confirm", headers=AUTH)
    assert refused.status == 409
    assert (await refused.json(content_type=None))["type"] == "/problems/booking-cancelled"


async def test_seed_flow_end_to_end(gateway: Any) -> None:
    slots = await (
        await gateway.get(
            f"/v1/availability?participants={JOHN}&duration=60&from={MEETING_DAY}"
            f"&to={MEETING_DAY + timedelta(days=1)}&timezone=Europe/Paris",
            headers=AUTH,
        )
    ).json()
    chosen = slots["slots"][10]
    created = await gateway.post(
        "/v1/bookings", json=booking_body(start=chosen["start"], end=chosen["end"]), headers=AUTH
    )
    assert created.status == 201
    booking = await created.json()
    done = await (await gateway.post(f"/v1/bookings/{booking['id']}/confirm", headers=AUTH)).json()
    assert done["status"] == "confirmed"
    again = await (
        await gateway.get(
            f"/v1/availability?participants={JOHN}&duration=60&from={MEETING_DAY}"
            f"&to={MEETING_DAY + timedelta(days=1)}&timezone=Europe/Paris",
            headers=AUTH,
        )
    ).json()
    # Cached answers still leave the booked hour out: the gateway's own bookings block it.
    assert chosen["start"] not in [s["start"] for s in again["slots"]]


async def test_unknown_event_is_adopted_by_an_admin_or_404(
    gateway: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    made_in_vyte = datetime.combine(MEETING_DAY + timedelta(days=7), time(9), UTC)
    async with sandbox_admin.post(
        "v2/events",
        headers=VYTE,
        json={
            "title": "Made inside Vyte",
            "created_by": {"user": JOHN},
            "dates": [
                {
                    "all_day": False,
                    "date": zulu(made_in_vyte),
                    "end_date": zulu(made_in_vyte + timedelta(hours=1)),
                }
            ],
            "invitees": [{"email": "z@example.com"}],
            "timezone": "Europe/Paris",
            "vyteme": True,
        },
    ) as resp:
        event = await resp.json()
    # A non-admin's read adopts nothing: 404, and Vyte is not asked.
    asked = await upstream_calls(sandbox_admin, "GET /v2/events/{id}")
    refused = await gateway.get(f"/v1/bookings/{event['_id']}", headers=AUTH)
    assert refused.status == 404
    assert (await refused.json())["type"] == "/problems/booking-not-found"
    assert await upstream_calls(sandbox_admin, "GET /v2/events/{id}") == asked
    got = await gateway.get(f"/v1/bookings/{event['_id']}", headers=ADMIN_AUTH)
    assert got.status == 200
    adopted = await got.json()
    assert adopted["title"] == "Made inside Vyte" and adopted["status"] == "requested"
    assert adopted["start"] == made_in_vyte.astimezone(ZoneInfo(PARIS)).isoformat()
    # Adopted with no owner: still not there for a non-admin.
    assert (await gateway.get(f"/v1/bookings/{event['_id']}", headers=AUTH)).status == 404
    missing = await gateway.get(f"/v1/bookings/{'0' * 24}", headers=ADMIN_AUTH)
    assert missing.status == 404
    assert (await gateway.get("/v1/bookings/not-an-id", headers=AUTH)).status == 404


async def test_idempotency_key_replays_and_refuses_reuse(
    gateway: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    key = {"Idempotency-Key": "key-1"}
    first = await gateway.post("/v1/bookings", json=booking_body(), headers={**AUTH, **key})
    assert first.status == 201
    replay = await gateway.post("/v1/bookings", json=booking_body(), headers={**AUTH, **key})
    assert replay.status == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert await replay.json() == await first.json()
    assert replay.headers["Location"] == first.headers["Location"]
    assert await upstream_calls(sandbox_admin, "POST /v2/events") == 1

    reused = await gateway.post(
        "/v1/bookings", json=booking_body(title="Other"), headers={**AUTH, **key}
    )
    assert reused.status == 422
    assert (await reused.json(content_type=None))["type"] == "/problems/idempotency-key-reused"

    # Keys are scoped per caller: the same key from another caller is a new request.
    other = await gateway.post(
        "/v1/bookings",
        json=booking_body(
            start=iso(MEETING_DAY, "14:00", PARIS), end=iso(MEETING_DAY, "15:00", PARIS)
        ),
        headers={**OTHER_AUTH, **key},
    )
    assert other.status == 201 and "Idempotent-Replayed" not in other.headers

    path = f"/v1/bookings/{(await first.json())['id']}/confirm"
    c1 = await gateway.post(path, headers={**AUTH, "Idempotency-Key": "confirm-1"})
    c2 = await gateway.post(path, headers={**AUTH, "Idempotency-Key": "confirm-1"})
    assert c1.status == c2.status == 200 and c2.headers["Idempotent-Replayed"] == "true"


async def test_fifty_concurrent_retries_make_one_event(
    gateway: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    await sandbox_admin.post("_sandbox/faults", json={"latency": 0.2})
    headers = {**AUTH, "Idempotency-Key": "storm"}
    answers = await asyncio.gather(
        *(gateway.post("/v1/bookings", json=booking_body(), headers=headers) for _ in range(50))
    )
    statuses = [a.status for a in answers]
    assert statuses.count(201) >= 1
    assert set(statuses) <= {201, 409}
    for a in answers:
        if a.status == 409:
            assert a.headers["Retry-After"]
            assert (await a.json(content_type=None))[
                "type"
            ] == "/problems/idempotency-key-in-flight"
    assert await upstream_calls(sandbox_admin, "POST /v2/events") == 1


async def test_server_errors_are_not_stored(
    gateway_factory: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    # A create's 5xx leaves its outcome unknown: the key waits for the reconciler (which
    # finds nothing here), and is never answered with the stored 502.
    gateway = await gateway_factory(unknown_outcome_timeout=0.5)
    await sandbox_admin.post(
        "_sandbox/faults", json={"status": 500, "count": 1, "path": "/v2/events"}
    )
    headers = {**AUTH, "Idempotency-Key": "flaky"}
    body = booking_body(check_availability=False)
    failed = await gateway.post("/v1/bookings", json=body, headers=headers)
    assert failed.status == 502
    for _ in range(100):
        retried = await gateway.post("/v1/bookings", json=body, headers=headers)
        if retried.status != 409:
            break
        assert (await retried.json())["type"] == "/problems/idempotency-key-in-flight"
        await asyncio.sleep(0.05)
    assert retried.status == 201 and "Idempotent-Replayed" not in retried.headers


@pytest.mark.parametrize(("status", "expected"), [(503, 503), (429, 503), (500, 502), (401, 502)])
async def test_create_upstream_failures(gateway_factory: Any, status: int, expected: int) -> None:
    gw = await gateway_factory(vyte_base_url=FAKE)
    with aioresponses(passthrough=["http://127.0.0.1"]) as mocked:
        mocked.post(f"{FAKE}/v2/events", status=status, headers={"Retry-After": "5"})
        resp = await gw.post(
            "/v1/bookings", json=booking_body(check_availability=False), headers=AUTH
        )
        assert resp.status == expected
        if expected == 503:
            assert resp.headers["Retry-After"] == "5"
        posts = [k for k in mocked.requests if k[0] == "POST"]
        assert len(mocked.requests[posts[0]]) == 1


async def test_create_timeout_is_504_and_not_resent(
    gateway_factory: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    gw = await gateway_factory(vyte_timeout=0.3, request_budget=1.0)
    await sandbox_admin.post("_sandbox/faults", json={"hang": True, "path": "/v2/events"})
    resp = await gw.post("/v1/bookings", json=booking_body(check_availability=False), headers=AUTH)
    assert resp.status == 504
    assert await upstream_calls(sandbox_admin, "POST /v2/events") == 1
    await sandbox_admin.delete("_sandbox/faults")
    # The slot stays held: the event may exist in Vyte, so a second try must not double-book.
    again = await gw.post("/v1/bookings", json=booking_body(check_availability=False), headers=AUTH)
    assert again.status == 409


async def test_query_parameters_are_rejected_on_bookings(gateway: Any) -> None:
    resp = await gateway.post("/v1/bookings?x=1", json=booking_body(), headers=AUTH)
    assert resp.status == 400
    assert re.search("x", (await resp.json(content_type=None))["errors"][0]["field"])

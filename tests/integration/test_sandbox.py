"""The Vyte sandbox over HTTP: auth, slots, events, hooks, faults and the admin endpoints."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, date, datetime, timedelta, timezone
from datetime import time as clock
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient, AiohttpServer

from service.sandbox import (
    SANDBOX_API_KEY,
    SandboxConfig,
    create_sandbox_app,
    run_sandbox,
    start_sandbox,
)
from tests.dates import (
    FRIDAY,
    SATURDAY,
    SUNDAY,
    THURSDAY,
    at,
    in_days,
    iso,
    meeting_day,
    naive,
    next_transition,
    next_weekday,
    zulu,
)

JOHN = "5f3feb7821046c3bb9327e6a"
JANE = "5f3feb7821046c3bb9327e6b"
ORGANIZATION = "5f3feb7821046c3bb9327e00"
AUTH = {"Authorization": SANDBOX_API_KEY}

Client = TestClient[web.Request, web.Application]

PARIS = "Europe/Paris"
NEW_YORK = "America/New_York"
MEETING_DAY = meeting_day()
"""The guide's meeting, on a day nobody seeded is busy."""
ONE_DAY = {"from": in_days(3).isoformat(), "to": in_days(3).isoformat()}


@pytest.fixture
async def client(aiohttp_client: AiohttpClient) -> Client:
    # The receivers below are plain-http loopback servers.
    return await aiohttp_client(create_sandbox_app(SandboxConfig(allow_http_hooks=True)))


@attrs.define
class Receiver:
    """A hook target that records what it is sent."""

    url: str
    bodies: asyncio.Queue[Any]
    status: list[int]

    async def next(self) -> Any:
        async with asyncio.timeout(2):
            return await self.bodies.get()

    async def by_action(self, count: int) -> dict[str, Any]:
        """Deliveries are concurrent, so several may arrive in any order."""
        received = [await self.next() for _ in range(count)]
        return {body["action"]: body for body in received}


@pytest.fixture
async def receiver(aiohttp_server: AiohttpServer) -> Receiver:
    bodies: asyncio.Queue[Any] = asyncio.Queue()
    status = [200]

    async def handle(request: web.Request) -> web.Response:
        bodies.put_nowait(await request.json())
        return web.Response(status=status[0])

    app = web.Application()
    app.router.add_post("/hooks", handle)
    server = await aiohttp_server(app)
    return Receiver(str(server.make_url("/hooks")), bodies, status)


async def get_json(client: Client, path: str, status: int = 200, **params: str) -> Any:
    response = await client.get(path, params=params, headers=AUTH)
    assert response.status == status, await response.text()
    return await response.json()


async def post_json(client: Client, path: str, body: object, status: int = 200) -> Any:
    response = await client.post(path, json=body, headers=AUTH)
    assert response.status == status, await response.text()
    return await response.json()


async def slots(client: Client, path: str = "/v2/slots", status: int = 200, **params: str) -> Any:
    return await get_json(client, path, status, **params)


def starts(body: dict[str, Any]) -> list[str]:
    return [slot["start"]["dateTime"] for slot in body["slots"]]


def booking(**overrides: Any) -> dict[str, Any]:
    """The seed guide's 1-1 booking request."""
    body: dict[str, Any] = {
        "title": "Meeting with Quentin Tarantino",
        "created_by": {"user": JOHN},
        "dates": [
            {
                "all_day": False,
                "date": f"{MEETING_DAY}T10:00:00",
                "end_date": f"{MEETING_DAY}T11:00:00",
            }
        ],
        "invitees": {"full_name": "Quentin Tarantino", "email": "quentin.tarantino@hollywood.com"},
        "places": [{"name": "Place for the meeting."}],
        "vyteme": True,
    }
    body.update(overrides)
    return body


# Auth


async def test_auth_test_returns_the_organization(client: Client) -> None:
    organization = await get_json(client, "/v2/auth/test")
    assert organization["_id"] == ORGANIZATION
    assert {"name", "__v", "createdAt", "updatedAt"} <= organization.keys()


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": f"Bearer {SANDBOX_API_KEY}"}, {"Authorization": "x" * 50}],
    ids=["missing", "bearer", "wrong"],
)
async def test_a_missing_or_wrong_key_is_401(client: Client, headers: dict[str, str]) -> None:
    for path in ("/v2/auth/test", "/v2/events", "/v2/hooks"):
        response = await client.get(path, headers=headers)
        assert response.status == 401


async def test_configured_keys_replace_the_default(aiohttp_client: AiohttpClient) -> None:
    key = "k" * 50
    client = await aiohttp_client(create_sandbox_app(SandboxConfig(api_keys=frozenset({key}))))
    assert (await client.get("/v2/auth/test", headers={"Authorization": key})).status == 200
    assert (await client.get("/v2/auth/test", headers=AUTH)).status == 401


async def test_sandbox_key_looks_like_a_vyte_key() -> None:
    assert len(SANDBOX_API_KEY) == 50
    assert SANDBOX_API_KEY.isalnum() and SANDBOX_API_KEY.islower()


# Slots


async def test_slots_follow_the_guide_example(client: Client) -> None:
    thursday = next_weekday(THURSDAY)
    friday = thursday + timedelta(days=1)
    body = await slots(
        client, duration="60", users=JOHN, **{"from": str(thursday), "to": str(friday)}
    )
    assert (body["timezone"], body["from"], body["to"]) == (
        "Europe/Paris",
        str(thursday),
        str(friday),
    )
    assert body["slots"][:2] == [
        {
            "start": {"dateTime": iso(thursday, "00:00", PARIS)},
            "end": {"dateTime": iso(thursday, "01:00", PARIS)},
        },
        {
            "start": {"dateTime": iso(thursday, "01:00", PARIS)},
            "end": {"dateTime": iso(thursday, "02:00", PARIS)},
        },
    ]
    assert "nextAvailability" not in body
    # Lunch on Thursday, 09:30-10:30 on Friday.
    assert iso(thursday, "12:00", PARIS) not in starts(body)
    assert iso(friday, "10:30", PARIS) in starts(body)


async def test_fall_back_day_in_paris(client: Client) -> None:
    back = str(next_transition(PARIS, forward=False))
    body = await slots(
        client,
        duration="60",
        emails="john.doe@example.com",
        **{"from": back, "to": back},
    )
    assert len(body["slots"]) == 25
    assert starts(body)[2:4] == [f"{back}T02:00:00+02:00", f"{back}T02:00:00+01:00"]


async def test_spring_forward_day_in_paris(client: Client) -> None:
    forward = str(next_transition(PARIS, forward=True))
    body = await slots(client, duration="60", users=JOHN, **{"from": forward, "to": forward})
    assert len(body["slots"]) == 23
    assert starts(body)[1:3] == [f"{forward}T01:00:00+01:00", f"{forward}T03:00:00+02:00"]


async def test_new_york_dst_days(client: Client) -> None:
    common = {"duration": "60", "users": JOHN, "timezone": "America/New_York"}
    back = str(next_transition(NEW_YORK, forward=False))
    fall = await slots(client, **common, **{"from": back, "to": back})
    assert fall["timezone"] == "America/New_York"
    assert len(fall["slots"]) == 25
    assert {f"{back}T01:00:00-04:00", f"{back}T01:00:00-05:00"} <= set(starts(fall))
    forward = str(next_transition(NEW_YORK, forward=True))
    spring = await slots(client, **common, **{"from": forward, "to": forward})
    assert len(spring["slots"]) == 23


async def test_odd_offsets_rendered_in_another_zone(client: Client) -> None:
    friday = next_weekday(FRIDAY)
    priya = await slots(
        client,
        duration="60",
        emails="priya@example.com",
        timezone="Europe/Paris",
        **{"from": str(friday), "to": str(friday)},
    )
    # 10:00-18:00 in Kolkata (+05:30) is 06:30-14:30 in Paris in summer, 05:30-13:30 in winter.
    kolkata = "Asia/Kolkata"
    assert starts(priya)[0] == at(friday, "10:00", kolkata).astimezone(ZoneInfo(PARIS)).isoformat()
    assert (
        priya["slots"][-1]["end"]["dateTime"]
        == at(friday, "18:00", kolkata).astimezone(ZoneInfo(PARIS)).isoformat()
    )
    sunday = next_weekday(SUNDAY)
    anish = await slots(
        client,
        duration="30",
        emails="anish@example.com",
        timezone="UTC",
        **{"from": str(sunday), "to": str(sunday)},
    )
    assert starts(anish)[0] == f"{sunday}T04:15:00+00:00"
    assert len(anish["slots"]) == 14


async def test_timezone_defaults_to_the_first_user(client: Client) -> None:
    thursday = str(next_weekday(THURSDAY))
    body = await slots(
        client, duration="60", users=f"{JANE},{JOHN}", **{"from": thursday, "to": thursday}
    )
    assert body["timezone"] == "America/New_York"
    # Jane 09:00-17:00 minus her 13:00 meeting; John's lunch is before 09:00 in New York.
    assert starts(body) == [
        iso(date.fromisoformat(thursday), f"{h:02d}:00", NEW_YORK)
        for h in (9, 10, 11, 12, 14, 15, 16)
    ]


async def test_several_users_are_intersected(client: Client) -> None:
    thursday = next_weekday(THURSDAY)
    body = await slots(
        client,
        duration="60",
        users=JOHN,
        emails="priya@example.com",
        timezone="UTC",
        **{"from": str(thursday), "to": str(thursday)},
    )
    # Priya works 04:30-12:30 UTC with a meeting at 07:30; John's lunch starts at 12:00 Paris:
    # 10:00 UTC in summer time (one slot fits after her meeting), 11:00 in winter time (two).
    lunch = at(thursday, "12:00", PARIS).astimezone(UTC).hour
    assert starts(body) == [
        f"{thursday}T{h:02d}:30:00+00:00" for h in (4, 5, 6, *range(8, lunch - 1))
    ]


async def test_days_leaves_out_days_without_slots(client: Client) -> None:
    friday = next_weekday(FRIDAY)
    monday = friday + timedelta(days=3)
    body = await slots(
        client,
        "/v2/slots/days",
        duration="60",
        emails="jane@example.com",
        **{"from": str(friday), "to": str(monday)},
    )
    assert list(body["days"]) == [str(friday), str(monday)]
    assert body["days"][str(monday)]["slots"][0]["start"] == {
        "dateTime": iso(monday, "09:00", NEW_YORK)
    }
    assert "slots" not in body and "nextAvailability" not in body


async def test_next_availability_when_the_range_is_empty(client: Client) -> None:
    saturday = next_weekday(SATURDAY)
    monday = saturday + timedelta(days=2)
    params = {
        "duration": "60",
        "emails": "jane@example.com",
        "from": str(saturday),
        "to": str(saturday + timedelta(days=1)),
    }
    flat = await slots(client, **params)
    assert flat["slots"] == []
    assert flat["nextAvailability"] == {
        "availableDate": str(monday),
        "availableSlot": {
            "start": {"dateTime": iso(monday, "09:00", NEW_YORK)},
            "end": {"dateTime": iso(monday, "10:00", NEW_YORK)},
        },
    }
    by_day = await slots(client, "/v2/slots/days", **params)
    assert by_day["days"] == {}
    assert by_day["nextAvailability"] == flat["nextAvailability"]


async def test_no_next_availability_for_someone_never_free(client: Client) -> None:
    body = await slots(client, duration="30", emails="oscar@example.com", **ONE_DAY)
    assert body == {"timezone": "Europe/London", **ONE_DAY, "slots": []}


DAY, NEXT_DAY = str(in_days(3)), str(in_days(4))


@pytest.mark.parametrize(
    "params",
    [
        {"users": JOHN, "from": DAY, "to": DAY},
        {"duration": "sixty", "users": JOHN, "from": DAY, "to": DAY},
        {"duration": "0", "users": JOHN, "from": DAY, "to": DAY},
        {"duration": "60", "from": DAY, "to": DAY},
        {"duration": "60", "users": JOHN, "to": DAY},
        {"duration": "60", "users": JOHN, "from": DAY},
        {"duration": "60", "users": JOHN, "from": NEXT_DAY, "to": DAY},
        {"duration": "60", "users": JOHN, "from": DAY.replace("-", ""), "to": DAY},
        {"duration": "60", "users": JOHN, "from": f"{DAY[:4]}-02-30", "to": DAY},
        {
            "duration": "60",
            "users": JOHN,
            "from": DAY,
            "to": DAY,
            "timezone": "Mars/Olympus",
        },
        {"duration": "60", "users": "john", "from": DAY, "to": DAY},
    ],
)
async def test_bad_slot_queries_are_400(client: Client, params: dict[str, str]) -> None:
    for path in ("/v2/slots", "/v2/slots/days"):
        await slots(client, path, status=400, **params)


async def test_unknown_people_are_404(client: Client) -> None:
    dates = ONE_DAY
    await slots(client, status=404, duration="60", users="0123456789abcdef01234567", **dates)
    await slots(client, status=404, duration="60", emails="nobody@example.com", **dates)
    await slots(client, status=404, duration="60", users=JOHN, emails="nobody@example.com", **dates)


# Events


async def test_create_event_like_the_guide(client: Client) -> None:
    event = await post_json(client, "/v2/events", booking(), status=201)
    assert len(event["_id"]) == 24 and int(event["_id"], 16) >= 0
    assert event["__v"] == 0 and event["vyteme"] is True and event["timezone"] == "Europe/Paris"
    assert event["created_by"] == {
        "user": JOHN,
        "email": "john.doe@example.com",
        "full_name": "John Doe",
    }
    assert event["confirmed"]["flag"] is False
    assert "cancelled" not in event
    (date,) = event["dates"]
    # Naive times are Paris wall-clock time.
    assert (date["date"], date["end_date"], date["all_day"]) == (
        zulu(at(MEETING_DAY, "10:00", PARIS)),
        zulu(at(MEETING_DAY, "11:00", PARIS)),
        False,
    )
    creator, quentin = event["invitees"]
    assert creator["su"] is True and creator["user"] == JOHN
    assert quentin == {
        "_id": quentin["_id"],
        "email": "quentin.tarantino@hollywood.com",
        "full_name": "Quentin Tarantino",
        "su": False,
    }
    assert (
        event["places"][0]["name"] == "Place for the meeting."
        and len(event["places"][0]["_id"]) == 24
    )
    assert event["createdAt"].endswith("Z") and event["updatedAt"] == event["createdAt"]
    assert await get_json(client, f"/v2/events/{event['_id']}") == event


START = datetime.combine(MEETING_DAY, clock(9), UTC)
END = START + timedelta(hours=1)


@pytest.mark.parametrize(
    ("extra", "start", "end"),
    [
        ({}, naive(START, PARIS), naive(END, PARIS)),
        (
            {},
            START.astimezone(timezone(timedelta(hours=-5))).isoformat(),
            END.astimezone(timezone(timedelta(hours=-5))).isoformat(),
        ),
        ({}, START.strftime("%Y-%m-%dT%H:%M:%SZ"), zulu(END)),
        ({"timezone": NEW_YORK}, naive(START, NEW_YORK), naive(END, NEW_YORK)),
        (
            {"timezone": "Asia/Kathmandu"},
            naive(START, "Asia/Kathmandu"),
            naive(END, "Asia/Kathmandu"),
        ),
    ],
)
async def test_event_dates_are_stored_in_utc(
    client: Client, extra: dict[str, str], start: str, end: str
) -> None:
    dates = [{"all_day": False, "date": start, "end_date": end}]
    event = await post_json(client, "/v2/events", booking(dates=dates, **extra), status=201)
    assert event["dates"][0]["date"] == zulu(START)
    assert event["dates"][0]["end_date"] == zulu(END)


async def test_invitees_as_a_list_and_creator_by_email(client: Client) -> None:
    invitees = [{"email": "a@example.org"}, {"email": "Jane@Example.com", "phone": "0601020304"}]
    event = await post_json(
        client,
        "/v2/events",
        booking(
            created_by={"email": "JOHN.DOE@example.com"}, invitees=invitees, messages={"body": "Hi"}
        ),
        status=201,
    )
    assert [i["email"] for i in event["invitees"]] == [
        "john.doe@example.com",
        "a@example.org",
        "jane@example.com",
    ]
    assert event["invitees"][2]["user"] == JANE and event["invitees"][2]["phone"] == "0601020304"
    assert event["messages"][0]["body"] == "Hi"


async def test_all_day_event(client: Client) -> None:
    first, second = MEETING_DAY, MEETING_DAY + timedelta(days=1)
    dates = [{"all_day": True, "date": str(first), "end_date": str(second)}]
    event = await post_json(client, "/v2/events", booking(dates=dates), status=201)
    # All day is Paris midnight to midnight.
    assert event["dates"][0]["date"] == zulu(at(first, "00:00", PARIS))
    assert event["dates"][0]["end_date"] == zulu(at(second, "00:00", PARIS))
    body = await slots(client, duration="60", users=JOHN, **{"from": str(first), "to": str(second)})
    assert starts(body)[0] == iso(second, "00:00", PARIS)


@pytest.mark.parametrize(
    "body",
    [
        [],
        booking(title=""),
        booking(title=None),
        booking(created_by=None),
        booking(created_by={"user": "0123456789abcdef01234567"}),
        booking(created_by={"user": "john"}),
        booking(created_by={"email": "nobody@example.com"}),
        booking(dates=[{"date": f"{MEETING_DAY}T10:00:00"}]),
        booking(dates=[{"date": "tomorrow", "end_date": f"{MEETING_DAY}T11:00:00"}]),
        booking(dates=[{"date": f"{MEETING_DAY}T11:00:00", "end_date": f"{MEETING_DAY}T10:00:00"}]),
        booking(dates={"date": f"{MEETING_DAY}T10:00:00", "end_date": f"{MEETING_DAY}T11:00:00"}),
        booking(invitees=[{"full_name": "No Email"}]),
        booking(invitees="quentin@hollywood.com"),
        booking(places=[{"address": "no name"}]),
        booking(timezone="Nowhere/Land"),
        booking(vyteme="yes"),
    ],
)
async def test_bad_event_bodies_are_400(client: Client, body: object) -> None:
    await post_json(client, "/v2/events", body, status=400)
    assert await (await client.get("/_sandbox/events")).json() == []


async def test_a_body_that_is_not_json_is_400(client: Client) -> None:
    response = await client.post("/v2/events", data=b"title=x", headers=AUTH)
    assert response.status == 400


async def test_unknown_events_are_404(client: Client) -> None:
    missing = "0123456789abcdef01234567"
    assert (await client.get(f"/v2/events/{missing}", headers=AUTH)).status == 404
    assert (
        await client.put(f"/v2/events/{missing}", json={"title": "x"}, headers=AUTH)
    ).status == 404
    for action in ("confirm", "cancel"):
        assert (await client.post(f"/v2/events/{missing}/{action}", headers=AUTH)).status == 404
        assert (await client.post(f"/_sandbox/events/{missing}/{action}")).status == 404


async def test_event_list_filters(client: Client) -> None:
    first = await post_json(client, "/v2/events", booking(title="Alpha review"), status=201)
    second = await post_json(
        client,
        "/v2/events",
        booking(
            title="Beta sync", created_by={"user": JANE}, invitees=[{"email": "x@example.org"}]
        ),
        status=201,
    )
    await post_json(client, f"/v2/events/{second['_id']}/confirm", None)

    async def ids(**params: str) -> list[str]:
        return [e["_id"] for e in await get_json(client, "/v2/events", **params)]

    assert await ids() == [second["_id"], first["_id"]]
    assert await ids(limit="1") == [second["_id"]]
    assert await ids(q="alpha") == [first["_id"]]
    assert await ids(filter="confirmed") == [second["_id"]]
    assert await ids(creator_users=JOHN) == [first["_id"]]
    assert await ids(invitee_emails="X@example.org,nobody@example.com") == [second["_id"]]
    assert await ids(filter="upcoming") == [second["_id"], first["_id"]]
    yesterday = in_days(-1)
    past = [{"date": f"{yesterday}T10:00:00", "end_date": f"{yesterday}T11:00:00"}]
    await post_json(client, "/v2/events", booking(title="Gamma", dates=past), status=201)
    assert await ids(filter="upcoming") == [second["_id"], first["_id"]]
    await get_json(client, "/v2/events", status=400, limit="0")
    await get_json(client, "/v2/events", status=400, filter="past")


async def test_events_take_up_their_people_until_cancelled(client: Client) -> None:
    saturday = next_weekday(SATURDAY)
    params = {"duration": "60", "users": JOHN, "from": str(saturday), "to": str(saturday)}
    assert iso(saturday, "10:00", PARIS) in starts(await slots(client, **params))
    dates = [{"all_day": False, "date": f"{saturday}T10:00:00", "end_date": f"{saturday}T11:30:00"}]
    event = await post_json(client, "/v2/events", booking(dates=dates), status=201)
    taken = starts(await slots(client, **params))
    assert iso(saturday, "10:00", PARIS) not in taken and iso(saturday, "11:30", PARIS) in taken
    # An invitee who is a Vyte user is taken up too.
    monday = saturday + timedelta(days=2)
    jane = {"duration": "60", "emails": "jane@example.com", "from": str(monday), "to": str(monday)}
    dates = [
        {
            "all_day": False,
            "date": iso(monday, "10:00", NEW_YORK),
            "end_date": iso(monday, "11:00", NEW_YORK),
        }
    ]
    await post_json(
        client,
        "/v2/events",
        booking(dates=dates, invitees={"email": "jane@example.com"}),
        status=201,
    )
    assert iso(monday, "10:00", NEW_YORK) not in starts(await slots(client, **jane))
    response = await client.post(f"/v2/events/{event['_id']}/cancel", headers=AUTH)
    assert iso(saturday, "10:00", PARIS) in starts(await slots(client, **params))
    assert response.status == 200


# Status changes and hooks


async def register_hooks(client: Client, url: str, *actions: str) -> list[dict[str, Any]]:
    return [
        await post_json(client, "/v2/hooks", {"action": a, "target_url": url}, status=201)
        for a in actions
    ]


ALL_ACTIONS = ("event.created", "event.confirmed", "event.updated", "event.cancelled")


async def test_event_lifecycle_fires_hooks(client: Client, receiver: Receiver) -> None:
    await register_hooks(client, receiver.url, *ALL_ACTIONS)
    event = await post_json(client, "/v2/events", booking(), status=201)
    created = await receiver.next()
    assert created == {"action": "event.created", "organization": ORGANIZATION, "resource": event}

    confirmed = await post_json(client, f"/v2/events/{event['_id']}/confirm", None)
    assert confirmed["confirmed"]["flag"] is True and confirmed["__v"] == 1
    assert confirmed["confirmed"]["date_id"] == event["dates"][0]["_id"]
    # Vyte's samples leave `dates[].confirmed` false: `confirmed.date_id` names the date.
    assert confirmed["dates"][0]["confirmed"] is False
    hook = await receiver.next()
    assert hook["action"] == "event.confirmed" and hook["resource"] == confirmed

    # Confirming again changes nothing and fires nothing.
    again = await post_json(client, f"/v2/events/{event['_id']}/confirm", None)
    assert again == confirmed

    moved = at(MEETING_DAY + timedelta(days=1), "15:00", PARIS)
    dates = [{"date": moved.isoformat(), "end_date": (moved + timedelta(hours=1)).isoformat()}]
    response = await client.put(
        f"/v2/events/{event['_id']}", json={"dates": dates, "title": "Moved"}, headers=AUTH
    )
    updated = await response.json()
    assert response.status == 200 and updated["title"] == "Moved" and updated["__v"] == 2
    assert updated["dates"][0]["date"] == zulu(moved)
    assert updated["confirmed"]["date_id"] == updated["dates"][0]["_id"]
    hook = await receiver.next()
    assert hook["action"] == "event.updated" and hook["resource"] == updated

    response = await client.post(f"/v2/events/{event['_id']}/cancel", headers=AUTH)
    assert response.status == 200 and await response.text() == "OK"
    hook = await receiver.next()
    assert hook["action"] == "event.cancelled"
    assert hook["resource"]["cancelled"].endswith("Z") and hook["resource"]["__v"] == 3

    # Cancelling twice is fine and silent; a cancelled event cannot be confirmed or moved.
    response = await client.post(f"/v2/events/{event['_id']}/cancel", headers=AUTH)
    assert response.status == 200 and await response.text() == "OK"
    assert (await client.post(f"/v2/events/{event['_id']}/confirm", headers=AUTH)).status == 400
    assert (
        await client.put(f"/v2/events/{event['_id']}", json={"title": "x"}, headers=AUTH)
    ).status == 400
    deliveries = await (await client.post("/_sandbox/deliveries/drain")).json()
    # Each delivery is recorded when its receiver has answered, in whatever order that is.
    assert sorted(d["action"] for d in deliveries["deliveries"]) == sorted(ALL_ACTIONS)
    assert receiver.bodies.empty()


async def test_confirm_a_chosen_date_and_place(client: Client) -> None:
    other_day = MEETING_DAY + timedelta(days=1)
    dates = [
        {"date": f"{MEETING_DAY}T10:00:00", "end_date": f"{MEETING_DAY}T11:00:00"},
        {"date": f"{other_day}T10:00:00", "end_date": f"{other_day}T11:00:00"},
    ]
    places = [{"name": "Office"}, {"name": "Video", "address": "https://meet.example.com/x"}]
    event = await post_json(client, "/v2/events", booking(dates=dates, places=places), status=201)
    second_date, second_place = event["dates"][1]["_id"], event["places"][1]["_id"]
    confirmed = await post_json(
        client, f"/v2/events/{event['_id']}/confirm?d={second_date}&p={second_place}", None
    )
    assert confirmed["confirmed"]["date_id"] == second_date
    assert confirmed["confirmed"]["place_id"] == second_place
    assert [d["confirmed"] for d in confirmed["dates"]] == [False, False]
    response = await client.post(
        f"/v2/events/{event['_id']}/confirm", data={"d": "0" * 24}, headers=AUTH
    )
    assert response.status == 400


async def test_an_event_created_confirmed_fires_both_hooks(
    client: Client, receiver: Receiver
) -> None:
    await register_hooks(client, receiver.url, *ALL_ACTIONS)
    event = await post_json(client, "/v2/events", booking(confirmed={"flag": True}), status=201)
    assert event["confirmed"]["flag"] is True and event["__v"] == 0
    hooks = await receiver.by_action(2)
    assert set(hooks) == {"event.created", "event.confirmed"}


async def test_the_invitee_acts_inside_vyte(client: Client, receiver: Receiver) -> None:
    await register_hooks(client, receiver.url, "event.confirmed", "event.cancelled")
    event = await post_json(client, "/v2/events", booking(), status=201)
    response = await client.post(f"/_sandbox/events/{event['_id']}/confirm")
    assert response.status == 200 and (await response.json())["confirmed"]["flag"] is True
    assert (await receiver.next())["action"] == "event.confirmed"
    response = await client.post(f"/_sandbox/events/{event['_id']}/cancel")
    assert response.status == 200 and "cancelled" in await response.json()
    assert (await receiver.next())["action"] == "event.cancelled"
    assert (await get_json(client, f"/v2/events/{event['_id']}"))["cancelled"]
    listed = await (await client.get("/_sandbox/events")).json()
    assert [e["_id"] for e in listed] == [event["_id"]]


async def test_hooks_only_go_to_their_action(client: Client, receiver: Receiver) -> None:
    await register_hooks(client, receiver.url, "event.cancelled")
    event = await post_json(client, "/v2/events", booking(), status=201)
    await client.post(f"/v2/events/{event['_id']}/confirm", headers=AUTH)
    await client.post(f"/v2/events/{event['_id']}/cancel", headers=AUTH)
    assert (await receiver.next())["action"] == "event.cancelled"
    await client.post("/_sandbox/deliveries/drain")
    assert receiver.bodies.empty()


async def test_hook_crud(client: Client) -> None:
    (hook,) = await register_hooks(client, "https://crm.example.com/vyte", "event.confirmed")
    assert hook["organization"] == ORGANIZATION and hook["scope"] == "organization"
    assert {"_id", "__v", "createdAt", "updatedAt", "action", "target_url"} <= hook.keys()
    assert await get_json(client, "/v2/hooks") == [hook]
    assert await get_json(client, f"/v2/hooks/{hook['_id']}") == hook
    response = await client.put(
        f"/v2/hooks/{hook['_id']}",
        json={"action": "event.cancelled", "target_url": "https://crm.example.com/v2"},
        headers=AUTH,
    )
    assert response.status == 200 and (await response.json())["action"] == "event.cancelled"
    assert (await client.delete(f"/v2/hooks/{hook['_id']}", headers=AUTH)).status == 204
    assert await get_json(client, "/v2/hooks") == []
    assert (await client.delete(f"/v2/hooks/{hook['_id']}", headers=AUTH)).status == 404
    assert (await client.get(f"/v2/hooks/{hook['_id']}", headers=AUTH)).status == 404


@pytest.mark.parametrize(
    "body",
    [
        {"action": "event.exploded", "target_url": "https://x.example.com"},
        {"action": "event.created"},
        {"action": "event.created", "target_url": "ftp://x.example.com"},
        {"action": "event.created", "target_url": "not a url"},
        ["event.created"],
    ],
)
async def test_bad_hooks_are_400(client: Client, body: object) -> None:
    await post_json(client, "/v2/hooks", body, status=400)


async def test_failed_deliveries_are_recorded_and_ignored(
    client: Client, receiver: Receiver, unused_tcp_port: int
) -> None:
    receiver.status[0] = 500
    await register_hooks(client, receiver.url, "event.created")
    await register_hooks(client, f"http://127.0.0.1:{unused_tcp_port}/gone", "event.created")
    event = await post_json(client, "/v2/events", booking(), status=201)
    await receiver.next()
    drained = await (await client.post("/_sandbox/deliveries/drain")).json()
    assert drained["pending"] == 0
    outcomes = sorted((d["status"] is None, d["error"] is not None) for d in drained["deliveries"])
    assert outcomes == [(False, True), (True, True)]
    assert {d["resource_id"] for d in drained["deliveries"]} == {event["_id"]}


async def test_hook_bodies_as_a_list(aiohttp_client: AiohttpClient, receiver: Receiver) -> None:
    client = await aiohttp_client(
        create_sandbox_app(SandboxConfig(hook_batch=True, allow_http_hooks=True))
    )
    await register_hooks(client, receiver.url, "event.created")
    event = await post_json(client, "/v2/events", booking(), status=201)
    assert await receiver.next() == [
        {"action": "event.created", "organization": ORGANIZATION, "resource": event}
    ]


# Faults and stats


async def set_fault(client: Client, **fault: Any) -> dict[str, Any]:
    response = await client.post("/_sandbox/faults", json=fault)
    assert response.status == 200, await response.text()
    return dict(await response.json())


async def test_forced_status_with_retry_after_for_a_count(client: Client) -> None:
    await set_fault(client, status=503, retry_after=2, count=2)
    for _ in range(2):
        response = await client.get("/v2/auth/test", headers=AUTH)
        assert response.status == 503 and response.headers["Retry-After"] == "2"
    assert (await client.get("/v2/auth/test", headers=AUTH)).status == 200
    assert await (await client.get("/_sandbox/faults")).json() == {"fault": None}


async def test_rate_limit_fault_until_cleared_and_only_on_its_path(client: Client) -> None:
    fault = await set_fault(client, status=429, retry_after=0.5, path="/v2/slots")
    assert fault["remaining"] is None and fault["fault"]["retry_after"] == "0.5"
    params = {"duration": "60", "users": JOHN, **ONE_DAY}
    for path in ("/v2/slots", "/v2/slots/days", "/v2/slots"):
        response = await client.get(path, params=params, headers=AUTH)
        assert response.status == 429 and response.headers["Retry-After"] == "0.5"
    assert (await client.get("/v2/auth/test", headers=AUTH)).status == 200
    assert (await client.delete("/_sandbox/faults")).status == 204
    assert (await client.get("/v2/slots", params=params, headers=AUTH)).status == 200


async def test_a_hang_lasts_until_the_client_gives_up(client: Client) -> None:
    await set_fault(client, hang=True, count=1)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await client.get("/v2/auth/test", headers=AUTH, timeout=aiohttp.ClientTimeout(total=0.3))
    assert time.monotonic() - started >= 0.3
    assert (await client.get("/v2/auth/test", headers=AUTH)).status == 200


async def test_a_malformed_answer_is_not_json(client: Client) -> None:
    await set_fault(client, malformed=True, count=1)
    response = await client.get("/v2/events", headers=AUTH)
    assert response.status == 200 and response.content_type == "application/json"
    with pytest.raises(json.JSONDecodeError):
        await response.json()


async def test_latency_delays_each_request(client: Client) -> None:
    await set_fault(client, latency=0.2, count=1)
    started = time.monotonic()
    assert (await client.get("/v2/auth/test", headers=AUTH)).status == 200
    assert time.monotonic() - started >= 0.2


async def test_error_rate_fault(client: Client) -> None:
    await set_fault(client, error_rate=1.0, count=3)
    statuses = [(await client.get("/v2/auth/test", headers=AUTH)).status for _ in range(4)]
    assert statuses == [500, 500, 500, 200]


async def test_configured_latency_and_error_rate(aiohttp_client: AiohttpClient) -> None:
    slow = await aiohttp_client(create_sandbox_app(SandboxConfig(latency=0.15)))
    started = time.monotonic()
    assert (await slow.get("/v2/auth/test", headers=AUTH)).status == 200
    assert time.monotonic() - started >= 0.15
    # Admin endpoints are never slowed or failed.
    broken = await aiohttp_client(create_sandbox_app(SandboxConfig(error_rate=1.0)))
    assert (await broken.get("/v2/auth/test", headers=AUTH)).status == 500
    assert (await broken.get("/_sandbox/stats")).status == 200


async def test_an_applied_fault_loses_the_answer_but_keeps_the_effect(client: Client) -> None:
    await set_fault(client, status=502, apply=True, count=1, path="/v2/events")
    response = await client.post("/v2/events", json=booking(), headers=AUTH)
    assert response.status == 502
    (event,) = await (await client.get("/_sandbox/events")).json()
    assert event["title"] == "Meeting with Quentin Tarantino"


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 200},
        {"status": "503"},
        {"count": 0},
        {"latency": -1},
        {"error_rate": 2},
        {"hang": "yes"},
        {"path": "v2"},
        {"retry_after": -5},
        {"statsu": 503},
    ],
)
async def test_bad_faults_are_400(client: Client, fault: dict[str, Any]) -> None:
    response = await client.post("/_sandbox/faults", json=fault)
    assert response.status == 400


async def test_stats_count_upstream_calls_by_route(client: Client) -> None:
    params = {"duration": "60", "users": JOHN, **ONE_DAY}
    await client.get("/v2/slots", params=params, headers=AUTH)
    await client.get("/v2/slots", params=params, headers={})
    event = await post_json(client, "/v2/events", booking(), status=201)
    await client.get(f"/v2/events/{event['_id']}", headers=AUTH)
    await client.post(f"/v2/events/{event['_id']}/confirm", headers=AUTH)
    await set_fault(client, status=503, count=1)
    await client.get("/v2/slots/days", params=params, headers=AUTH)
    await client.get("/_sandbox/events")
    stats = await (await client.get("/_sandbox/stats")).json()
    assert stats == {
        "requests": {
            "GET /v2/events/{id}": 1,
            "GET /v2/slots": 2,
            "GET /v2/slots/days": 1,
            "POST /v2/events": 1,
            "POST /v2/events/{id}/confirm": 1,
        }
    }
    assert (await client.delete("/_sandbox/stats")).status == 204
    assert await (await client.get("/_sandbox/stats")).json() == {"requests": {}}


async def test_reset_returns_to_the_seed(client: Client) -> None:
    await register_hooks(client, "https://crm.example.com/vyte", "event.created")
    await post_json(client, "/v2/events", booking(), status=201)
    await set_fault(client, status=500)
    assert (await client.post("/_sandbox/reset")).status == 204
    assert await get_json(client, "/v2/hooks") == []
    assert await get_json(client, "/v2/events") == []
    assert await (await client.get("/_sandbox/stats")).json() == {
        "requests": {"GET /v2/events": 1, "GET /v2/hooks": 1}
    }
    users = await (await client.get("/_sandbox/users")).json()
    assert users[0]["_id"] == JOHN and users[0]["working_hours"]["sun"] == [["00:00", "24:00"]]


async def test_concurrent_bookings_are_all_kept(client: Client) -> None:
    created = await asyncio.gather(
        *(
            post_json(client, "/v2/events", booking(title=f"Meeting {n}"), status=201)
            for n in range(20)
        )
    )
    assert len({event["_id"] for event in created}) == 20
    assert len(await get_json(client, "/v2/events")) == 20
    stats = await (await client.get("/_sandbox/stats")).json()
    assert stats["requests"]["POST /v2/events"] == 20


# Serving


async def test_start_sandbox_serves_on_a_loopback_port() -> None:
    runner, url = await start_sandbox(SandboxConfig())
    try:
        assert url.startswith("http://127.0.0.1:")
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{url}/v2/auth/test", headers=AUTH) as response,
        ):
            assert response.status == 200
    finally:
        await runner.cleanup()


async def test_shutdown_does_not_wait_for_a_hanging_request() -> None:
    runner, url = await start_sandbox(SandboxConfig())
    async with aiohttp.ClientSession() as session:
        await session.post(f"{url}/_sandbox/faults", json={"hang": True})
        pending = asyncio.create_task(session.get(f"{url}/v2/auth/test", headers=AUTH))
        await asyncio.sleep(0.1)
        started = time.monotonic()
        await runner.cleanup()
        assert time.monotonic() - started < 2
        with pytest.raises(aiohttp.ClientError):
            response = await pending
            response.raise_for_status()


async def test_run_sandbox_until_cancelled(unused_tcp_port: int) -> None:
    task = asyncio.create_task(run_sandbox("127.0.0.1", unused_tcp_port, SandboxConfig()))
    url = f"http://127.0.0.1:{unused_tcp_port}/v2/auth/test"
    async with aiohttp.ClientSession() as session:
        for _ in range(50):
            try:
                async with session.get(url, headers=AUTH) as response:
                    assert response.status == 200
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.02)
        else:
            pytest.fail("the sandbox never answered")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

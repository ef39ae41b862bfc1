"""The sandbox follows Vyte's documented quirks (vyte-api.md, "Details that matter for fidelity").

Each test pins one documented behaviour that a gateway built from the docs must cope with, so
the gateway's own tests against the sandbox meet Vyte as it is described, not a friendlier one.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient
from pytest_aiohttp import AiohttpClient, AiohttpServer

from service.sandbox import SANDBOX_API_KEY, SandboxConfig, create_sandbox_app, start_sandbox
from tests.conftest import AUTH

JOHN = "5f3feb7821046c3bb9327e6a"
JANE = "5f3feb7821046c3bb9327e6b"
VYTE = {"Authorization": SANDBOX_API_KEY}

Client = TestClient[web.Request, web.Application]

TRICKY_TITLES = [
    "Call (sales) [Q3] + review?",
    "a(b",
    r"50% off *today* | $5 ^_^ \o/ {2,}",
]


@pytest.fixture
async def client(aiohttp_client: AiohttpClient) -> Client:
    return await aiohttp_client(create_sandbox_app())


def day(offset: int) -> date:
    return datetime.now(UTC).date() + timedelta(days=offset)


def slot(offset: int, hour: int, minutes: int = 60) -> dict[str, Any]:
    start = datetime.combine(day(offset), datetime.min.time(), UTC) + timedelta(hours=hour)
    return {
        "all_day": False,
        "date": start.isoformat(),
        "end_date": (start + timedelta(minutes=minutes)).isoformat(),
    }


def event_body(title: str = "Quirk check", **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": title,
        "created_by": {"user": JOHN},
        "dates": [slot(10, 9)],
        "invitees": [{"email": "guest@example.com"}],
        "places": [{"name": "Office"}],
        "vyteme": True,
    }
    body.update(overrides)
    return body


async def create(client: Client, title: str = "Quirk check", **overrides: Any) -> dict[str, Any]:
    response = await client.post("/v2/events", json=event_body(title, **overrides), headers=VYTE)
    assert response.status == 201, await response.text()
    created: dict[str, Any] = await response.json()
    return created


async def search(client: Client, **params: str) -> list[str]:
    response = await client.get("/v2/events", params=params, headers=VYTE)
    assert response.status == 200, await response.text()
    return [e["_id"] for e in await response.json()]


# 1. `q` is a regular expression on the title; people narrow the search.


@pytest.mark.parametrize("title", TRICKY_TITLES)
async def test_q_is_a_regex_so_only_an_escaped_title_finds_itself(
    client: Client, title: str
) -> None:
    event = await create(client, title)
    await create(client, "Something else entirely")
    assert await search(client, q=re.escape(title)) == [event["_id"]]
    # Sent raw, the title is a pattern that does not match itself (or is no pattern at all).
    raw = await client.get("/v2/events", params={"q": title}, headers=VYTE)
    assert raw.status == 400 or event["_id"] not in [e["_id"] for e in await raw.json()]


async def test_q_searches_anywhere_in_the_title_with_regex_syntax(client: Client) -> None:
    weekly = await create(client, "Alpha weekly review")
    beta = await create(client, "Beta alpha review")
    await create(client, "Gamma")
    assert await search(client, q="^alpha.*review$") == [weekly["_id"]]
    assert await search(client, q="review") == [beta["_id"], weekly["_id"]]
    assert await search(client, q="(weekly|beta) ") == [beta["_id"], weekly["_id"]]
    assert await search(client, q="^Beta alpha review$") == [beta["_id"]]


@pytest.mark.parametrize("pattern", ["a(b", "[Q3", "*", "x{2,1}", "(?P<"])
async def test_an_invalid_pattern_is_400(client: Client, pattern: str) -> None:
    await create(client, pattern)
    response = await client.get("/v2/events", params={"q": pattern}, headers=VYTE)
    assert response.status == 400
    assert "q" in (await response.json())["message"]


async def test_people_and_limit_narrow_the_search(client: Client) -> None:
    by_john = await create(client, "Same title", invitees=[{"email": "jane@example.com"}])
    by_jane = await create(
        client, "Same title", created_by={"user": JANE}, invitees=[{"email": "x@example.org"}]
    )
    newest = await create(client, "Same title")
    q = {"q": "^Same title$"}
    assert await search(client, **q) == [newest["_id"], by_jane["_id"], by_john["_id"]]
    assert await search(client, **q, limit="2") == [newest["_id"], by_jane["_id"]]
    assert await search(client, **q, creator_users=JANE) == [by_jane["_id"]]
    assert await search(client, **q, creator_emails="JANE@example.com") == [by_jane["_id"]]
    # Vyte ignores creator_emails when creator_users is given.
    assert await search(client, **q, creator_users=JOHN, creator_emails="jane@example.com") == [
        newest["_id"],
        by_john["_id"],
    ]
    assert await search(client, **q, invitee_emails="X@example.org") == [by_jane["_id"]]
    # A creator is an invitee of their own event (`su: true`), as Vyte lists them.
    assert await search(client, **q, invitee_users=JANE) == [by_jane["_id"], by_john["_id"]]
    assert await search(client, **q, invitee_emails="guest@example.com") == [newest["_id"]]
    both = {"invitee_users": JANE, "invitee_emails": "guest@example.com"}
    assert len(await search(client, **q, **both)) == 3
    assert await search(client, **q, creator_users=JOHN, invitee_emails="x@example.org") == []
    bad = await client.get("/v2/events", params={**q, "limit": "-1"}, headers=VYTE)
    assert bad.status == 400


async def stored_then_failed(admin: aiohttp.ClientSession) -> None:
    """The next event create is stored by Vyte, which then answers 503."""
    async with admin.post(
        "_sandbox/faults",
        json={"status": 503, "apply": True, "count": 1, "path": "/v2/events", "method": "POST"},
    ) as response:
        assert response.status == 200


@pytest.mark.parametrize("title", TRICKY_TITLES)
async def test_a_lost_create_with_a_tricky_title_is_found_by_a_keyed_retry(
    gateway: Any, sandbox_admin: aiohttp.ClientSession, title: str
) -> None:
    start = datetime.combine(day(12), datetime.min.time(), UTC) + timedelta(hours=8)
    # Made inside Vyte at the same time: a title that differs only in case.
    async with sandbox_admin.post(
        "v2/events", json=event_body(title.upper(), dates=[slot(12, 8)]), headers=VYTE
    ) as response:
        assert response.status == 201
    await stored_then_failed(sandbox_admin)
    body = {
        "organizer": JOHN,
        "title": title,
        "start": start.isoformat(),
        "duration": 60,
        "timezone": "Europe/Paris",
        "invitees": [{"email": "guest@example.com"}],
        "check_availability": False,
    }
    headers = {**AUTH, "Idempotency-Key": f"tricky-{title}"}
    first = await gateway.post("/v1/bookings", json=body, headers=headers)
    assert first.status in (502, 503)
    # The key stays in flight until the reconciler has found the event, then replays it.
    for _ in range(200):
        second = await gateway.post("/v1/bookings", json=body, headers=headers)
        if second.status != 409:
            break
        await asyncio.sleep(0.05)
    assert second.status == 201, await second.text()
    async with sandbox_admin.get("_sandbox/events") as response:
        titled = [e for e in await response.json() if e["title"] == title]
    assert [e["_id"] for e in titled] == [(await second.json())["id"]]


# 2. `GET /v2/hooks`: a bare array (guide) or `{"hooks": [...]}` (reference).


async def add_hook(client: Client, action: str, target_url: str, status: int = 201) -> Any:
    body = {"action": action, "target_url": target_url}
    response = await client.post("/v2/hooks", json=body, headers=VYTE)
    assert response.status == status, await response.text()
    return await response.json()


async def listed_hooks(client: Client) -> Any:
    response = await client.get("/v2/hooks", headers=VYTE)
    assert response.status == 200
    return await response.json()


async def settings(client: Client, status: int = 200, **changes: Any) -> Any:
    response = await client.patch("/_sandbox/settings", json=changes)
    assert response.status == status, await response.text()
    return await response.json()


async def test_the_hook_list_is_a_bare_array_by_default(client: Client) -> None:
    hook = await add_hook(client, "event.created", "https://crm.example.com/hooks")
    assert await listed_hooks(client) == [hook]
    current = await (await client.get("/_sandbox/settings")).json()
    assert current["hook_list_shape"] == "array"


async def test_the_hook_list_shape_is_switched_at_run_time_until_reset(client: Client) -> None:
    hook = await add_hook(client, "event.created", "https://crm.example.com/hooks")
    assert (await settings(client, hook_list_shape="object"))["hook_list_shape"] == "object"
    assert await listed_hooks(client) == {"hooks": [hook]}
    await settings(client, hook_list_shape="array")
    assert await listed_hooks(client) == [hook]
    await settings(client, hook_list_shape="object")
    assert (await client.post("/_sandbox/reset")).status == 204
    assert await listed_hooks(client) == []


async def test_the_hook_list_shape_from_the_config(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_sandbox_app(SandboxConfig(hook_list_shape="object")))
    assert await listed_hooks(client) == {"hooks": []}
    hook = await add_hook(client, "event.cancelled", "https://crm.example.com/hooks")
    assert await listed_hooks(client) == {"hooks": [hook]}
    await client.post("/_sandbox/reset")
    assert await listed_hooks(client) == {"hooks": []}


@pytest.mark.parametrize(
    "body",
    [
        {"hook_list_shape": "list"},
        {"hook_list_shape": None},
        {"colour": "red"},
        [],
        {"hook_batch": True, "hook_list_shape": "list"},
        {"hook_list_shape": "object", "hook_batch": 1},
    ],
)
async def test_bad_settings_are_400_and_change_nothing(client: Client, body: object) -> None:
    before = await (await client.get("/_sandbox/settings")).json()
    response = await client.patch("/_sandbox/settings", json=body)
    assert response.status == 400
    assert await (await client.get("/_sandbox/settings")).json() == before


def test_an_unknown_hook_list_shape_is_refused_in_the_config() -> None:
    with pytest.raises(ValueError, match="hook_list_shape"):
        SandboxConfig(hook_list_shape="list")


# 3. A hook's target_url "must be a https url" (unless the sandbox is told otherwise).


async def test_hook_targets_must_be_https(client: Client) -> None:
    for url in ("http://crm.example.com/hooks", "http://127.0.0.1:8080/v1/vyte/webhooks/t"):
        refused = await add_hook(client, "event.created", url, status=400)
        assert "target_url" in refused["message"] and "https" in refused["message"]
    hook = await add_hook(client, "event.created", "https://crm.example.com/hooks")
    moved = await client.put(
        f"/v2/hooks/{hook['_id']}",
        json={"action": "event.created", "target_url": "http://crm.example.com/hooks"},
        headers=VYTE,
    )
    assert moved.status == 400
    assert await listed_hooks(client) == [hook]


async def test_plain_http_targets_when_allowed(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_sandbox_app(SandboxConfig(allow_http_hooks=True)))
    hook = await add_hook(client, "event.created", "http://127.0.0.1:8080/hooks")
    assert hook["target_url"] == "http://127.0.0.1:8080/hooks"
    await add_hook(client, "event.created", "ftp://127.0.0.1/hooks", status=400)


# 4. event.updated only when a confirmed event is edited (and so reconfirmed).


async def hook_everything(client: Client, port: int) -> None:
    """Hooks on every event action to a closed loopback port: each delivery is recorded."""
    for action in ("event.created", "event.confirmed", "event.updated", "event.cancelled"):
        await add_hook(client, action, f"https://127.0.0.1:{port}/hooks")


async def fired(client: Client) -> list[str]:
    """The action of every hook delivery so far, sorted (deliveries run concurrently)."""
    drained = await (await client.post("/_sandbox/deliveries/drain")).json()
    return sorted(d["action"] for d in drained["deliveries"])


async def put(client: Client, event_id: str, body: object, status: int = 200) -> Any:
    response = await client.put(f"/v2/events/{event_id}", json=body, headers=VYTE)
    assert response.status == status, await response.text()
    return await response.json()


async def test_edits_to_a_requested_event_fire_no_hook(
    client: Client, unused_tcp_port: int
) -> None:
    await hook_everything(client, unused_tcp_port)
    event = await create(client)
    assert await fired(client) == ["event.created"]
    moved = await put(client, event["_id"], {"dates": [slot(11, 14)], "title": "Moved"})
    assert moved["title"] == "Moved" and moved["__v"] == event["__v"] + 1
    assert moved["dates"][0]["date"] == slot(11, 14)["date"].replace("+00:00", ".000Z")
    assert moved["confirmed"]["flag"] is False
    assert await fired(client) == ["event.created"]


async def test_edits_to_a_confirmed_event_fire_event_updated(
    client: Client, unused_tcp_port: int
) -> None:
    await hook_everything(client, unused_tcp_port)
    event = await create(client)
    response = await client.post(f"/v2/events/{event['_id']}/confirm", headers=VYTE)
    confirmed = await response.json()
    assert await fired(client) == ["event.confirmed", "event.created"]
    moved = await put(client, event["_id"], {"dates": [slot(11, 14)]})
    assert moved["confirmed"]["flag"] is True
    assert moved["confirmed"]["date_id"] == moved["dates"][0]["_id"]
    assert moved["confirmed"]["updated_at"] >= confirmed["confirmed"]["updated_at"]
    assert await fired(client) == ["event.confirmed", "event.created", "event.updated"]
    # A title alone is an edit too (Vyte gives "no guarantee" that the date changed).
    renamed = await put(client, event["_id"], {"title": "Renamed"})
    assert (await fired(client)).count("event.updated") == 2
    # Nothing to change: no edit, no hook.
    assert (await put(client, event["_id"], {}))["__v"] == renamed["__v"]
    assert (await fired(client)).count("event.updated") == 2


async def test_a_bad_edit_changes_nothing(client: Client) -> None:
    event = await create(client)
    await put(client, event["_id"], {"title": "New", "dates": [{"date": "soon"}]}, status=400)
    response = await client.get(f"/v2/events/{event['_id']}", headers=VYTE)
    assert await response.json() == event


# 5. Several dates: confirm picks one and names it in `confirmed.date_id`.


async def confirm(client: Client, event_id: str, **choice: str) -> Any:
    response = await client.post(f"/v2/events/{event_id}/confirm", params=choice, headers=VYTE)
    assert response.status == 200, await response.text()
    return await response.json()


def date_id_at(event: dict[str, Any], date: dict[str, Any]) -> str:
    (found,) = (d["_id"] for d in event["dates"] if d["date"] == vyte_form(date["date"]))
    return str(found)


def vyte_form(iso: str) -> str:
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


async def john_free_at(client: Client, date: dict[str, Any]) -> bool:
    start = datetime.fromisoformat(date["date"])
    params = {
        "duration": "60",
        "users": JOHN,
        "from": start.date().isoformat(),
        "to": start.date().isoformat(),
        "timezone": "UTC",
    }
    response = await client.get("/v2/slots", params=params, headers=VYTE)
    body = await response.json()
    wanted = start.isoformat(timespec="seconds")
    return wanted in [s["start"]["dateTime"] for s in body["slots"]]


async def test_confirm_without_d_picks_the_closest_date(client: Client) -> None:
    later, soonest, middle = slot(12, 3), slot(5, 3), slot(8, 3)
    event = await create(client, dates=[later, soonest, middle])
    # Until it is confirmed, the event holds every date it proposes.
    assert not any([await john_free_at(client, d) for d in (later, soonest, middle)])
    confirmed = await confirm(client, event["_id"])
    assert confirmed["confirmed"]["flag"] is True
    assert confirmed["confirmed"]["date_id"] == date_id_at(event, soonest)
    assert [d["confirmed"] for d in confirmed["dates"]] == [False, False, False]
    # Only the chosen date takes up John's time now.
    assert [await john_free_at(client, d) for d in (later, soonest, middle)] == [
        True,
        False,
        True,
    ]


async def test_confirm_with_d_takes_that_date(client: Client) -> None:
    first, second = slot(5, 3), slot(8, 3)
    event = await create(client, dates=[first, second])
    confirmed = await confirm(client, event["_id"], d=date_id_at(event, second))
    assert confirmed["confirmed"]["date_id"] == date_id_at(event, second)
    assert [d["confirmed"] for d in confirmed["dates"]] == [False, False]
    assert await john_free_at(client, first) and not await john_free_at(client, second)


async def test_a_date_already_over_is_not_the_closest(client: Client) -> None:
    past, future = slot(-1, 3), slot(20, 3)
    event = await create(client, dates=[past, future])
    assert (await confirm(client, event["_id"]))["confirmed"]["date_id"] == date_id_at(
        event, future
    )
    older, newer = slot(-3, 3), slot(-2, 3)
    over = await create(client, dates=[newer, older])
    assert (await confirm(client, over["_id"]))["confirmed"]["date_id"] == date_id_at(over, newer)


async def test_created_confirmed_and_reconfirmed_edits_name_the_closest_date(
    client: Client,
) -> None:
    later, soonest = slot(9, 3), slot(6, 3)
    event = await create(client, dates=[later, soonest], confirmed={"flag": True})
    assert event["confirmed"]["date_id"] == date_id_at(event, soonest)
    moved_later, moved_soonest = slot(15, 3), slot(14, 3)
    moved = await put(client, event["_id"], {"dates": [moved_later, moved_soonest]})
    assert moved["confirmed"]["date_id"] == date_id_at(moved, moved_soonest)
    assert [d["confirmed"] for d in moved["dates"]] == [False, False]


# 6. A booking page with `auto_confirm`: its events come back from the create confirmed.


@attrs.define
class Receiver:
    """A plain-http hook target that keeps every body it is sent."""

    url: str
    bodies: list[Any] = attrs.field(factory=list)


@pytest.fixture
async def receiver(aiohttp_server: AiohttpServer) -> Receiver:
    app = web.Application()
    state = Receiver("")

    async def handle(request: web.Request) -> web.Response:
        state.bodies.append(await request.json())
        return web.Response(status=204)

    app.router.add_post("/hooks", handle)
    server = await aiohttp_server(app)
    state.url = str(server.make_url("/hooks"))
    return state


@pytest.fixture
async def loopback_client(aiohttp_client: AiohttpClient) -> Client:
    """A sandbox whose hooks may go to plain-http loopback receivers."""
    return await aiohttp_client(create_sandbox_app(SandboxConfig(allow_http_hooks=True)))


async def set_auto_confirm(client: Client, user: str, value: object, status: int = 200) -> Any:
    response = await client.patch(f"/_sandbox/users/{user}", json={"auto_confirm": value})
    assert response.status == status, await response.text()
    return await response.json()


async def test_a_booking_on_an_auto_confirm_page_comes_back_confirmed(
    loopback_client: Client, receiver: Receiver
) -> None:
    client = loopback_client
    for action in ("event.created", "event.confirmed"):
        await add_hook(client, action, receiver.url)
    assert (await create(client))["confirmed"]["flag"] is False
    await client.post("/_sandbox/deliveries/drain")
    receiver.bodies.clear()

    assert (await set_auto_confirm(client, JOHN, True))["auto_confirm"] is True
    later, soonest = slot(9, 3), slot(6, 3)
    event = await create(client, dates=[later, soonest])
    assert event["confirmed"]["flag"] is True
    assert event["confirmed"]["date_id"] == date_id_at(event, soonest)
    assert event["confirmed"]["updated_at"] == event["createdAt"]
    await client.post("/_sandbox/deliveries/drain")
    # As for any event created confirmed: both actions, each with the confirmed event.
    assert sorted(b["action"] for b in receiver.bodies) == ["event.confirmed", "event.created"]
    assert all(b["resource"] == event for b in receiver.bodies)
    # A second confirm has nothing to do.
    assert await confirm(client, event["_id"]) == event

    # Only the page owner's booking-page (vyteme) events; others stay requested.
    assert (await create(client, vyteme=False))["confirmed"]["flag"] is False
    assert (await create(client, created_by={"user": JANE}))["confirmed"]["flag"] is False
    await set_auto_confirm(client, JOHN, False)
    assert (await create(client))["confirmed"]["flag"] is False


async def test_auto_confirm_from_the_config_until_reset(aiohttp_client: AiohttpClient) -> None:
    client = await aiohttp_client(create_sandbox_app(SandboxConfig(auto_confirm_users={JANE})))
    users = await (await client.get("/_sandbox/users")).json()
    assert [u["_id"] for u in users if u["auto_confirm"]] == [JANE]
    assert (await create(client, created_by={"user": JANE}))["confirmed"]["flag"] is True
    await set_auto_confirm(client, JANE, False)
    assert (await create(client, created_by={"user": JANE}))["confirmed"]["flag"] is False
    await client.post("/_sandbox/reset")
    assert (await create(client, created_by={"user": JANE}))["confirmed"]["flag"] is True


async def test_bad_auto_confirm_changes_are_refused(client: Client) -> None:
    await set_auto_confirm(client, "0" * 24, True, status=404)
    await set_auto_confirm(client, JOHN, "yes", status=400)
    users = await (await client.get("/_sandbox/users")).json()
    assert not any(u["auto_confirm"] for u in users)


async def test_auto_confirm_for_an_unknown_user_stops_the_start() -> None:
    with pytest.raises(ValueError, match="auto_confirm_users"):
        await start_sandbox(SandboxConfig(auto_confirm_users={"0" * 24}))


# 7. Hook bodies: the example's single object, or the prose's array of one.


async def test_hook_bodies_switch_between_an_object_and_an_array_of_one(
    loopback_client: Client, receiver: Receiver
) -> None:
    client = loopback_client
    await add_hook(client, "event.created", receiver.url)
    first = await create(client)
    assert (await settings(client, hook_batch=True))["hook_batch"] is True
    second = await create(client)
    await client.post("/_sandbox/deliveries/drain")
    assert (await client.post("/_sandbox/reset")).status == 204
    assert (await (await client.get("/_sandbox/settings")).json())["hook_batch"] is False
    organization = "5f3feb7821046c3bb9327e00"
    assert sorted(receiver.bodies, key=lambda b: isinstance(b, list)) == [
        {"action": "event.created", "organization": organization, "resource": first},
        [{"action": "event.created", "organization": organization, "resource": second}],
    ]


async def test_hook_batch_from_the_config_is_switched_off_at_run_time(
    aiohttp_client: AiohttpClient, receiver: Receiver
) -> None:
    config = SandboxConfig(hook_batch=True, allow_http_hooks=True)
    client = await aiohttp_client(create_sandbox_app(config))
    await add_hook(client, "event.created", receiver.url)
    await create(client)
    await client.post("/_sandbox/deliveries/drain")
    await settings(client, hook_batch=False)
    await create(client)
    await client.post("/_sandbox/deliveries/drain")
    assert [type(b) for b in receiver.bodies] == [list, dict]
    await settings(client, status=400, hook_batch="yes")

"""Two callers and an admin on one gateway (DESIGN §3.0, §3.5): what each sees and changes,
what each subscription hears, and the subscription quota."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest

from service import keys
from service.domain.booking import Booking, BookingStatus, Invitee
from service.sandbox import SANDBOX_API_KEY
from tests.conftest import ADMIN_AUTH, AUTH, JOHN, OTHER_AUTH
from tests.dates import iso, meeting_day
from tests.integration.conftest import Receiver

PARIS = "Europe/Paris"
DAY = meeting_day()
ASYNC = {"Prefer": "respond-async"}
RANDOM_ID = "0123456789abcdef01234567"


def booking_body(hour: int = 10, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "organizer": JOHN,
        "title": "Ownership check",
        "start": iso(DAY, f"{hour:02d}:00", PARIS),
        "duration": 30,
        "timezone": PARIS,
        "invitees": [{"email": "guest@example.com"}],
    }
    body.update(changes)
    return body


async def vyte_calls(admin: aiohttp.ClientSession) -> dict[str, int]:
    """Every upstream request the sandbox has counted, by route."""
    async with admin.get("_sandbox/stats") as resp:
        counts: dict[str, int] = (await resp.json())["requests"]
    return counts


@pytest.fixture
async def gw(gateway_factory: Any) -> Any:
    # No resync: the sandbox's counts then move only with what the requests cause.
    return await gateway_factory(resync_interval=0)


async def create(gw: Any, auth: dict[str, str], **changes: Any) -> dict[str, Any]:
    resp = await gw.post("/v1/bookings", json=booking_body(**changes), headers=auth)
    assert resp.status == 201, await resp.text()
    made: dict[str, Any] = await resp.json()
    return made


async def answer(resp: aiohttp.ClientResponse) -> tuple[int, dict[str, Any]]:
    return resp.status, await resp.json()


def routes(booking_id: str) -> list[tuple[str, str, dict[str, str]]]:
    return [
        ("GET", f"/v1/bookings/{booking_id}", {}),
        ("POST", f"/v1/bookings/{booking_id}/confirm", {}),
        ("POST", f"/v1/bookings/{booking_id}/cancel", {}),
        ("POST", f"/v1/bookings/{booking_id}/confirm", ASYNC),
        ("POST", f"/v1/bookings/{booking_id}/cancel", ASYNC),
        ("POST", f"/v1/bookings/{booking_id}/cancel", {"Idempotency-Key": f"k-{booking_id}"}),
    ]


async def test_a_non_owner_gets_exactly_what_a_random_id_gets_and_vyte_hears_nothing(
    gw: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    mine = await create(gw, AUTH)
    before = await vyte_calls(sandbox_admin)
    for (method, path, headers), (_, random_path, random_headers) in zip(
        routes(mine["id"]), routes(RANDOM_ID), strict=True
    ):
        status, body = await answer(
            await gw.request(method, path, headers={**OTHER_AUTH, **headers})
        )
        random_status, random_body = await answer(
            await gw.request(method, random_path, headers={**OTHER_AUTH, **random_headers})
        )
        assert status == random_status == 404, (method, path, headers)
        assert body["type"] == "/problems/booking-not-found"
        assert body == {
            **random_body,
            "detail": random_body["detail"].replace(RANDOM_ID, mine["id"]),
        }
    assert await vyte_calls(sandbox_admin) == before
    # Nothing was accepted for later either, and the booking is as it was.
    await asyncio.sleep(0.3)
    assert await vyte_calls(sandbox_admin) == before
    status, still = await answer(await gw.get(f"/v1/bookings/{mine['id']}", headers=AUTH))
    assert status == 200 and still == mine


async def test_the_owner_and_admins_see_and_change_a_booking(
    gw: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    mine = await create(gw, AUTH)
    status, read = await answer(await gw.get(f"/v1/bookings/{mine['id']}", headers=ADMIN_AUTH))
    assert status == 200 and read == mine
    confirmed = await gw.post(f"/v1/bookings/{mine['id']}/confirm", headers=ADMIN_AUTH)
    assert confirmed.status == 200 and (await confirmed.json())["status"] == "confirmed"
    accepted = await gw.post(f"/v1/bookings/{mine['id']}/cancel", headers={**AUTH, **ASYNC})
    assert accepted.status == 202
    operation = (await accepted.json())["id"]
    # An operation is its caller's alone.
    assert (await gw.get(f"/v1/operations/{operation}", headers=OTHER_AUTH)).status == 404
    for _ in range(100):
        op = await (await gw.get(f"/v1/operations/{operation}", headers=AUTH)).json()
        if op["status"] != "pending":
            break
        await asyncio.sleep(0.05)
    assert op["status"] == "succeeded", op
    read = await (await gw.get(f"/v1/bookings/{mine['id']}", headers=AUTH)).json()
    assert (read["status"], read["version"]) == ("cancelled", 3)


async def test_unowned_records_are_for_admins_only(
    gw: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    # A record written before owners existed (or adopted from Vyte) has no caller.
    now = datetime.now(UTC)
    start = datetime.fromisoformat(iso(DAY, "15:00", PARIS))
    old = Booking(
        id="abcdefabcdefabcdefabcdef",
        status=BookingStatus.REQUESTED,
        title="From before owners",
        organizer=JOHN,
        start=start,
        end=start + timedelta(hours=1),
        timezone=PARIS,
        invitees=(Invitee("guest@example.com"),),
        place=None,
        message=None,
        callback_url=None,
        caller=None,
        version=1,
        created_at=now,
        updated_at=now,
    )
    assert await gw.app[keys.STORE].put_booking(old, expected_version=None)
    before = await vyte_calls(sandbox_admin)
    for auth in (AUTH, OTHER_AUTH):
        for method, path, headers in routes(old.id):
            resp = await gw.request(method, path, headers={**auth, **headers})
            assert resp.status == 404, (method, path)
    assert await vyte_calls(sandbox_admin) == before
    status, read = await answer(await gw.get(f"/v1/bookings/{old.id}", headers=ADMIN_AUTH))
    assert status == 200 and read["title"] == "From before owners"


async def test_subscriptions_hear_their_own_callers_bookings_and_admins_hear_all(
    gw: Any, receiver: Receiver
) -> None:
    events = ["booking.requested", "booking.cancelled", "operation.failed"]
    for who, auth in (("alpha", AUTH), ("beta", OTHER_AUTH), ("admin", ADMIN_AUTH)):
        resp = await gw.post(
            "/v1/subscriptions",
            json={"url": f"{receiver.url}?as={who}", "events": events},
            headers=auth,
        )
        assert resp.status == 201
    alphas = await create(gw, AUTH, hour=9)
    betas = await create(gw, OTHER_AUTH, hour=11)
    assert (await gw.post(f"/v1/bookings/{alphas['id']}/cancel", headers=AUTH)).status == 200
    # A cancelled booking cannot be confirmed: the operation fails, `operation.failed`.
    accepted = await gw.post(f"/v1/bookings/{alphas['id']}/confirm", headers={**AUTH, **ASYNC})
    assert accepted.status == 202
    # Each of alpha's three events twice (alpha's and the admin's), beta's booking twice.
    await receiver.wait_for(3 * 2 + 2)

    async def heard(auth: dict[str, str]) -> list[tuple[str, str | None]]:
        listing = await (await gw.get("/v1/deliveries", headers=auth)).json()
        return sorted((d["event_type"], d["booking_id"]) for d in listing["deliveries"])

    alpha_events = [
        ("booking.cancelled", alphas["id"]),
        ("booking.requested", alphas["id"]),
        ("operation.failed", alphas["id"]),
    ]
    assert await heard(AUTH) == alpha_events
    assert await heard(OTHER_AUTH) == [("booking.requested", betas["id"])]
    assert await heard(ADMIN_AUTH) == sorted([*alpha_events, ("booking.requested", betas["id"])])
    assert len(receiver.received) == 3 * 2 + 2
    beta_bodies = [b for b in receiver.bodies() if b["data"].get("id") == betas["id"]]
    assert len(beta_bodies) == 2  # beta's own subscription and the admin's


async def test_subscription_quota_and_identical_subscriptions(gateway_factory: Any) -> None:
    gw = await gateway_factory(max_subscriptions=2, resync_interval=0)

    async def subscribe(auth: dict[str, str], url: str, events: list[str]) -> Any:
        return await gw.post("/v1/subscriptions", json={"url": url, "events": events}, headers=auth)

    first = await subscribe(AUTH, "https://crm.internal/a", ["booking.requested"])
    assert first.status == 201
    made = await first.json()
    again = await subscribe(AUTH, "https://crm.internal/a", ["booking.requested"])
    assert again.status == 200 and await again.json() == made
    assert again.headers["Location"] == f"/v1/subscriptions/{made['id']}"
    second = await subscribe(
        AUTH, "https://crm.internal/a", ["booking.cancelled", "booking.requested"]
    )
    assert second.status == 201
    # The same set of events in another order is the same subscription, even at the limit.
    same = await subscribe(
        AUTH, "https://crm.internal/a", ["booking.requested", "booking.cancelled"]
    )
    assert same.status == 200 and (await same.json())["id"] == (await second.json())["id"]
    third = await subscribe(AUTH, "https://crm.internal/b", ["booking.requested"])
    assert third.status == 409
    problem = await third.json()
    assert problem["type"] == "/problems/subscription-limit" and problem["status"] == 409
    listing = await (await gw.get("/v1/subscriptions", headers=AUTH)).json()
    assert len(listing["subscriptions"]) == 2
    # The quota is per caller.
    assert (
        await subscribe(OTHER_AUTH, "https://crm.internal/b", ["booking.requested"])
    ).status == 201
    # A deleted subscription frees its place.
    assert (await gw.delete(f"/v1/subscriptions/{made['id']}", headers=AUTH)).status == 204
    assert (await subscribe(AUTH, "https://crm.internal/b", ["booking.requested"])).status == 201


async def test_events_a_vyte_hook_reports_are_unowned(
    gateway_factory: Any, sandbox_admin: aiohttp.ClientSession, receiver: Receiver
) -> None:
    token = "inbound-token-0123456789"
    gw = await gateway_factory(vyte_webhook_token=token, resync_interval=0)
    events = ["booking.requested"]
    for who, auth in (("alpha", AUTH), ("admin", ADMIN_AUTH)):
        resp = await gw.post(
            "/v1/subscriptions",
            json={"url": f"{receiver.url}?as={who}", "events": events},
            headers=auth,
        )
        assert resp.status == 201
    start = datetime.fromisoformat(iso(DAY, "16:00", PARIS)).astimezone(UTC)
    async with sandbox_admin.post(
        "v2/events",
        headers={"Authorization": SANDBOX_API_KEY},
        json={
            "title": "Made in Vyte",
            "created_by": {"user": JOHN},
            "dates": [
                {
                    "all_day": False,
                    "date": start.isoformat().replace("+00:00", "Z"),
                    "end_date": (start + timedelta(hours=1)).isoformat().replace("+00:00", "Z"),
                }
            ],
            "invitees": [{"email": "z@example.com"}],
        },
    ) as r:
        event = await r.json()
    note = {"action": "event.created", "organization": "o", "resource": event}
    assert (await gw.post(f"/v1/vyte/webhooks/{token}", json=note)).status == 204
    assert (await gw.get(f"/v1/bookings/{event['_id']}", headers=AUTH)).status == 404
    read = await gw.get(f"/v1/bookings/{event['_id']}", headers=ADMIN_AUTH)
    assert read.status == 200 and (await read.json())["title"] == "Made in Vyte"

    async def heard(auth: dict[str, str]) -> list[str | None]:
        listing = await (await gw.get("/v1/deliveries", headers=auth)).json()
        return [d["booking_id"] for d in listing["deliveries"]]

    assert await heard(AUTH) == []
    assert await heard(ADMIN_AUTH) == [event["_id"].lower()]
    await receiver.wait_for(1)
    assert [b["data"]["title"] for b in receiver.bodies()] == ["Made in Vyte"]

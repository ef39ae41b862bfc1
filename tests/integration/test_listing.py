"""GET /v1/bookings: keyset pages stable under writes, filters, signed cursors, visibility."""

from __future__ import annotations

import base64
import itertools
from datetime import UTC, datetime, time, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest

from service import keys
from service.domain.booking import Booking, BookingStatus, Invitee
from tests.conftest import AUTH, JOHN, OTHER_AUTH
from tests.dates import meeting_day

pytest_plugins = ("tests.redis_server",)

DAY = meeting_day()
_ids = itertools.count(1)


async def put(
    gw: Any,
    start: datetime,
    *,
    caller: str | None = "alpha",
    organizer: str = JOHN,
    status: BookingStatus = BookingStatus.REQUESTED,
) -> Booking:
    """A booking written straight into the gateway's store (no Vyte needed to list it)."""
    now = datetime.now(UTC)
    booking = Booking(
        id=f"{next(_ids):024x}",
        status=status,
        title="Listed",
        organizer=organizer.lower(),
        start=start,
        end=start + timedelta(minutes=30),
        timezone="Europe/Paris",
        invitees=(Invitee(email="x@example.com"),),
        place=None,
        message=None,
        callback_url=None,
        caller=caller,
        version=1,
        created_at=now,
        updated_at=now,
    )
    assert await gw.server.app[keys.STORE].put_booking(booking, expected_version=None)
    return booking


def hour(h: int, minute: int = 0, day: Any = DAY) -> datetime:
    return datetime.combine(day, time(h, minute), UTC)


async def listing(gw: Any, headers: dict[str, str] = AUTH, **params: Any) -> Any:
    resp = await gw.get(f"/v1/bookings?{urlencode(params)}", headers=headers)
    return resp.status, await resp.json(content_type=None)


def order_key(item: dict[str, Any]) -> tuple[datetime, str]:
    return datetime.fromisoformat(item["start"]), item["id"]


async def walk_while_writing(gw: Any, day: Any = DAY) -> None:
    # Ties on start are ordered by id: three bookings share 09:00.
    existing = [await put(gw, hour(h, day=day)) for h in (8, 10, 11, 12, 13)]
    existing += [await put(gw, hour(9, day=day), organizer=f"p{i}@example.com") for i in range(3)]
    pages: list[list[dict[str, Any]]] = []
    params: dict[str, Any] = {"limit": 3}
    written = []
    while True:
        status, page = await listing(gw, **params)
        assert status == 200, page
        pages.append(page["bookings"])
        if page["next_cursor"] is None:
            break
        assert len(pages) < 5
        # Writes between pages: before the position, after it, and on the same start.
        written.append(await put(gw, hour(7, 30 + len(pages), day=day)))
        written.append(await put(gw, hour(14, len(pages), day=day)))
        written.append(await put(gw, hour(9, day=day), organizer=f"q{len(pages)}@example.com"))
        params = {"limit": 3, "cursor": page["next_cursor"]}
    listed = [item for page in pages for item in page]
    assert len(pages) >= 3
    ids = [item["id"] for item in listed]
    assert len(ids) == len(set(ids))
    assert {b.id for b in existing} <= set(ids)
    assert listed == sorted(listed, key=order_key)
    # What was written behind the walk's position was not listed; what was ahead was.
    assert not {b.id for b in written if b.start < hour(9, day=day)} & set(ids)
    assert {b.id for b in written if b.start >= hour(14, day=day)} <= set(ids)


async def test_paging_is_stable_while_bookings_are_created(gateway: Any) -> None:
    await walk_while_writing(gateway)


async def test_paging_on_redis_across_replicas(gateway_factory: Any, redis_server: Any) -> None:
    await redis_server.flush(2)
    one = await gateway_factory(store_url=redis_server.url(2))
    two = await gateway_factory(store_url=redis_server.url(2))
    await walk_while_writing(one)
    # A cursor minted by one replica is good on another.
    status, page = await listing(one, limit=2)
    assert status == 200 and page["next_cursor"]
    status, following = await listing(two, limit=2, cursor=page["next_cursor"])
    assert status == 200, following
    assert order_key(following["bookings"][0]) > order_key(page["bookings"][-1])


async def test_filters(gateway: Any) -> None:
    marie = "Marie@Example.com"
    a = await put(gateway, hour(8))
    b = await put(gateway, hour(9), status=BookingStatus.CONFIRMED)
    c = await put(gateway, hour(10), organizer=marie, status=BookingStatus.CANCELLED)
    d = await put(gateway, hour(11), organizer=marie)

    async def ids(**params: Any) -> list[str]:
        status, page = await listing(gateway, **params)
        assert status == 200, page
        return [item["id"] for item in page["bookings"]]

    assert await ids() == [a.id, b.id, c.id, d.id]
    assert await ids(organizer="marie@EXAMPLE.com") == [c.id, d.id]
    assert await ids(organizer=JOHN.upper()) == [a.id, b.id]
    assert await ids(status="confirmed,cancelled") == [b.id, c.id]
    assert await ids(status="requested", organizer=marie) == [d.id]
    # from <= start < to, with offsets (here +02:00 written with "+").
    paris = (hour(9) + timedelta(hours=2)).replace(tzinfo=None).isoformat() + "+02:00"
    assert await ids(**{"from": paris, "to": hour(11).isoformat()}) == [b.id, c.id]
    assert await ids(**{"from": hour(11).isoformat().replace("+00:00", "Z")}) == [d.id]


async def test_only_the_callers_own_bookings_and_admins_see_all(gateway_factory: Any) -> None:
    gw = await gateway_factory(admin_callers=frozenset({"beta"}))
    mine = await put(gw, hour(8))
    theirs = await put(gw, hour(9), caller="other")
    adopted = await put(gw, hour(10), caller=None)
    status, page = await listing(gw)
    assert status == 200
    assert [item["id"] for item in page["bookings"]] == [mine.id]
    status, page = await listing(gw, headers=OTHER_AUTH)
    assert [item["id"] for item in page["bookings"]] == [mine.id, theirs.id, adopted.id]


async def test_bad_cursors_are_400(gateway_factory: Any) -> None:
    gw = await gateway_factory()
    for h in (8, 9, 10):
        await put(gw, hour(h))
        await put(gw, hour(h), caller="beta")
    status, page = await listing(gw, limit=1, status="requested")
    cursor = page["next_cursor"]
    assert status == 200 and cursor

    raw = bytearray(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    raw[2] ^= 1  # one bit of the position changed
    tampered = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
    forged = base64.urlsafe_b64encode(b"0.aaaaaaaaaaaaaaaaaaaaaaaa.00" + bytes(16)).decode()
    # A gateway with other secrets did not issue it.
    foreign_gw = await gateway_factory(api_tokens={"test-token-alpha": "alpha", "x": "gamma"})
    cases = [
        (gw, AUTH, {"status": "requested", "cursor": tampered}, "not a cursor issued"),
        (gw, AUTH, {"status": "requested", "cursor": forged}, "not a cursor issued"),
        (gw, AUTH, {"status": "requested", "cursor": "%%%"}, "not a cursor issued"),
        (gw, AUTH, {"status": "requested", "cursor": ""}, "not a cursor issued"),
        (foreign_gw, AUTH, {"status": "requested", "cursor": cursor}, "not a cursor issued"),
        (gw, AUTH, {"status": "confirmed", "cursor": cursor}, "other filters"),
        (gw, AUTH, {"cursor": cursor}, "other filters"),
        (gw, OTHER_AUTH, {"status": "requested", "cursor": cursor}, "other filters"),
    ]
    for target, headers, params, message in cases:
        status, problem = await listing(target, headers, **params)
        assert status == 400, (params, problem)
        (error,) = problem["errors"]
        assert error["field"] == "cursor" and message in error["message"], params
    # The page size may change between pages.
    status, page = await listing(gw, limit=5, status="requested", cursor=cursor)
    assert status == 200 and len(page["bookings"]) == 2 and page["next_cursor"] is None


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "201"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"status": "requested,done"}, "status"),
        ({"status": ""}, "status"),
        ({"organizer": "john"}, "organizer"),
        ({"from": f"{DAY}T10:00:00"}, "from"),
        ({"from": str(DAY)}, "from"),
        ({"to": "soon"}, "to"),
        ({"from": f"{DAY}T10:00:00Z", "to": f"{DAY}T09:00:00Z"}, "to"),
        ({"sort": "start"}, "sort"),
    ],
)
async def test_bad_parameters_are_400_naming_them(
    gateway: Any, params: dict[str, str], field: str
) -> None:
    status, problem = await listing(gateway, **params)
    assert status == 400, problem
    assert field in {e["field"] for e in problem["errors"]}


async def test_a_repeated_parameter_is_400(gateway: Any) -> None:
    resp = await gateway.get("/v1/bookings?limit=2&limit=3", headers=AUTH)
    assert resp.status == 400


async def test_created_and_rescheduled_bookings_are_listed_where_they_now_are(gateway: Any) -> None:
    from tests.dates import iso

    made = []
    for clock in ("10:00", "12:00"):
        resp = await gateway.post(
            "/v1/bookings",
            json={
                "organizer": JOHN,
                "title": "Listed",
                "start": iso(DAY, clock, "Europe/Paris"),
                "duration": 30,
                "timezone": "Europe/Paris",
                "invitees": [{"email": "x@example.com"}],
            },
            headers=AUTH,
        )
        assert resp.status == 201
        made.append(await resp.json())
    move = {"start": iso(DAY, "15:00", "Europe/Paris"), "duration": 30}
    resp = await gateway.post(f"/v1/bookings/{made[0]['id']}/reschedule", json=move, headers=AUTH)
    assert resp.status == 200
    status, page = await listing(gateway)
    assert [b["id"] for b in page["bookings"]] == [made[1]["id"], made[0]["id"]]
    assert page["bookings"][1] == await resp.json()
    status, page = await listing(gateway, headers=OTHER_AUTH)
    assert (status, page) == (200, {"bookings": [], "next_cursor": None})

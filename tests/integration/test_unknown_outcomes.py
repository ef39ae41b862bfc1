"""Creates and status changes whose answer is lost: the reconciler decides, Vyte sees each once.

A create whose outcome is unknown keeps its slot until the reconciler has found its event
in Vyte (then it is the caller's booking, announced once) or has looked for the whole
UNKNOWN_OUTCOME_TIMEOUT (then the slot is free). A confirm or cancel whose answer is lost
is re-read from Vyte: applied there, it is applied here and answered 200.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import attrs
import pytest
from aiohttp.test_utils import TestServer
from aiohttp.web_runner import BaseRunner

from service import keys
from service.bookings import BookingService
from service.notify.reconciler import Reconciler
from service.sandbox import SANDBOX_API_KEY, SandboxConfig, create_sandbox_app
from tests.conftest import AUTH, JOHN, upstream_calls
from tests.integration.conftest import Receiver
from tests.integration.test_webhooks import MEETING_DAY, booking, wait_operation

ASYNC = {**AUTH, "Prefer": "respond-async"}
Factory = Callable[..., Awaitable[Any]]


class _FinishingServer(TestServer):
    """A server that, like Vyte, finishes a request whose client gave up (aiohttp's test
    server cancels it): an event created after our timeout appears in Vyte later."""

    async def _make_runner(self, **kwargs: Any) -> BaseRunner:
        kwargs["handler_cancellation"] = False
        return await super()._make_runner(**kwargs)


@pytest.fixture
async def sandbox() -> AsyncIterator[TestServer]:
    server = _FinishingServer(create_sandbox_app(SandboxConfig()), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


async def vyte_events(admin: aiohttp.ClientSession) -> list[dict[str, Any]]:
    async with admin.get("_sandbox/events") as resp:
        events: list[dict[str, Any]] = await resp.json()
    return [e for e in events if e["dates"][0]["date"].startswith(str(MEETING_DAY))]


async def fault(admin: aiohttp.ClientSession, path: str = "/v2/events", **spec: Any) -> None:
    """The next POST to `path` misbehaves as `spec` says (once)."""
    body = {"count": 1, "path": path, "method": "POST", **spec}
    async with admin.post("_sandbox/faults", json=body) as resp:
        assert resp.status in (200, 201), await resp.text()


@pytest.fixture
def short_hold(monkeypatch: pytest.MonkeyPatch) -> float:
    """A slot's plain hold lapses after 0.3 s (instead of about a minute): a test can wait
    past it, as a caller retrying minutes later would."""
    monkeypatch.setattr(BookingService, "hold_ttl", property(lambda self: 0.3))
    return 0.3


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, "never happened"
        await asyncio.sleep(0.05)


async def booked(gw: Any, admin: aiohttp.ClientSession) -> dict[str, Any] | None:
    """The booking recorded for the meeting's one Vyte event, read as its caller."""
    events = await vyte_events(admin)
    if len(events) != 1:
        return None
    resp = await gw.get(f"/v1/bookings/{events[0]['_id']}", headers=AUTH)
    stored = await gw.app[keys.STORE].get_booking(events[0]["_id"])
    return await resp.json() if stored is not None and stored.caller == "alpha" else None


async def test_an_unkeyed_retry_after_a_lost_answer_never_makes_a_second_event(
    gateway_factory: Factory,
    sandbox_admin: aiohttp.ClientSession,
    receiver: Receiver,
    short_hold: float,
) -> None:
    gw = await gateway_factory(unknown_outcome_timeout=5)
    body = booking(receiver.url, check_availability=False)
    await fault(sandbox_admin, status=502, apply=True)  # Vyte stores it, the answer is lost
    assert (await gw.post("/v1/bookings", json=body, headers=AUTH)).status == 502

    await asyncio.sleep(short_hold * 2)  # long past the plain hold's lapse
    # Until the reconciler has recorded it, the slot stays taken; after, it is a booking.
    again = await gw.post("/v1/bookings", json=body, headers=AUTH)
    assert again.status == 409
    assert (await again.json())["type"] == "/problems/slot-unavailable"
    await until(lambda: booked(gw, sandbox_admin))
    made = await booked(gw, sandbox_admin)
    assert made is not None and made["status"] == "requested"
    assert made["callback_url"] == receiver.url
    assert (await gw.post("/v1/bookings", json=body, headers=AUTH)).status == 409

    await receiver.wait_for(1)
    await asyncio.sleep(0.3)  # room for a duplicate to arrive
    assert [(b["type"], b["data"]["id"]) for b in receiver.bodies()] == [
        ("booking.requested", made["id"])
    ]
    assert await upstream_calls(sandbox_admin, "POST /v2/events") == 1
    assert len(await vyte_events(sandbox_admin)) == 1


async def test_a_slow_vyte_keeps_the_slot_until_the_event_appears(
    gateway_factory: Factory, sandbox_admin: aiohttp.ClientSession, short_hold: float
) -> None:
    # Vyte takes 2.5 s to store the event; we give up on it after 1 s.
    gw = await gateway_factory(unknown_outcome_timeout=8, vyte_timeout=1.0, request_budget=2.0)
    body = booking(None, check_availability=False)
    await fault(sandbox_admin, latency=2.5)
    first = await gw.post("/v1/bookings", json=body, headers=AUTH)
    assert first.status == 504
    await asyncio.sleep(short_hold * 2)
    # The reconciler has looked and found nothing yet: one look is not enough.
    assert await vyte_events(sandbox_admin) == []
    assert (await gw.post("/v1/bookings", json=body, headers=AUTH)).status == 409

    await until(lambda: booked(gw, sandbox_admin))
    assert (await gw.post("/v1/bookings", json=body, headers=AUTH)).status == 409
    assert await upstream_calls(sandbox_admin, "POST /v2/events") == 1


async def test_a_keyed_retry_while_vyte_is_still_creating_waits_then_replays(
    gateway_factory: Factory, sandbox_admin: aiohttp.ClientSession, receiver: Receiver
) -> None:
    gw = await gateway_factory(unknown_outcome_timeout=8, vyte_timeout=1.0, request_budget=2.0)
    body = booking(receiver.url, check_availability=False)
    headers = {**AUTH, "Idempotency-Key": "slow-vyte"}
    await fault(sandbox_admin, latency=2.5)
    assert (await gw.post("/v1/bookings", json=body, headers=headers)).status == 504

    waiting = await gw.post("/v1/bookings", json=body, headers=headers)
    assert waiting.status == 409
    assert (await waiting.json())["type"] == "/problems/idempotency-key-in-flight"
    assert "Retry-After" in waiting.headers

    async def replayed() -> bool:
        resp = await gw.post("/v1/bookings", json=body, headers=headers)
        return resp.status == 201

    await until(replayed)
    final = await gw.post("/v1/bookings", json=body, headers=headers)
    assert final.status == 201 and final.headers["Idempotent-Replayed"] == "true"
    (event,) = await vyte_events(sandbox_admin)
    answer = await final.json()
    assert answer["id"] == event["_id"] and answer["callback_url"] == receiver.url
    assert final.headers["Location"] == f"/v1/bookings/{event['_id']}"
    await receiver.wait_for(1)
    assert [b["type"] for b in receiver.bodies()] == ["booking.requested"]
    assert await upstream_calls(sandbox_admin, "POST /v2/events") == 1


@pytest.mark.parametrize(
    "title",
    [
        r"Q&A (v2.0) [draft]? *urgent* + ^start$ | a\b {1,2}",
        ".*",
        "Meeting with Quentin Tarantino (",
    ],
)
async def test_a_title_full_of_regex_metacharacters_is_found_exactly(
    gateway_factory: Factory, sandbox_admin: aiohttp.ClientSession, title: str
) -> None:
    gw = await gateway_factory(unknown_outcome_timeout=5)
    body = booking(None, title=title, check_availability=False)
    # An event of the same organizer, times and invitees, made inside Vyte, whose title
    # the unescaped pattern would match (or choke on).
    start = datetime.fromisoformat(body["start"]).astimezone(UTC)
    decoy = {
        "title": "Meeting with Quentin Tarantino",
        "created_by": {"user": JOHN},
        "dates": [
            {
                "all_day": False,
                "date": start.isoformat(),
                "end_date": (start + timedelta(hours=1)).isoformat(),
            }
        ],
        "invitees": body["invitees"],
        "vyteme": True,
    }
    async with sandbox_admin.post(
        "v2/events", json=decoy, headers={"Authorization": SANDBOX_API_KEY}
    ) as resp:
        assert resp.status in (200, 201), await resp.text()
    await fault(sandbox_admin, status=500, apply=True)
    assert (await gw.post("/v1/bookings", json=body, headers=AUTH)).status == 502

    async def recorded() -> list[tuple[str | None, str]]:
        store = gw.app[keys.STORE]
        found = []
        for event in await vyte_events(sandbox_admin):
            stored = await store.get_booking(event["_id"])
            if stored is not None:
                found.append((stored.caller, stored.title))
        return found

    async def settled() -> bool:
        return bool(await recorded())

    await until(settled)
    await asyncio.sleep(0.3)
    assert await recorded() == [("alpha", title)]
    assert len(await vyte_events(sandbox_admin)) == 2


async def test_a_create_vyte_never_stored_frees_its_slot_after_the_timeout(
    gateway_factory: Factory, sandbox_admin: aiohttp.ClientSession, receiver: Receiver
) -> None:
    gw = await gateway_factory(unknown_outcome_timeout=1.5)
    body = booking(receiver.url, check_availability=False)
    headers = {**AUTH, "Idempotency-Key": "never-stored"}
    await fault(sandbox_admin, status=500)  # nothing stored; the gateway cannot know that
    started = time.monotonic()
    assert (await gw.post("/v1/bookings", json=body, headers=headers)).status == 502
    assert (await gw.post("/v1/bookings", json=body, headers=AUTH)).status == 409

    async def created() -> bool:
        resp = await gw.post("/v1/bookings", json=body, headers=headers)
        assert resp.status in (201, 409), await resp.text()
        return resp.status == 201

    await until(created)
    # Looked for the whole timeout before the slot went.
    assert time.monotonic() - started >= 1.5
    (event,) = await vyte_events(sandbox_admin)
    await receiver.wait_for(1)
    assert [(b["type"], b["data"]["id"]) for b in receiver.bodies()] == [
        ("booking.requested", event["_id"])
    ]
    assert await upstream_calls(sandbox_admin, "POST /v2/events") == 2


@pytest.mark.parametrize(
    ("action", "status", "event_type"),
    [("confirm", "confirmed", "booking.confirmed"), ("cancel", "cancelled", "booking.cancelled")],
)
async def test_a_change_vyte_applied_but_whose_answer_was_lost_is_a_success(
    gateway: Any,
    sandbox_admin: aiohttp.ClientSession,
    receiver: Receiver,
    action: str,
    status: str,
    event_type: str,
) -> None:
    created = await gateway.post("/v1/bookings", json=booking(receiver.url), headers=AUTH)
    booking_id = (await created.json())["id"]
    await receiver.wait_for(1)
    await fault(sandbox_admin, f"/v2/events/{booking_id}/{action}", status=502, apply=True)
    resp = await gateway.post(f"/v1/bookings/{booking_id}/{action}", headers=AUTH)
    assert resp.status == 200, await resp.text()
    answer = await resp.json()
    assert (answer["status"], answer["version"]) == (status, 2)
    (event,) = await vyte_events(sandbox_admin)
    assert bool(event.get("cancelled")) == (action == "cancel")
    await receiver.wait_for(2)
    await asyncio.sleep(0.3)
    assert [b["type"] for b in receiver.bodies()] == ["booking.requested", event_type]
    again = await gateway.post(f"/v1/bookings/{booking_id}/{action}", headers=AUTH)
    assert (await again.json())["version"] == 2


async def test_a_confirm_answered_after_a_hang_is_read_back(
    gateway_factory: Factory, sandbox_admin: aiohttp.ClientSession
) -> None:
    gw = await gateway_factory(vyte_timeout=0.5, request_budget=3.0)
    booking_id = (await (await gw.post("/v1/bookings", json=booking(None), headers=AUTH)).json())[
        "id"
    ]
    await fault(sandbox_admin, f"/v2/events/{booking_id}/confirm", hang=True, apply=True)
    resp = await gw.post(f"/v1/bookings/{booking_id}/confirm", headers=AUTH)
    assert resp.status == 200 and (await resp.json())["status"] == "confirmed"


@pytest.mark.parametrize("action", ["confirm", "cancel"])
async def test_a_change_vyte_did_not_apply_still_fails(
    gateway: Any, sandbox_admin: aiohttp.ClientSession, action: str
) -> None:
    booking_id = (
        await (await gateway.post("/v1/bookings", json=booking(None), headers=AUTH)).json()
    )["id"]
    await fault(sandbox_admin, f"/v2/events/{booking_id}/{action}", status=502)
    resp = await gateway.post(f"/v1/bookings/{booking_id}/{action}", headers=AUTH)
    assert resp.status == 502
    read = await (await gateway.get(f"/v1/bookings/{booking_id}", headers=AUTH)).json()
    assert (read["status"], read["version"]) == ("requested", 1)


async def test_an_async_create_never_takes_over_an_identical_booking(
    gateway_factory: Factory, sandbox_admin: aiohttp.ClientSession, receiver: Receiver
) -> None:
    gw = await gateway_factory(retry_base=0.05, retry_cap=0.1)
    body = booking(None, check_availability=False)
    mine = await gw.post("/v1/bookings", json=body, headers=AUTH)
    assert mine.status == 201
    existing = await mine.json()
    other_guests = [{"full_name": "Uma Thurman", "email": "uma@hollywood.com"}]
    accepted = await gw.post(
        "/v1/bookings",
        json={**body, "invitees": other_guests, "callback_url": receiver.url},
        headers=ASYNC,
    )
    op = await wait_operation(gw, accepted.headers["Location"])
    assert op["status"] == "failed" and op["last_error"].startswith("409 slot-unavailable")
    assert op["booking_id"] is None
    await receiver.wait_for(1)
    assert [b["type"] for b in receiver.bodies()] == ["operation.failed"]
    read = await (await gw.get(f"/v1/bookings/{existing['id']}", headers=AUTH)).json()
    assert read["invitees"] == existing["invitees"] and read["version"] == 1
    assert len(await vyte_events(sandbox_admin)) == 1


async def test_an_async_create_whose_answer_is_lost_waits_for_the_reconciler(
    gateway_factory: Factory, sandbox_admin: aiohttp.ClientSession, receiver: Receiver
) -> None:
    gw = await gateway_factory(
        unknown_outcome_timeout=8,
        vyte_timeout=1.0,
        request_budget=2.0,
        retry_base=0.05,
        retry_cap=0.2,
    )
    await fault(sandbox_admin, latency=2.5)
    body = booking(receiver.url, check_availability=False)
    accepted = await gw.post("/v1/bookings", json=body, headers=ASYNC)
    op = await wait_operation(gw, accepted.headers["Location"], timeout=15)
    assert op["status"] == "succeeded", op
    (event,) = await vyte_events(sandbox_admin)
    assert op["booking_id"] == event["_id"]
    await receiver.wait_for(1)
    await asyncio.sleep(0.3)
    assert [(b["type"], b["data"]["id"]) for b in receiver.bodies()] == [
        ("booking.requested", event["_id"])
    ]
    assert await upstream_calls(sandbox_admin, "POST /v2/events") == 1


async def test_the_reconciler_never_takes_an_event_recorded_as_another_booking(
    gateway_factory: Factory, sandbox_admin: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    gate = asyncio.Event()  # the reconciler looks only once the twin below is recorded
    original = Reconciler.run_once

    async def gated(self: Reconciler) -> int:
        return await original(self) if gate.is_set() else 0

    monkeypatch.setattr(Reconciler, "run_once", gated)
    gw = await gateway_factory(unknown_outcome_timeout=1.5)
    body = booking(None, check_availability=False)
    await fault(sandbox_admin, status=500)  # ours never reaches Vyte
    assert (await gw.post("/v1/bookings", json=body, headers=AUTH)).status == 502
    # Meanwhile an identical event appears in Vyte, already another caller's booking.
    start = datetime.fromisoformat(body["start"]).astimezone(UTC)
    twin = {
        "title": body["title"],
        "created_by": {"user": JOHN},
        "dates": [
            {
                "all_day": False,
                "date": start.isoformat(),
                "end_date": (start + timedelta(hours=1)).isoformat(),
            }
        ],
        "invitees": body["invitees"],
        "vyteme": True,
    }
    async with sandbox_admin.post(
        "v2/events", json=twin, headers={"Authorization": SANDBOX_API_KEY}
    ) as resp:
        twin_id = (await resp.json())["_id"]
    store = gw.app[keys.STORE]
    finish = store.finish_unresolved
    released: list[bool] = []  # records closed without a booking: decided absent

    async def watched(record_id: str, **kwargs: Any) -> bool:
        closed = bool(await finish(record_id, **kwargs))
        if kwargs.get("booking") is None:
            released.append(closed)
        return closed

    monkeypatch.setattr(store, "finish_unresolved", watched)
    adopted = await gw.app[keys.BOOKINGS].adopt(await gw.app[keys.VYTE].get_event(twin_id))
    theirs = attrs.evolve(adopted, caller="beta", version=adopted.version + 1)
    assert await store.put_booking(theirs, expected_version=adopted.version)
    gate.set()

    async def decided() -> bool:
        return released == [True]

    await until(decided)
    kept = await store.get_booking(twin_id)
    assert kept is not None and (kept.caller, kept.version) == ("beta", theirs.version)
    assert [e["_id"] for e in await vyte_events(sandbox_admin)] == [twin_id]


@pytest.mark.parametrize(("applied", "answer"), [(True, 200), (False, 502)])
async def test_a_reschedule_whose_answer_was_lost_is_read_back(
    gateway: Any,
    sandbox_admin: aiohttp.ClientSession,
    receiver: Receiver,
    applied: bool,
    answer: int,
) -> None:
    created = await gateway.post("/v1/bookings", json=booking(receiver.url), headers=AUTH)
    original = await created.json()
    await receiver.wait_for(1)
    start = datetime.fromisoformat(original["start"]) + timedelta(hours=2)
    end = datetime.fromisoformat(original["end"]) + timedelta(hours=2)
    # Every PUT answers 502 (the client retries a PUT), after moving the event or not.
    path = f"/v2/events/{original['id']}"
    await fault(sandbox_admin, path, method="PUT", count=10, status=502, apply=applied)
    resp = await gateway.post(
        f"/v1/bookings/{original['id']}/reschedule",
        json={"start": start.isoformat(), "end": end.isoformat(), "check_availability": False},
        headers=AUTH,
    )
    assert resp.status == answer, await resp.text()
    read = await (await gateway.get(f"/v1/bookings/{original['id']}", headers=AUTH)).json()
    if applied:
        moved = await resp.json()
        assert datetime.fromisoformat(moved["start"]) == start and moved["version"] == 2
        assert read == moved
        await receiver.wait_for(2)
    else:
        assert read == original
    await asyncio.sleep(0.3)
    expected = ["booking.requested", "booking.updated"] if applied else ["booking.requested"]
    assert [b["type"] for b in receiver.bodies()] == expected


async def test_the_reconciler_continues_the_trace_of_the_create_it_settles(
    gateway_factory: Factory,
    sandbox_admin: aiohttp.ClientSession,
    receiver: Receiver,
) -> None:
    gw = await gateway_factory(unknown_outcome_timeout=5)
    body = booking(receiver.url, check_availability=False)
    trace_id = "0af7651916cd43dd8448eb211c80319c"
    incoming = f"00-{trace_id}-b7ad6b7169203331-01"
    await fault(sandbox_admin, status=502, apply=True)  # Vyte stores it, the answer is lost
    sent = await gw.post(
        "/v1/bookings",
        json=body,
        headers={**AUTH, "traceparent": incoming, "tracestate": "vendor=abc"},
    )
    assert sent.status == 502
    await receiver.wait_for(1)
    # Found by the reconciler, later and from the stored record: its webhook is still
    # part of the create's trace, with the caller's state.
    headers, _ = receiver.received[0]
    assert [b["type"] for b in receiver.bodies()] == ["booking.requested"]
    assert headers["traceparent"].split("-")[1] == trace_id
    assert headers["traceparent"].split("-")[2] != "b7ad6b7169203331"
    assert headers["tracestate"] == "vendor=abc"

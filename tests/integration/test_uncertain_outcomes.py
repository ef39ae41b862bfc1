"""Bookings when an answer is lost or a change races another: Vyte sees each event once, and
nobody is handed somebody else's booking.

Vyte may store an event and still fail to tell us (a 5xx after the write, a store outage
after its 201); a retry under the same Idempotency-Key must find that event, not make a
second one. Changes made inside Vyte may meet ours halfway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import pytest

from service import keys
from service.bookings import BookingService
from service.notify.reconciler import Reconciler
from service.store.base import StoreUnavailable
from tests.conftest import AUTH, JOHN, OTHER_TOKEN, upstream_calls
from tests.dates import iso
from tests.integration.conftest import Receiver
from tests.integration.test_webhooks import (
    HOOK_TOKEN,
    MEETING_DAY,
    booking,
    hook_into,
    wait_operation,
)

OTHER = {"Authorization": f"Bearer {OTHER_TOKEN}"}
ASYNC = {**AUTH, "Prefer": "respond-async"}


async def vyte_events(admin: aiohttp.ClientSession, day: str) -> list[dict[str, Any]]:
    async with admin.get("_sandbox/events") as resp:
        return [e for e in await resp.json() if e["dates"][0]["date"].startswith(day)]


async def stored_then_failed(admin: aiohttp.ClientSession, status: int = 503) -> None:
    """The next event create is stored by Vyte, which then answers `status`."""
    await admin.post(
        "_sandbox/faults",
        json={"status": status, "apply": True, "count": 1, "path": "/v2/events", "method": "POST"},
    )


async def settled(
    gw: Any, body: dict[str, Any], headers: dict[str, str], timeout: float = 10
) -> aiohttp.ClientResponse:
    """The answer to a keyed retry once the first try's unknown outcome is decided: until
    then the key is in flight (409 with Retry-After)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        resp = await gw.post("/v1/bookings", json=body, headers=headers)
        if resp.status != 409:
            return resp
        assert (await resp.json())["type"] == "/problems/idempotency-key-in-flight"
        assert "Retry-After" in resp.headers
        assert asyncio.get_running_loop().time() < deadline, "the outcome was never decided"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("check_availability", [True, False])
@pytest.mark.parametrize("status", [500, 503])
async def test_keyed_retry_after_a_5xx_replays_the_event_vyte_stored(
    gateway_factory: Callable[..., Awaitable[Any]],
    sandbox_admin: aiohttp.ClientSession,
    check_availability: bool,
    status: int,
) -> None:
    gw = await gateway_factory(unknown_outcome_timeout=5)
    await stored_then_failed(sandbox_admin, status)
    headers = {**AUTH, "Idempotency-Key": "lost-answer"}
    body = booking(None, check_availability=check_availability)
    first = await gw.post("/v1/bookings", json=body, headers=headers)
    assert first.status in (502, 503)
    (event,) = await vyte_events(sandbox_admin, str(MEETING_DAY))

    second = await settled(gw, body, headers)
    assert second.status == 201, await second.text()
    assert second.headers["Idempotent-Replayed"] == "true"  # the reconciler's answer
    assert (await second.json())["id"] == event["_id"]
    third = await gw.post("/v1/bookings", json=body, headers=headers)
    assert third.headers["Idempotent-Replayed"] == "true"
    assert await third.json() == await second.json()
    assert await upstream_calls(sandbox_admin, "POST /v2/events") == 1
    assert len(await vyte_events(sandbox_admin, str(MEETING_DAY))) == 1


async def test_an_unknown_outcome_keeps_its_hold_past_the_plain_lapse(
    gateway_factory: Callable[..., Awaitable[Any]],
    sandbox_admin: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A plain hold lapses after 0.2 s here; the reconciler looks only once let.
    monkeypatch.setattr(BookingService, "hold_ttl", property(lambda self: 0.2))
    gate = asyncio.Event()
    monkeypatch.setattr(Reconciler, "run_once", _gated(gate, Reconciler.run_once))
    gw = await gateway_factory(unknown_outcome_timeout=5)
    await stored_then_failed(sandbox_admin, 500)
    body = booking(None, check_availability=False)
    assert (await gw.post("/v1/bookings", json=body, headers=AUTH)).status == 502
    await asyncio.sleep(0.4)
    store = gw.app[keys.STORE]
    start = datetime.fromisoformat(body["start"])
    # Nobody else takes the slot meanwhile, and the booking takes it over without a gap.
    assert not await store.acquire_hold(JOHN, start, start + timedelta(hours=1), "other", 60)
    original = store.finish_unresolved
    intruded: list[bool] = []

    async def finish_then_intrude(record_id: str, **kwargs: Any) -> bool:
        finished = bool(await original(record_id, **kwargs))
        end = start + timedelta(hours=1)
        intruded.append(await store.acquire_hold(JOHN, start, end, "intruder", 60))
        return finished

    monkeypatch.setattr(store, "finish_unresolved", finish_then_intrude)
    gate.set()
    deadline = asyncio.get_running_loop().time() + 10
    while not intruded:
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    assert intruded == [False]
    (event,) = await vyte_events(sandbox_admin, str(MEETING_DAY))
    assert (await store.get_booking(event["_id"])).caller == "alpha"
    assert await upstream_calls(sandbox_admin, "POST /v2/events") == 1


def _gated(gate: asyncio.Event, run_once: Callable[[Any], Awaitable[int]]) -> Any:
    """`run_once` that does nothing until `gate` is set."""

    async def gated(self: Any) -> int:
        return await run_once(self) if gate.is_set() else 0

    return gated


async def test_keyed_retry_after_a_plain_failure_creates_the_event_once_decided_absent(
    gateway_factory: Callable[..., Awaitable[Any]], sandbox_admin: aiohttp.ClientSession
) -> None:
    # Vyte fails without storing anything; the gateway cannot know, so it looks for the
    # whole UNKNOWN_OUTCOME_TIMEOUT, then lets the retry create the event.
    gw = await gateway_factory(unknown_outcome_timeout=1)
    await sandbox_admin.post(
        "_sandbox/faults", json={"status": 500, "count": 1, "path": "/v2/events", "method": "POST"}
    )
    headers = {**AUTH, "Idempotency-Key": "plain-failure"}
    assert (await gw.post("/v1/bookings", json=booking(None), headers=headers)).status == 502
    assert await vyte_events(sandbox_admin, str(MEETING_DAY)) == []
    retried = await settled(gw, booking(None), headers)
    assert retried.status == 201
    assert [e["_id"] for e in await vyte_events(sandbox_admin, str(MEETING_DAY))] == [
        (await retried.json())["id"]
    ]


async def test_without_a_key_an_uncertain_create_blocks_the_slot_instead_of_resending(
    gateway: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    await stored_then_failed(sandbox_admin)
    assert (await gateway.post("/v1/bookings", json=booking(None), headers=AUTH)).status == 503
    again = await gateway.post("/v1/bookings", json=booking(None), headers=AUTH)
    assert again.status == 409
    assert len(await vyte_events(sandbox_admin, str(MEETING_DAY))) == 1


async def test_a_refused_create_frees_the_slot_at_once(
    gateway: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    await sandbox_admin.post(
        "_sandbox/faults",
        json={"status": 429, "retry_after": 1, "count": 1, "path": "/v2/events", "method": "POST"},
    )
    assert (await gateway.post("/v1/bookings", json=booking(None), headers=AUTH)).status == 503
    assert (await gateway.post("/v1/bookings", json=booking(None), headers=AUTH)).status == 201


async def test_keyed_retry_after_the_store_failed_records_the_event_once(
    gateway_factory: Callable[..., Awaitable[Any]],
    sandbox_admin: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gw = await gateway_factory(unknown_outcome_timeout=5)
    store = gw.app[keys.STORE]
    original = store.finish_unresolved
    failures = [StoreUnavailable("the store went away")]

    async def finish_unresolved(*args: Any, **kwargs: Any) -> bool:
        if failures and kwargs.get("booking") is not None:
            raise failures.pop()
        return bool(await original(*args, **kwargs))

    monkeypatch.setattr(store, "finish_unresolved", finish_unresolved)
    headers = {**AUTH, "Idempotency-Key": "store-blip"}
    first = await gw.post("/v1/bookings", json=booking(None), headers=headers)
    assert first.status == 503
    (event,) = await vyte_events(sandbox_admin, str(MEETING_DAY))
    second = await settled(gw, booking(None), headers)
    assert second.status == 201
    assert (await second.json())["id"] == event["_id"]
    assert (await store.get_booking(event["_id"])).caller == "alpha"
    assert await upstream_calls(sandbox_admin, "POST /v2/events") == 1


async def test_a_success_whose_replay_could_not_be_kept_is_still_a_success(
    gateway: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = gateway.app[keys.STORE]

    async def finish_idempotent(*args: Any, **kwargs: Any) -> None:
        raise StoreUnavailable("the store went away")

    monkeypatch.setattr(store, "finish_idempotent", finish_idempotent)
    headers = {**AUTH, "Idempotency-Key": "replay-lost"}
    created = await gateway.post("/v1/bookings", json=booking(None), headers=headers)
    assert created.status == 201
    booking_id = (await created.json())["id"]
    assert (await gateway.get(f"/v1/bookings/{booking_id}", headers=AUTH)).status == 200
    # Until its lease ends, the key is still marked in flight.
    again = await gateway.post("/v1/bookings", json=booking(None), headers=headers)
    assert again.status == 409 and "Retry-After" in again.headers


async def test_async_create_never_returns_another_callers_booking(
    gateway: Any, sandbox_admin: aiohttp.ClientSession, receiver: Receiver
) -> None:
    mine = await gateway.post("/v1/bookings", json=booking(None), headers=AUTH)
    assert mine.status == 201
    theirs = await gateway.post(
        "/v1/bookings",
        json=booking(receiver.url),
        headers={**OTHER, "Prefer": "respond-async"},
    )
    assert theirs.status == 202
    op = await (await gateway.get(theirs.headers["Location"], headers=OTHER)).json()
    deadline = asyncio.get_running_loop().time() + 10
    while op["status"] == "pending":
        assert asyncio.get_running_loop().time() < deadline, op
        await asyncio.sleep(0.05)
        op = await (await gateway.get(theirs.headers["Location"], headers=OTHER)).json()
    assert op["status"] == "failed" and op["last_error"].startswith("409 slot-unavailable")
    assert op["booking_id"] is None
    await receiver.wait_for(1)
    assert [b["type"] for b in receiver.bodies()] == ["operation.failed"]
    assert len(await vyte_events(sandbox_admin, str(MEETING_DAY))) == 1
    # Operations belong to the caller that handed them over.
    assert (await gateway.get(theirs.headers["Location"], headers=AUTH)).status == 404


async def test_async_create_never_takes_an_event_another_request_is_recording(
    gateway_factory: Callable[..., Awaitable[Any]],
    sandbox_admin: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gw = await gateway_factory(retry_base=0.05, retry_cap=0.1)
    store = gw.app[keys.STORE]
    original = store.put_booking

    async def slow_for_beta(record: Any, **kwargs: Any) -> bool:
        if record.caller == "beta" and record.version == 1:
            await asyncio.sleep(0.7)  # between Vyte's 201 and beta's own record
        return bool(await original(record, **kwargs))

    monkeypatch.setattr(store, "put_booking", slow_for_beta)
    body = booking(None, check_availability=False)
    beta = asyncio.ensure_future(gw.post("/v1/bookings", json=body, headers=OTHER))
    await asyncio.sleep(0.3)
    accepted = await gw.post("/v1/bookings", json=body, headers=ASYNC)
    op = await wait_operation(gw, accepted.headers["Location"])
    assert op["status"] == "failed" and op["last_error"].startswith("409 slot-unavailable")
    answer = await beta
    assert answer.status == 201
    recorded = await store.get_booking((await answer.json())["id"])
    assert recorded.caller == "beta"
    assert len(await vyte_events(sandbox_admin, str(MEETING_DAY))) == 1


async def test_fractional_seconds_are_dropped_so_a_lost_create_is_found_again(
    gateway_factory: Callable[..., Awaitable[Any]], sandbox_admin: aiohttp.ClientSession
) -> None:
    gw = await gateway_factory(retry_base=0.05, retry_cap=0.2)
    await stored_then_failed(sandbox_admin)
    start = iso(MEETING_DAY, "10:00", "Europe/Paris")
    body = booking(None, check_availability=False, start=start.replace(":00:00", ":00:00.5"))
    resp = await gw.post("/v1/bookings", json=body, headers=ASYNC)
    op = await wait_operation(gw, resp.headers["Location"])
    assert op["status"] == "succeeded"
    made = await (await gw.get(f"/v1/bookings/{op['booking_id']}", headers=AUTH)).json()
    assert made["start"] == start
    assert await upstream_calls(sandbox_admin, "POST /v2/events") == 1


async def test_confirming_what_was_cancelled_inside_vyte(
    gateway_factory: Callable[..., Awaitable[Any]], sandbox_admin: aiohttp.ClientSession
) -> None:
    gw = await gateway_factory(retry_base=0.05, retry_cap=0.1)
    created = await (await gw.post("/v1/bookings", json=booking(None), headers=AUTH)).json()
    async with sandbox_admin.post(f"_sandbox/events/{created['id']}/cancel") as resp:
        assert resp.status == 200

    confirm = await gw.post(f"/v1/bookings/{created['id']}/confirm", headers=AUTH)
    assert confirm.status == 409
    assert (await confirm.json())["type"] == "/problems/booking-cancelled"
    read = await (await gw.get(f"/v1/bookings/{created['id']}", headers=AUTH)).json()
    assert (read["status"], read["version"]) == ("cancelled", 2)


async def test_async_confirm_of_a_booking_cancelled_inside_vyte_fails_and_unblocks(
    gateway_factory: Callable[..., Awaitable[Any]], sandbox_admin: aiohttp.ClientSession
) -> None:
    gw = await gateway_factory(retry_base=0.05, retry_cap=0.1)
    created = await (await gw.post("/v1/bookings", json=booking(None), headers=AUTH)).json()
    async with sandbox_admin.post(f"_sandbox/events/{created['id']}/cancel") as resp:
        assert resp.status == 200
    confirm = await gw.post(f"/v1/bookings/{created['id']}/confirm", headers=ASYNC)
    cancel = await gw.post(f"/v1/bookings/{created['id']}/cancel", headers=ASYNC)
    confirmed = await wait_operation(gw, confirm.headers["Location"])
    assert confirmed["status"] == "failed"
    assert confirmed["last_error"].startswith("409 booking-cancelled")
    cancelled = await wait_operation(gw, cancel.headers["Location"])
    assert cancelled["status"] == "succeeded"
    read = await (await gw.get(f"/v1/bookings/{created['id']}", headers=AUTH)).json()
    assert read["status"] == "cancelled"


async def test_vytes_hook_arriving_before_our_own_record_keeps_the_callers_fields(
    gateway_factory: Callable[..., Awaitable[Any]],
    sandbox_admin: aiohttp.ClientSession,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gw = await gateway_factory(vyte_webhook_token=HOOK_TOKEN)
    await hook_into(sandbox_admin, str(gw.make_url(f"/v1/vyte/webhooks/{HOOK_TOKEN}")))
    store = gw.app[keys.STORE]
    original = store.finish_unresolved

    async def late_for_our_own_record(record_id: str, **kwargs: Any) -> bool:
        if kwargs.get("booking") is not None:
            await asyncio.sleep(0.5)  # Vyte's event.created hook is adopted meanwhile
        return bool(await original(record_id, **kwargs))

    monkeypatch.setattr(store, "finish_unresolved", late_for_our_own_record)
    resp = await gw.post(
        "/v1/bookings", json=booking(receiver.url, message="Bring the script"), headers=AUTH
    )
    assert resp.status == 201
    answer = await resp.json()
    assert answer["callback_url"] == receiver.url
    assert answer["version"] == 2  # adopted, then completed with the request's fields
    stored = await store.get_booking(answer["id"])
    assert stored.caller == "alpha" and stored.message == "Bring the script"
    await receiver.wait_for(1)
    assert [b["type"] for b in receiver.bodies()] == ["booking.requested"]

"""The gateway against Vyte's documented quirks (vyte-api.md, "Details that matter for
fidelity"): both hook-list shapes, multi-date events, creates answered already confirmed."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest

from service import keys, metrics
from service.notify import inbound
from service.sandbox import SANDBOX_API_KEY
from tests.conftest import AUTH, JOHN, GatewayFactory
from tests.dates import at, iso, meeting_day, zulu
from tests.integration.conftest import Receiver

VYTE = {"Authorization": SANDBOX_API_KEY}
HOOK_TOKEN = "fidelity-hook-token-0123456"
TARGET = f"http://127.0.0.1:1/v1/vyte/webhooks/{HOOK_TOKEN}"
ACTIONS = ["event.cancelled", "event.confirmed", "event.created", "event.updated"]
PARIS = "Europe/Paris"


async def vyte_hooks(admin: aiohttp.ClientSession) -> list[dict[str, Any]]:
    """The hooks registered in the sandbox, whichever shape it answers in."""
    async with admin.get("v2/hooks", headers=VYTE) as r:
        listed = await r.json()
    hooks: list[dict[str, Any]] = listed["hooks"] if isinstance(listed, dict) else listed
    return hooks


async def registered(gw: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while gw.app[keys.HEALTH].hooks != "ok":
        assert time.monotonic() < deadline, gw.app[keys.HEALTH].hooks
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("shape", ["array", "object"])
async def test_either_hook_list_shape_registers_once_across_restarts(
    shape: str, gateway_factory: GatewayFactory, sandbox_admin: aiohttp.ClientSession
) -> None:
    resp = await sandbox_admin.patch("_sandbox/settings", json={"hook_list_shape": shape})
    assert resp.status == 200
    async with sandbox_admin.get("v2/hooks", headers=VYTE) as r:
        assert isinstance(await r.json(), dict if shape == "object" else list)
    settings = {"public_url": "http://127.0.0.1:1", "vyte_webhook_token": HOOK_TOKEN}
    for _ in range(2):  # a first start, then a restart that finds the hooks in place
        gw = await gateway_factory(**settings)
        await registered(gw)
        ready = await (await gw.get("/readyz")).json()
        assert ready["checks"]["hooks"] == "ok"
        assert metrics.HOOKS_REGISTERED._value.get() == 1
        await gw.close()
    listed = await vyte_hooks(sandbox_admin)
    assert sorted(h["action"] for h in listed) == ACTIONS
    assert {h["target_url"] for h in listed} == {TARGET}


async def test_failed_registrations_are_retried_logged_and_counted(
    gateway_factory: GatewayFactory,
    sandbox_admin: aiohttp.ClientSession,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(inbound, "HOOK_RETRY_BASE", 0.02)
    failures = metrics.HOOK_REGISTRATION_FAILURES.labels("server_error")
    before = failures._value.get()
    fault = {"status": 500, "count": 2, "path": "/v2/hooks", "method": "GET"}
    assert (await sandbox_admin.post("_sandbox/faults", json=fault)).status < 300
    gw = await gateway_factory(public_url="http://127.0.0.1:1", vyte_webhook_token=HOOK_TOKEN)
    await registered(gw)
    assert failures._value.get() - before == 2
    assert capsys.readouterr().out.count("hook_registration_failed") == 2
    assert sorted(h["action"] for h in await vyte_hooks(sandbox_admin)) == ACTIONS


async def make_event(admin: aiohttp.ClientSession, *clocks: str) -> dict[str, Any]:
    """An event made inside Vyte by John, with one date per starting `clocks` (an hour each)."""
    day = meeting_day(1)
    body = {
        "title": "Planned in Vyte",
        "created_by": {"user": JOHN},
        "dates": [
            {
                "all_day": False,
                "date": zulu(at(day, clock, "UTC")),
                "end_date": zulu(at(day, clock, "UTC").replace(minute=59)),
            }
            for clock in clocks
        ],
        "invitees": [{"email": "guest@example.com"}],
    }
    async with admin.post("v2/events", headers=VYTE, json=body) as r:
        assert r.status in (200, 201), await r.text()
        event: dict[str, Any] = await r.json()
    return event


async def test_a_multi_date_event_takes_its_times_from_the_confirmed_date(
    gateway_factory: GatewayFactory, sandbox_admin: aiohttp.ClientSession
) -> None:
    gw = await gateway_factory(vyte_webhook_token=HOOK_TOKEN)
    store = gw.app[keys.STORE]
    event = await make_event(sandbox_admin, "09:00", "15:00")
    first, second = event["dates"]
    note = {"action": "event.created", "organization": "o", "resource": {"_id": event["_id"]}}
    assert (await gw.post(f"/v1/vyte/webhooks/{HOOK_TOKEN}", json=note)).status == 204
    requested = await store.get_booking(event["_id"])
    # No date chosen yet: the first one.
    assert (zulu(requested.start), zulu(requested.end)) == (first["date"], first["end_date"])

    resp = await sandbox_admin.post(f"_sandbox/events/{event['_id']}/confirm?d={second['_id']}")
    confirmed_event = await resp.json()
    assert confirmed_event["confirmed"]["date_id"] == second["_id"]
    assert confirmed_event["dates"][0]["_id"] == first["_id"]  # Vyte keeps the order
    note = {"action": "event.confirmed", "organization": "o", "resource": {"_id": event["_id"]}}
    assert (await gw.post(f"/v1/vyte/webhooks/{HOOK_TOKEN}", json=[note])).status == 204
    confirmed = await store.get_booking(event["_id"])
    assert confirmed.status.value == "confirmed"
    assert (zulu(confirmed.start), zulu(confirmed.end)) == (second["date"], second["end_date"])


def booking_body(callback: str) -> dict[str, Any]:
    return {
        "organizer": JOHN,
        "title": "Booked on an auto-confirm page",
        "start": iso(meeting_day(), "10:00", PARIS),
        "duration": 30,
        "timezone": PARIS,
        "invitees": [{"full_name": "Guest", "email": "guest@example.com"}],
        "callback_url": callback,
    }


async def test_a_create_answered_confirmed_is_recorded_and_announced_once_as_confirmed(
    gateway_factory: GatewayFactory, sandbox_admin: aiohttp.ClientSession, receiver: Receiver
) -> None:
    resp = await sandbox_admin.patch(f"_sandbox/users/{JOHN}", json={"auto_confirm": True})
    assert resp.status == 200
    gw = await gateway_factory(vyte_webhook_token=HOOK_TOKEN)
    resp = await gw.post("/v1/bookings", json=booking_body(receiver.url), headers=AUTH)
    assert resp.status == 201, await resp.text()
    created = await resp.json()
    assert created["status"] == "confirmed"
    async with sandbox_admin.get(f"v2/events/{created['id']}", headers=VYTE) as r:
        assert (await r.json())["confirmed"]["flag"] is True
    read = await (await gw.get(f"/v1/bookings/{created['id']}", headers=AUTH)).json()
    assert (read["status"], read["version"]) == ("confirmed", created["version"])

    # Vyte's own hook for the confirm (or a replay of it) announces nothing more.
    note = {"action": "event.confirmed", "organization": "o", "resource": {"_id": created["id"]}}
    assert (await gw.post(f"/v1/vyte/webhooks/{HOOK_TOKEN}", json=note)).status == 204
    await receiver.wait_for(1)
    await asyncio.sleep(0.3)
    assert [b["type"] for b in receiver.bodies()] == ["booking.confirmed"]
    assert receiver.bodies()[0]["data"]["status"] == "confirmed"


@pytest.mark.parametrize("batch", [False, True])
async def test_hooks_vyte_sends_as_an_object_or_an_array_are_applied(
    batch: bool,
    gateway_factory: GatewayFactory,
    sandbox_admin: aiohttp.ClientSession,
    receiver: Receiver,
) -> None:
    await sandbox_admin.patch("_sandbox/settings", json={"hook_batch": batch})
    gw = await gateway_factory(vyte_webhook_token=HOOK_TOKEN)
    # The test server's port is known only once it runs: register its hooks by hand.
    target = str(gw.make_url(f"/v1/vyte/webhooks/{HOOK_TOKEN}"))
    assert await inbound.register_hooks(gw.app[keys.VYTE], target) == len(ACTIONS)
    created = await (
        await gw.post("/v1/bookings", json=booking_body(receiver.url), headers=AUTH)
    ).json()
    await sandbox_admin.post(f"_sandbox/events/{created['id']}/confirm")
    async with sandbox_admin.post("_sandbox/deliveries/drain") as r:
        delivered = (await r.json())["deliveries"]
    assert [(d["action"], d["status"]) for d in delivered][-1] == ("event.confirmed", 204)
    await receiver.wait_for(2)
    assert [b["type"] for b in receiver.bodies()] == ["booking.requested", "booking.confirmed"]

"""Webhook-style work: signed outbound deliveries, retries, subscriptions, inbound Vyte
hooks and asynchronous operations, against the sandbox and a receiver on loopback."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import attrs
import pytest

from service.sandbox import SANDBOX_API_KEY
from tests.conftest import ADMIN_AUTH, AUTH, JOHN, upstream_calls
from tests.dates import at, iso, meeting_day, zulu
from tests.integration.conftest import Receiver

VYTE = {"Authorization": SANDBOX_API_KEY}
SECRET_A = b"first-secret-bytes-0123456789"
SECRET_B = b"second-secret-bytes-abcdefghij"
WHSEC = (SECRET_A, SECRET_B)
HOOK_TOKEN = "inbound-token-0123456789"
PARIS = "Europe/Paris"
MEETING_DAY = meeting_day()
MOVED = at(MEETING_DAY, "14:00", PARIS)
"""Where Vyte moves the meeting to."""


def verify(secret: bytes, headers: Any, body: bytes, tolerance: int = 300) -> bool:
    """Standard Webhooks verification, written from the spec for these tests."""
    msg_id = headers["webhook-id"]
    timestamp = headers["webhook-timestamp"]
    if abs(time.time() - int(timestamp)) > tolerance:
        return False
    signed = msg_id.encode() + b"." + timestamp.encode() + b"." + body
    expected = base64.b64encode(hmac.new(secret, signed, hashlib.sha256).digest())
    for part in headers["webhook-signature"].split(" "):
        version, _, sig = part.partition(",")
        if version == "v1" and hmac.compare_digest(sig.encode(), expected):
            return True
    return False


def booking(callback: str | None, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "organizer": JOHN,
        "title": "Meeting with Quentin Tarantino",
        "start": iso(MEETING_DAY, "10:00", PARIS),
        "duration": 60,
        "timezone": "Europe/Paris",
        "invitees": [
            {"full_name": "Quentin Tarantino", "email": "quentin.tarantino@hollywood.com"}
        ],
    }
    if callback:
        body["callback_url"] = callback
    body.update(changes)
    return body


def test_independent_verifier_agrees_with_our_signatures() -> None:
    from service.domain.signatures import signature_header

    body = '{"type":"booking.confirmed"}'
    ts = int(time.time())
    header = signature_header(WHSEC, "msg_1", ts, body)
    headers = {"webhook-id": "msg_1", "webhook-timestamp": str(ts), "webhook-signature": header}
    assert len(header.split(" ")) == 2
    assert verify(SECRET_A, headers, body.encode())
    assert verify(SECRET_B, headers, body.encode())
    assert not verify(b"another-secret", headers, body.encode())
    assert not verify(SECRET_A, headers, body.replace("confirmed", "cancelled").encode())
    assert not verify(SECRET_A, {**headers, "webhook-id": "msg_2"}, body.encode())


async def test_booking_changes_are_delivered_signed_and_in_order(
    gateway_factory: Callable[..., Awaitable[Any]], receiver: Receiver
) -> None:
    gw = await gateway_factory(webhook_secrets=WHSEC)
    created = await (await gw.post("/v1/bookings", json=booking(receiver.url), headers=AUTH)).json()
    path = f"/v1/bookings/{created['id']}"
    await gw.post(f"{path}/confirm", headers=AUTH)
    await gw.post(f"{path}/cancel", headers=AUTH)
    await receiver.wait_for(3)
    types = [b["type"] for b in receiver.bodies()]
    assert types == ["booking.requested", "booking.confirmed", "booking.cancelled"]
    assert [b["data"]["version"] for b in receiver.bodies()] == [1, 2, 3]
    ids = set()
    for headers, body in receiver.received:
        assert verify(SECRET_A, headers, body) and verify(SECRET_B, headers, body)
        ids.add(headers["webhook-id"])
    assert len(ids) == 3
    assert receiver.bodies()[1]["data"]["status"] == "confirmed"


async def test_retries_keep_the_webhook_id_then_fail_and_redeliver(
    gateway_factory: Callable[..., Awaitable[Any]], receiver: Receiver
) -> None:
    gw = await gateway_factory(webhook_secrets=WHSEC, webhook_retry_schedule=(0.05, 0.05))
    receiver.script = [500, 503]
    await gw.post("/v1/bookings", json=booking(receiver.url), headers=AUTH)
    await receiver.wait_for(1)
    assert receiver.attempts == 3

    receiver.script = [500, 500, 500]
    created = await (
        await gw.post(
            "/v1/bookings",
            json=booking(receiver.url, start=iso(MEETING_DAY, "14:00", PARIS)),
            headers=AUTH,
        )
    ).json()
    deadline = time.monotonic() + 10
    while True:
        failed = (await (await gw.get("/v1/deliveries?status=failed", headers=AUTH)).json())[
            "deliveries"
        ]
        if failed:
            break
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    (entry,) = failed
    assert entry["booking_id"] == created["id"] and entry["attempts"] == 3
    assert entry["last_error"] == "receiver answered 500"

    retried = await gw.post(f"/v1/deliveries/{entry['id']}/retry", headers=AUTH)
    assert retried.status == 202
    await receiver.wait_for(2)
    headers, _ = receiver.received[1]
    assert headers["webhook-id"] == entry["id"]
    missing = await gw.post("/v1/deliveries/msg_nope/retry", headers=AUTH)
    assert missing.status == 404


async def test_subscriptions_receive_matching_events(gateway: Any, receiver: Receiver) -> None:
    bad = await gateway.post(
        "/v1/subscriptions", json={"url": receiver.url, "events": ["booking.moved"]}, headers=AUTH
    )
    assert bad.status == 400
    resp = await gateway.post(
        "/v1/subscriptions",
        json={"url": receiver.url, "events": ["booking.confirmed"]},
        headers=AUTH,
    )
    assert resp.status == 201
    sub = await resp.json()
    listed = await (await gateway.get("/v1/subscriptions", headers=AUTH)).json()
    assert [s["id"] for s in listed["subscriptions"]] == [sub["id"]]

    created = await (await gateway.post("/v1/bookings", json=booking(None), headers=AUTH)).json()
    await gateway.post(f"/v1/bookings/{created['id']}/confirm", headers=AUTH)
    await receiver.wait_for(1)
    await asyncio.sleep(0.3)
    assert [b["type"] for b in receiver.bodies()] == ["booking.confirmed"]

    assert (await gateway.delete(f"/v1/subscriptions/{sub['id']}", headers=AUTH)).status == 204
    assert (await gateway.delete(f"/v1/subscriptions/{sub['id']}", headers=AUTH)).status == 404


async def test_callback_hosts_are_enforced(gateway_factory: Callable[..., Awaitable[Any]]) -> None:
    gw = await gateway_factory(callback_hosts=("*.internal",))
    resp = await gw.post("/v1/bookings", json=booking("https://evil.example.com/x"), headers=AUTH)
    assert resp.status == 400
    assert "callback_url" in [e["field"] for e in (await resp.json(content_type=None))["errors"]]
    ok = await gw.post(
        "/v1/bookings",
        json=booking("https://crm.internal/x", check_availability=False),
        headers=AUTH,
    )
    assert ok.status == 201


async def hook_into(admin: aiohttp.ClientSession, target: str) -> None:
    for action in ("event.created", "event.confirmed", "event.cancelled", "event.updated"):
        async with admin.post(
            "v2/hooks", json={"action": action, "target_url": target}, headers=VYTE
        ) as r:
            assert r.status == 201


async def test_changes_inside_vyte_reach_callers(
    gateway_factory: Callable[..., Awaitable[Any]],
    receiver: Receiver,
    sandbox_admin: aiohttp.ClientSession,
) -> None:
    gw = await gateway_factory(vyte_webhook_token=HOOK_TOKEN, webhook_secrets=WHSEC)
    assert (await gw.post("/v1/vyte/webhooks/wrong-token", json={})).status == 404
    await hook_into(sandbox_admin, str(gw.make_url(f"/v1/vyte/webhooks/{HOOK_TOKEN}")))

    created = await (await gw.post("/v1/bookings", json=booking(receiver.url), headers=AUTH)).json()
    async with sandbox_admin.post(f"_sandbox/events/{created['id']}/confirm") as r:
        assert r.status == 200
    await receiver.wait_for(2)
    assert receiver.bodies()[-1]["type"] == "booking.confirmed"
    read = await (await gw.get(f"/v1/bookings/{created['id']}", headers=AUTH)).json()
    assert (read["status"], read["version"]) == ("confirmed", 2)

    async with sandbox_admin.put(
        f"v2/events/{created['id']}",
        json={
            "dates": [
                {
                    "all_day": False,
                    "date": zulu(MOVED),
                    "end_date": zulu(MOVED + timedelta(hours=1)),
                }
            ]
        },
        headers=VYTE,
    ) as r:
        assert r.status == 200
    await receiver.wait_for(3)
    moved = receiver.bodies()[-1]
    assert moved["type"] == "booking.updated"
    assert moved["data"]["start"] == MOVED.isoformat()

    async with sandbox_admin.post(f"_sandbox/events/{created['id']}/cancel") as r:
        assert r.status == 200
    await receiver.wait_for(4)
    assert receiver.bodies()[-1]["type"] == "booking.cancelled"

    # A late or replayed "confirmed" changes nothing: Vyte says cancelled, and that is terminal.
    async with sandbox_admin.get(f"v2/events/{created['id']}", headers=VYTE) as r:
        event = await r.json()
    late = {"action": "event.confirmed", "organization": "o", "resource": event}
    for body in (late, [late, late]):
        assert (await gw.post(f"/v1/vyte/webhooks/{HOOK_TOKEN}", json=body)).status == 204
    final = await (await gw.get(f"/v1/bookings/{created['id']}", headers=AUTH)).json()
    assert (final["status"], final["version"]) == ("cancelled", 4)
    await asyncio.sleep(0.3)
    assert len(receiver.received) == 4


async def test_one_notification_carrying_two_changes_applies_both(
    gateway_factory: Callable[..., Awaitable[Any]],
    receiver: Receiver,
    sandbox_admin: aiohttp.ClientSession,
) -> None:
    # No hooks registered: the gateway hears of both changes through one late notification.
    gw = await gateway_factory(vyte_webhook_token=HOOK_TOKEN)
    created = await (await gw.post("/v1/bookings", json=booking(receiver.url), headers=AUTH)).json()
    async with sandbox_admin.post(f"_sandbox/events/{created['id']}/confirm") as r:
        assert r.status == 200
    moved_dates = [
        {
            "all_day": False,
            "date": zulu(MOVED),
            "end_date": zulu(MOVED + timedelta(hours=1)),
        }
    ]
    async with sandbox_admin.put(
        f"v2/events/{created['id']}", json={"dates": moved_dates}, headers=VYTE
    ) as r:
        assert r.status == 200
    note = {"action": "event.updated", "organization": "o", "resource": {"_id": created["id"]}}
    assert (await gw.post(f"/v1/vyte/webhooks/{HOOK_TOKEN}", json=note)).status == 204
    read = await (await gw.get(f"/v1/bookings/{created['id']}", headers=AUTH)).json()
    assert (read["status"], read["version"]) == ("confirmed", 3)
    assert read["start"] == MOVED.isoformat()
    await receiver.wait_for(3)
    assert [b["type"] for b in receiver.bodies()] == [
        "booking.requested",
        "booking.confirmed",
        "booking.updated",
    ]


async def test_events_made_in_vyte_are_adopted(
    gateway_factory: Callable[..., Awaitable[Any]], sandbox_admin: aiohttp.ClientSession
) -> None:
    gw = await gateway_factory(vyte_webhook_token=HOOK_TOKEN)
    async with sandbox_admin.post(
        "v2/events",
        headers=VYTE,
        json={
            "title": "Made in Vyte",
            "created_by": {"user": JOHN},
            "dates": [
                {
                    "all_day": False,
                    "date": zulu(at(meeting_day(1), "09:00", "UTC")),
                    "end_date": zulu(at(meeting_day(1), "10:00", "UTC")),
                }
            ],
            "invitees": [{"email": "z@example.com"}],
        },
    ) as r:
        event = await r.json()
    note = {"action": "event.created", "organization": "o", "resource": event}
    assert (await gw.post(f"/v1/vyte/webhooks/{HOOK_TOKEN}", json=[note])).status == 204
    assert (await gw.post(f"/v1/vyte/webhooks/{HOOK_TOKEN}", json=note)).status == 204
    read = await (await gw.get(f"/v1/bookings/{event['_id']}", headers=ADMIN_AUTH)).json()
    assert (read["title"], read["status"], read["version"]) == ("Made in Vyte", "requested", 1)
    bad = await gw.post(f"/v1/vyte/webhooks/{HOOK_TOKEN}", json={"action": 3})
    assert bad.status == 400


async def test_hooks_are_registered_once_at_start(
    gateway_factory: Callable[..., Awaitable[Any]], sandbox_admin: aiohttp.ClientSession
) -> None:
    settings = {"public_url": "http://127.0.0.1:1", "vyte_webhook_token": HOOK_TOKEN}

    async def hooks() -> list[dict[str, Any]]:
        async with sandbox_admin.get("v2/hooks", headers=VYTE) as r:
            listed: list[dict[str, Any]] = await r.json()
            return listed

    for _ in range(2):
        await gateway_factory(**settings)
        deadline = time.monotonic() + 5
        while len(await hooks()) < 4:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    listed = await hooks()
    assert sorted(h["action"] for h in listed) == [
        "event.cancelled",
        "event.confirmed",
        "event.created",
        "event.updated",
    ]
    assert {h["target_url"] for h in listed} == {
        f"http://127.0.0.1:1/v1/vyte/webhooks/{HOOK_TOKEN}"
    }


async def test_replicas_registering_together_leave_one_hook_per_action(
    gateway: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    from service import keys
    from service.notify.inbound import register_hooks

    target = f"http://127.0.0.1:1/v1/vyte/webhooks/{HOOK_TOKEN}"
    vyte = gateway.app[keys.VYTE]
    await asyncio.gather(*(register_hooks(vyte, target) for _ in range(3)))
    async with sandbox_admin.get("v2/hooks", headers=VYTE) as r:
        listed = await r.json()
    assert sorted(h["action"] for h in listed) == [
        "event.cancelled",
        "event.confirmed",
        "event.created",
        "event.updated",
    ]


async def wait_operation(gw: Any, location: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        op: dict[str, Any] = await (await gw.get(location, headers=AUTH)).json()
        if op["status"] != "pending":
            return op
        assert time.monotonic() < deadline, op
        await asyncio.sleep(0.05)


async def test_async_create_confirm_cancel(gateway: Any, receiver: Receiver) -> None:
    prefer = {**AUTH, "Prefer": "respond-async"}
    resp = await gateway.post("/v1/bookings", json=booking(receiver.url), headers=prefer)
    assert resp.status == 202
    location = resp.headers["Location"]
    accepted = await resp.json()
    assert location == f"/v1/operations/{accepted['id']}"
    assert (accepted["type"], accepted["status"]) == ("create", "pending")
    op = await wait_operation(gateway, location)
    assert op["status"] == "succeeded" and op["attempts"] == 1
    booking_id = op["booking_id"]

    for action, status in (("confirm", "confirmed"), ("cancel", "cancelled")):
        resp = await gateway.post(f"/v1/bookings/{booking_id}/{action}", headers=prefer)
        assert resp.status == 202
        op = await wait_operation(gateway, resp.headers["Location"])
        assert (op["type"], op["status"]) == (action, "succeeded")
        read = await (await gateway.get(f"/v1/bookings/{booking_id}", headers=AUTH)).json()
        assert read["status"] == status
    await receiver.wait_for(3)
    assert (await gateway.get("/v1/operations/op_missing", headers=AUTH)).status == 404
    invalid = await gateway.post("/v1/bookings", json=booking(None, title=""), headers=prefer)
    assert invalid.status == 400


async def test_async_create_survives_vyte_being_down_and_is_sent_once(
    gateway_factory: Callable[..., Awaitable[Any]], sandbox_admin: aiohttp.ClientSession
) -> None:
    gw = await gateway_factory(retry_base=0.05, retry_cap=0.2)
    # Vyte stores the event but the answer is lost, then Vyte is down twice.
    await sandbox_admin.post(
        "_sandbox/faults",
        json={"status": 503, "apply": True, "count": 1, "path": "/v2/events", "method": "POST"},
    )
    resp = await gw.post(
        "/v1/bookings",
        json=booking(None, check_availability=False),
        headers={**AUTH, "Prefer": "respond-async"},
    )
    op = await wait_operation(gw, resp.headers["Location"])
    assert op["status"] == "succeeded" and op["attempts"] == 2
    assert await upstream_calls(sandbox_admin, "POST /v2/events") == 1
    async with sandbox_admin.get("_sandbox/events") as r:
        events = await r.json()
    assert [e["_id"] for e in events] == [op["booking_id"]]


async def test_webhooks_carry_the_request_id_of_the_change(
    gateway: Any, receiver: Receiver
) -> None:
    sync = await gateway.post(
        "/v1/bookings",
        json=booking(receiver.url),
        headers={**AUTH, "X-Request-ID": "trace-sync"},
    )
    assert sync.status == 201
    accepted = await gateway.post(
        "/v1/bookings",
        json=booking(receiver.url, start=iso(MEETING_DAY, "16:00", PARIS)),
        headers={**AUTH, "X-Request-ID": "trace-async", "Prefer": "respond-async"},
    )
    assert accepted.status == 202
    op = await wait_operation(gateway, accepted.headers["Location"])
    await receiver.wait_for(2)
    by_booking = {json.loads(body)["data"]["id"]: headers for headers, body in receiver.received}
    assert by_booking[(await sync.json())["id"]]["X-Request-ID"] == "trace-sync"
    # The worker applied the operation later, under the id of the request that handed it over.
    assert by_booking[op["booking_id"]]["X-Request-ID"] == "trace-async"


async def test_permanent_async_failure_is_announced(
    gateway_factory: Callable[..., Awaitable[Any]], receiver: Receiver
) -> None:
    gw = await gateway_factory(retry_base=0.05)
    resp = await gw.post(
        "/v1/bookings",
        json=booking(receiver.url, organizer="nobody@example.com"),
        headers={**AUTH, "Prefer": "respond-async"},
    )
    op = await wait_operation(gw, resp.headers["Location"])
    assert op["status"] == "failed" and op["last_error"].startswith("400")
    await receiver.wait_for(1)
    (note,) = receiver.bodies()
    assert note["type"] == "operation.failed" and note["data"]["id"] == op["id"]


async def test_a_failure_announced_twice_after_a_crash_is_one_webhook(
    gateway: Any, receiver: Receiver
) -> None:
    """The worker enqueues operation.failed, then records the failure: a crash between the
    two writes makes it do both again, which must not make a second message."""
    from service import keys
    from service.errors import UnknownParticipant
    from service.http.requests import booking_command
    from service.notify.operations import new_operation
    from service.store.base import DeliveryStatus, OperationType

    store = gateway.app[keys.STORE]
    worker = gateway.app[keys.OPERATIONS]
    command = booking_command(booking(receiver.url), ())
    op = new_operation(OperationType.CREATE, "alpha", None, command)
    await store.add_operation(op)
    refusal = UnknownParticipant("Vyte does not know the organizer")
    await worker._failed_attempt(op, refusal)
    await worker._failed_attempt(op, refusal)  # the same pending state, as after a restart
    await receiver.wait_for(1)
    # The dispatcher may move the message from pending to delivered between two listings:
    # count messages, not listing rows.
    pending = await store.list_deliveries(DeliveryStatus.PENDING, 10)
    delivered = await store.list_deliveries(DeliveryStatus.DELIVERED, 10)
    assert len({d.id for d in pending + delivered}) == 1
    await asyncio.sleep(0.2)
    assert [b["type"] for b in receiver.bodies()] == ["operation.failed"]


async def test_idempotency_key_composes_with_async(
    gateway: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    headers = {**AUTH, "Prefer": "respond-async", "Idempotency-Key": "async-1"}
    first = await gateway.post("/v1/bookings", json=booking(None), headers=headers)
    second = await gateway.post("/v1/bookings", json=booking(None), headers=headers)
    assert first.status == second.status == 202
    assert second.headers["Idempotent-Replayed"] == "true"
    assert first.headers["Location"] == second.headers["Location"]
    await wait_operation(gateway, first.headers["Location"])
    assert await upstream_calls(sandbox_admin, "POST /v2/events") == 1


async def test_odd_requests_to_the_webhook_endpoints_are_400_not_500(gateway: Any) -> None:
    nested = "[" * 100_000 + "]" * 100_000
    deep = await gateway.post(
        "/v1/subscriptions",
        data=nested,
        headers={**AUTH, "Content-Type": "application/json"},
    )
    assert deep.status == 400
    null_url = await gateway.post(
        "/v1/subscriptions", json={"url": None, "events": ["booking.confirmed"]}, headers=AUTH
    )
    assert null_url.status == 400
    assert [e["field"] for e in (await null_url.json())["errors"]] == ["url"]
    for url in ("http://a..example.com/hook", "http://example.com:99999/hook"):
        bad_host = await gateway.post(
            "/v1/subscriptions", json={"url": url, "events": ["booking.confirmed"]}, headers=AUTH
        )
        assert bad_host.status == 400, url
    superscript = await gateway.get("/v1/deliveries?limit=\u00b2", headers=AUTH)
    assert superscript.status == 400


async def test_a_receiver_url_the_resolver_refuses_does_not_stop_other_deliveries(
    gateway: Any, receiver: Receiver
) -> None:
    from service import keys
    from tests.unit.test_store_contract import make_delivery

    # Stored before the stricter validation existed, say: the resolver cannot encode it.
    bad = attrs.evolve(
        make_delivery("msg_bad", url="http://" + "a" * 64 + ".example.com/hook", booking_id=None),
        next_attempt_at=datetime.now(UTC),
    )
    await gateway.app[keys.STORE].enqueue_deliveries([bad])
    gateway.app[keys.DISPATCHER].wake()
    await asyncio.sleep(0.2)
    created = await gateway.post("/v1/bookings", json=booking(receiver.url), headers=AUTH)
    assert created.status == 201
    await receiver.wait_for(1)
    stored = await gateway.app[keys.STORE].get_delivery("msg_bad")
    assert stored.attempts >= 1 and stored.last_error.startswith("unusable URL")


async def test_only_failed_deliveries_are_sent_again(gateway: Any, receiver: Receiver) -> None:
    created = await gateway.post("/v1/bookings", json=booking(receiver.url), headers=AUTH)
    assert created.status == 201
    await receiver.wait_for(1)
    listed = await (await gateway.get("/v1/deliveries?status=delivered", headers=AUTH)).json()
    (done,) = listed["deliveries"]
    again = await gateway.post(f"/v1/deliveries/{done['id']}/retry", headers=AUTH)
    assert again.status == 409
    await asyncio.sleep(0.2)
    assert len(receiver.received) == 1


async def test_deliveries_belong_to_the_caller_who_gave_the_url(
    gateway: Any, receiver: Receiver
) -> None:
    # An admin's subscription hears about alpha's booking, on the admin's own URL.
    other = ADMIN_AUTH
    subscribed = await gateway.post(
        "/v1/subscriptions",
        json={"url": receiver.url + "?as=admin", "events": ["booking.requested"]},
        headers=other,
    )
    assert subscribed.status == 201
    created = await gateway.post("/v1/bookings", json=booking(receiver.url), headers=AUTH)
    assert created.status == 201
    await receiver.wait_for(2)

    def urls(listing: dict[str, Any]) -> list[str]:
        return [d["url"] for d in listing["deliveries"]]

    alphas = await (await gateway.get("/v1/deliveries", headers=AUTH)).json()
    betas = await (await gateway.get("/v1/deliveries", headers=other)).json()
    assert urls(alphas) == [receiver.url]
    assert urls(betas) == [receiver.url + "?as=admin"]
    (mine,) = alphas["deliveries"]
    assert (await gateway.post(f"/v1/deliveries/{mine['id']}/retry", headers=other)).status == 404


@pytest.mark.parametrize(
    ("url", "logged"),
    [
        (
            "https://user:pw@hooks.example.com:8443/in?token=s3cr3t#x",
            "https://hooks.example.com:8443/in",
        ),
        ("http://hooks.example.com/in", "http://hooks.example.com/in"),
        ("http://hooks.example.com:99999/in", "(unparsable URL)"),
    ],
)
def test_failed_webhooks_are_logged_without_the_receivers_secrets(url: str, logged: str) -> None:
    from service.notify.dispatcher import _loggable

    assert _loggable(url) == logged

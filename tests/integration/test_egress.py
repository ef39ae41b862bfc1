"""Webhook egress through the running app: URLs refused on input, names resolved and judged at
delivery, CALLBACK_HOSTS applied to what is stored, receivers that cannot hold the others up.

Nothing here sends to an address off this machine: refusal of other addresses is tested on
input only (with the dispatcher stopped), delivery-time refusal with names that resolve to
loopback.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service import keys
from service.notify.dispatcher import Dispatcher
from service.notify.egress import DEFAULT_DENY_NETWORKS
from tests.conftest import AUTH, JOHN

Gateway = Any
GatewayFactory = Callable[..., Awaitable[Gateway]]


def booking(callback: str | None, slot: int = 0) -> dict[str, Any]:
    """A booking some weeks ahead, at its own hour (`slot`), created without a free-time check."""
    day = datetime.now(UTC).date() + timedelta(days=40)
    while day.weekday() >= 5:
        day += timedelta(days=1)
    start = datetime(day.year, day.month, day.day, 6, tzinfo=UTC) + timedelta(hours=slot)
    body: dict[str, Any] = {
        "organizer": JOHN,
        "title": "Egress check",
        "start": start.isoformat(),
        "duration": 30,
        "timezone": "Europe/Paris",
        "invitees": [{"full_name": "Ada Lovelace", "email": "ada@example.com"}],
        "check_availability": False,
    }
    if callback is not None:
        body["callback_url"] = callback
    return body


REFUSED_ADDRESSES = [
    "http://127.0.0.1/hook",
    "http://127.0.0.1:8080/hook",
    "http://127.1/hook",
    "http://0x7f000001/hook",
    "http://2130706433/hook",
    "http://0177.0.0.1/hook",
    "http://[::1]/hook",
    "http://[::ffff:127.0.0.1]/hook",
    "http://[::ffff:7f00:1]/hook",
    "http://[::127.0.0.1]/hook",
    "http://0.0.0.0/hook",
    "http://0/hook",
    "http://[::]/hook",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::ffff:169.254.169.254]/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://[fe80::1%25eth0]/hook",
    "http://224.0.0.1/hook",
    "https://user:pw@127.0.0.1./hook?token=t",
    "http://\u2460\u2461\u2466.0.0.1/hook",
]
REFUSED_OTHERWISE = [
    "ftp://example.com/hook",
    "file:///etc/passwd",
    "http://256.0.0.1/hook",
    "http://%31%32%37.0.0.1/hook",
    "http://example.0x7f/hook",
]


@pytest.fixture
async def silent_gateway(
    gateway_factory: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> Gateway:
    """A gateway with the default deny list whose dispatcher never sends anything: whatever
    it accepted by mistake cannot reach the address."""

    async def never(self: Dispatcher) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(Dispatcher, "run", never)
    return await gateway_factory(callback_deny_networks=DEFAULT_DENY_NETWORKS)


@pytest.mark.parametrize("url", REFUSED_ADDRESSES + REFUSED_OTHERWISE)
async def test_receiver_urls_are_refused_on_input_naming_the_field(
    silent_gateway: Gateway, url: str
) -> None:
    gw = silent_gateway
    expected = (
        "address is not allowed by CALLBACK_DENY_NETWORKS"
        if url in REFUSED_ADDRESSES
        else "must be an http(s) URL"
    )
    sub = await gw.post(
        "/v1/subscriptions", json={"url": url, "events": ["booking.requested"]}, headers=AUTH
    )
    if sub.status < 300:  # accepted by mistake: take it away before anything is enqueued
        await gw.delete(f"/v1/subscriptions/{(await sub.json())['id']}", headers=AUTH)
    assert sub.status == 400
    assert (await sub.json())["errors"] == [{"field": "url", "message": expected}]

    created = await gw.post("/v1/bookings", json=booking(url), headers=AUTH)
    if created.status < 300:
        await gw.post(f"/v1/bookings/{(await created.json())['id']}/cancel", headers=AUTH)
    assert created.status == 400
    assert (await created.json())["errors"] == [{"field": "callback_url", "message": expected}]

    assert await gw.app[keys.STORE].list_deliveries(None, 10) == []


async def test_the_same_urls_are_accepted_when_nothing_is_denied(
    gateway_factory: GatewayFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def never(self: Dispatcher) -> None:
        await asyncio.Event().wait()

    monkeypatch.setattr(Dispatcher, "run", never)
    gw = await gateway_factory(callback_deny_networks=())
    for url in REFUSED_ADDRESSES:
        sub = await gw.post(
            "/v1/subscriptions", json={"url": url, "events": ["booking.requested"]}, headers=AUTH
        )
        assert sub.status == 201, url
        assert (
            await gw.delete(f"/v1/subscriptions/{(await sub.json())['id']}", headers=AUTH)
        ).status == 204

"""Webhook egress through the running app: URLs refused on input, names resolved and judged at
delivery, CALLBACK_HOSTS applied to what is stored, receivers that cannot hold the others up.

Nothing here sends to an address off this machine: refusal of other addresses is tested on
input only (with the dispatcher stopped), delivery-time refusal with names that resolve to
loopback.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from service import keys
from service.domain.networks import DEFAULT_DENY_NETWORKS
from service.notify.connector import address_refused, webhook_session
from service.notify.dispatcher import MAX_PER_RECEIVER, Dispatcher
from service.notify.egress import EgressPolicy
from service.store import open_store
from service.store.base import Delivery, DeliveryStatus
from tests.conftest import AUTH, JOHN

if TYPE_CHECKING:
    from tests.redis_server import RedisServer

pytest_plugins = ("tests.redis_server",)

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


@pytest.fixture
async def store_gateway(
    store: str, gateway_factory: GatewayFactory, request: pytest.FixtureRequest
) -> Gateway:
    """A gateway on the store the test is parametrized with (Redis: its own server)."""
    if store == "redis":
        server: RedisServer = request.getfixturevalue("own_redis_server")
        return await gateway_factory(store_url=server.url())
    return await gateway_factory()


@attrs.define
class Listener:
    """A receiver on 127.0.0.1 that answers after `delay` seconds (or once `release` is set,
    when `hang`), recording what it heard and how many requests it held at once."""

    server: TestServer
    delay: float = 0.0
    hang: bool = False
    status: int = 204
    location: str | None = None
    release: asyncio.Event = attrs.field(factory=asyncio.Event)
    heard: list[tuple[float, str, dict[str, Any]]] = attrs.field(factory=list)
    holding: int = 0
    most_held: int = 0

    @property
    def url(self) -> str:
        return str(self.server.make_url("/hook"))

    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    def bodies(self) -> list[dict[str, Any]]:
        return [body for _, _, body in self.heard]

    async def handle(self, request: web.Request) -> web.Response:
        self.holding += 1
        self.most_held = max(self.most_held, self.holding)
        try:
            body = await request.json()
            if self.hang:
                await self.release.wait()
            await asyncio.sleep(self.delay)
            self.heard.append((time.monotonic(), request.query.get("via", ""), body))
            headers = {"Location": self.location} if self.location else {}
            return web.Response(status=self.status, headers=headers)
        finally:
            self.holding -= 1


@pytest.fixture
async def listen() -> AsyncIterator[Callable[..., Awaitable[Listener]]]:
    started: list[Listener] = []

    async def start(**options: Any) -> Listener:
        app = web.Application()
        server = TestServer(app, host="127.0.0.1")
        listener = Listener(server, **options)
        app.router.add_post("/hook", listener.handle)
        await server.start_server()
        started.append(listener)
        return listener

    yield start
    for listener in started:
        listener.release.set()  # a hung handler must not hold up the server's shutdown
        await listener.server.close()


async def settled(gw: Gateway, count: int, timeout: float = 10.0) -> list[Delivery]:
    """The store's deliveries once `count` of them have been attempted at least once."""
    store = gw.app[keys.STORE]
    deadline = time.monotonic() + timeout
    while True:
        deliveries = await store.list_deliveries(None, 100)
        if sum(1 for d in deliveries if d.attempts > 0) >= count:
            return deliveries
        assert time.monotonic() < deadline, deliveries
        await asyncio.sleep(0.02)


async def subscribe(gw: Gateway, url: str, events: list[str] | None = None) -> None:
    resp = await gw.post(
        "/v1/subscriptions",
        json={"url": url, "events": events or ["booking.requested"]},
        headers=AUTH,
    )
    assert resp.status == 201, await resp.text()


async def create(gw: Gateway, callback: str | None, slot: int = 0) -> dict[str, Any]:
    resp = await gw.post("/v1/bookings", json=booking(callback, slot), headers=AUTH)
    assert resp.status == 201, await resp.text()
    created: dict[str, Any] = await resp.json()
    return created


async def test_a_localhost_receiver_hears_nothing_under_the_default_deny_list(
    gateway_factory: GatewayFactory, listen: Callable[..., Awaitable[Listener]]
) -> None:
    receiver = await listen()
    # A name, so input lets it through; it resolves to 127.0.0.1 (and ::1) at delivery.
    url = f"http://localhost:{receiver.port()}/hook?token=t0k3n"
    gw = await gateway_factory(callback_deny_networks=DEFAULT_DENY_NETWORKS)
    await subscribe(gw, url + "&via=subscription")
    await create(gw, url)
    deliveries = await settled(gw, 2)
    assert {(d.url, d.last_error) for d in deliveries} == {
        (url, "address not allowed"),
        (url + "&via=subscription", "address not allowed"),
    }
    await asyncio.sleep(0.2)
    assert receiver.heard == [] and receiver.most_held == 0


async def test_the_same_receiver_hears_when_nothing_is_denied(
    gateway_factory: GatewayFactory, listen: Callable[..., Awaitable[Listener]]
) -> None:
    receiver = await listen()
    url = f"http://localhost:{receiver.port()}/hook"
    gw = await gateway_factory(callback_deny_networks=())
    created = await create(gw, url)
    deliveries = await settled(gw, 1)
    assert [(d.status, d.last_error) for d in deliveries] == [(DeliveryStatus.DELIVERED, None)]
    assert [b["data"]["id"] for b in receiver.bodies()] == [created["id"]]


async def test_addresses_stored_before_the_rules_are_never_connected_to(
    gateway_factory: GatewayFactory, listen: Callable[..., Awaitable[Listener]]
) -> None:
    receiver = await listen()
    gw = await gateway_factory(callback_deny_networks=DEFAULT_DENY_NETWORKS)
    now = datetime.now(UTC)
    spellings = ["127.0.0.1", "127.1", "0x7f000001", "[::ffff:127.0.0.1]", "[::1]", "localhost"]
    urls = [f"http://{host}:{receiver.port()}/hook" for host in spellings]
    await gw.app[keys.STORE].enqueue_deliveries(
        [
            Delivery(
                id=f"msg_old{i}",
                event_type="booking.requested",
                url=url,
                payload="{}",
                booking_id=None,
                status=DeliveryStatus.PENDING,
                attempts=0,
                next_attempt_at=now,
                last_error=None,
                created_at=now,
                updated_at=now,
            )
            for i, url in enumerate(urls)
        ]
    )
    gw.app[keys.DISPATCHER].wake()
    deliveries = await settled(gw, len(urls))
    assert {d.url: d.last_error for d in deliveries} == dict.fromkeys(urls, "address not allowed")
    assert receiver.most_held == 0


async def test_the_connector_itself_refuses_a_denied_literal(
    listen: Callable[..., Awaitable[Listener]],
) -> None:
    # Below the URL check: aiohttp does not resolve literals, the socket factory stops them.
    receiver = await listen()
    async with webhook_session(DEFAULT_DENY_NETWORKS) as session:
        for url in (receiver.url, receiver.url.replace("127.0.0.1", "localhost")):
            with pytest.raises(aiohttp.ClientError) as caught:
                await session.post(url, json={})
            assert address_refused(caught.value), url
    async with webhook_session(()) as session, session.post(receiver.url, json={}) as resp:
        assert resp.status == 204
    assert len(receiver.heard) == 1


async def test_a_changed_allowlist_applies_to_stored_subscriptions(
    gateway_factory: GatewayFactory, listen: Callable[..., Awaitable[Listener]]
) -> None:
    receiver = await listen()
    before = await gateway_factory()
    await subscribe(before, receiver.url)
    await before.close()

    after = await gateway_factory(callback_hosts=("*.internal",))
    await create(after, None)
    (delivery,) = await settled(after, 1)
    assert delivery.last_error == "host not allowed by CALLBACK_HOSTS"
    await asyncio.sleep(0.2)
    assert receiver.heard == []


async def test_redirects_are_not_followed(
    gateway: Gateway, listen: Callable[..., Awaitable[Listener]]
) -> None:
    target = await listen()
    redirector = await listen(status=307, location=target.url)
    await create(gateway, redirector.url)
    (delivery,) = await settled(gateway, 1)
    assert delivery.last_error == "receiver answered 307"
    await asyncio.sleep(0.2)
    assert len(redirector.heard) == 1 and target.heard == []


async def test_connection_failures_do_not_say_why(gateway: Gateway) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    await create(gateway, f"http://127.0.0.1:{closed_port}/hook")
    (delivery,) = await settled(gateway, 1)
    assert delivery.last_error == "connection failed"


@pytest.mark.parametrize("store", ["sqlite", "redis"])
async def test_a_hung_receiver_costs_the_others_nothing(
    store_gateway: Gateway, listen: Callable[..., Awaitable[Listener]]
) -> None:
    gateway = store_gateway
    hung = await listen(hang=True)
    fast = await listen()
    now = datetime.now(UTC)
    # More waiting for the hung receiver than one receiver may hold, and more than the
    # dispatcher claims at once.
    backlog = MAX_PER_RECEIVER * 5
    await gateway.app[keys.STORE].enqueue_deliveries(
        [
            Delivery(
                id=f"msg_hung{i}",
                event_type="booking.requested",
                url=hung.url,
                payload="{}",
                booking_id=f"ev_hung{i}",
                status=DeliveryStatus.PENDING,
                attempts=0,
                next_attempt_at=now,
                last_error=None,
                created_at=now,
                updated_at=now,
            )
            for i in range(backlog)
        ]
    )
    gateway.app[keys.DISPATCHER].wake()
    deadline = time.monotonic() + 5
    while hung.holding < MAX_PER_RECEIVER:
        assert time.monotonic() < deadline, hung.holding
        await asyncio.sleep(0.02)

    asked = time.monotonic()
    created = await create(gateway, fast.url)
    while not fast.heard:
        assert time.monotonic() - asked < 1.0, "the fast receiver waited on the hung one"
        await asyncio.sleep(0.01)
    assert fast.bodies()[0]["data"]["id"] == created["id"]
    assert hung.most_held == MAX_PER_RECEIVER and hung.heard == []
    # Those put off while the receiver had its share in flight spent no attempt.
    waiting = [
        d for d in await gateway.app[keys.STORE].list_deliveries(None, 200) if d.url == hung.url
    ]
    assert len(waiting) == backlog
    assert all(d.attempts == 0 and d.status == DeliveryStatus.PENDING for d in waiting)


@pytest.mark.parametrize("store", ["sqlite", "redis"])
async def test_each_receiver_hears_a_bookings_changes_in_version_order(
    store_gateway: Gateway, listen: Callable[..., Awaitable[Listener]]
) -> None:
    gateway = store_gateway
    slow = await listen(delay=0.1)
    await subscribe(
        gateway, slow.url + "?via=subscription", ["booking.requested", "booking.confirmed"]
    )
    ids = []
    for slot in range(3):
        created = await create(gateway, slow.url + "?via=callback", slot)
        ids.append(created["id"])
        await gateway.post(f"/v1/bookings/{created['id']}/confirm", headers=AUTH)
        await gateway.post(f"/v1/bookings/{created['id']}/cancel", headers=AUTH)
    deadline = time.monotonic() + 10
    while len(slow.heard) < 3 * 5:  # per booking: three to the callback, two to the subscription
        assert time.monotonic() < deadline, len(slow.heard)
        await asyncio.sleep(0.02)
    for booking_id in ids:
        for via, expected in (("callback", [1, 2, 3]), ("subscription", [1, 2])):
            versions = [
                body["data"]["version"]
                for _, query, body in slow.heard
                if query == via and body["data"]["id"] == booking_id
            ]
            assert versions == expected, (booking_id, via)
    assert slow.most_held > 1  # different bookings were delivered side by side


async def test_a_cancelled_dispatcher_stops_even_when_woken_at_that_moment(
    tmp_path: Path,
) -> None:
    store = await open_store(f"sqlite:///{tmp_path}/stop.sqlite3")
    try:
        async with webhook_session(()) as session:
            dispatcher = Dispatcher(store, session, (), (1.0,), "w", EgressPolicy(deny=()))
            running = asyncio.create_task(dispatcher.run())
            await asyncio.sleep(0.1)  # nothing due: parked waiting to be woken
            dispatcher.wake()  # as a finished attempt or a new booking would, just as
            running.cancel()  # shutdown cancels it
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(running, 2)
    finally:
        await store.close()

"""LOG_LEVEL=debug keeps secrets out of the logs: the store drivers' own debug lines (SQL with
its parameters, Redis commands with their values) never carry a callback URL's token or an
invitee's email."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from service import keys
from service import logging as service_logging
from tests.conftest import AUTH
from tests.integration.conftest import Receiver
from tests.integration.test_egress import booking

if TYPE_CHECKING:
    from tests.redis_server import RedisServer

pytest_plugins = ("tests.redis_server",)

CALLBACK_TOKEN = "cb-token-5d1f0e9a7b"
EMAIL = "grace.hopper.7731@example.org"
MESSAGE = "door code 48151623"


@pytest.fixture
def debug_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    service_logging.configure("debug", "json", stream=stream)
    yield stream
    service_logging.reset()


@pytest.mark.parametrize("store", ["sqlite", "redis"])
async def test_debug_logs_carry_no_callback_token_email_or_message(
    store: str,
    gateway_factory: Any,
    receiver: Receiver,
    debug_logs: io.StringIO,
    request: pytest.FixtureRequest,
) -> None:
    overrides: dict[str, Any] = {}
    if store == "redis":
        server: RedisServer = request.getfixturevalue("own_redis_server")
        overrides["store_url"] = server.url()
    gw = await gateway_factory(**overrides)
    callback = f"{receiver.url}?token={CALLBACK_TOKEN}"
    sub = await gw.post(
        "/v1/subscriptions",
        json={
            "url": f"{receiver.url}?via=sub&token={CALLBACK_TOKEN}",
            "events": ["booking.requested"],
        },
        headers=AUTH,
    )
    assert sub.status == 201
    body = booking(callback)
    body["invitees"] = [{"full_name": "Grace Hopper", "email": EMAIL}]
    body["message"] = MESSAGE
    created = await gw.post("/v1/bookings", json=body, headers=AUTH)
    assert created.status == 201, await created.text()
    booking_id = (await created.json())["id"]
    assert (await gw.post(f"/v1/bookings/{booking_id}/confirm", headers=AUTH)).status == 200
    await receiver.wait_for(3)
    # Until the outcomes are written too: those writes are what the SQL driver would log.
    deadline = time.monotonic() + 5
    while True:
        deliveries = await gw.app[keys.STORE].list_deliveries(None, 10)
        if len(deliveries) == 3 and all(d.attempts == 1 for d in deliveries):
            break
        assert time.monotonic() < deadline, deliveries
        await asyncio.sleep(0.02)

    # Debug lines do get through, so the check below means something.
    logging.getLogger("tests.probe").debug("debug_probe")
    text = debug_logs.getvalue()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    assert {"level": "debug", "event": "debug_probe"}.items() <= lines[-1].items()
    assert any(line.get("event") == "webhook_attempt" for line in lines)
    for secret in (CALLBACK_TOKEN, EMAIL, MESSAGE):
        assert secret not in text, secret

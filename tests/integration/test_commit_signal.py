"""A change's webhooks leave when the change is committed, not at the dispatcher's next poll."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.notify import dispatcher
from tests.conftest import AUTH, JOHN
from tests.integration.conftest import Receiver


@pytest.fixture
async def slow_polling_gateway(gateway_factory: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    # With an idle poll this long, only the signal sent after a commit can deliver in time.
    monkeypatch.setattr(dispatcher, "_IDLE_POLL", 60.0)
    return await gateway_factory()


async def test_sync_changes_wake_the_dispatcher(
    slow_polling_gateway: Any, receiver: Receiver
) -> None:
    gw = slow_polling_gateway
    start = (datetime.now(UTC) + timedelta(days=3)).replace(hour=10, minute=0, second=0)
    resp = await gw.post(
        "/v1/bookings",
        json={
            "organizer": JOHN,
            "title": "Signal check",
            "start": start.isoformat(),
            "duration": 30,
            "invitees": [{"email": "jane@example.com"}],
            "callback_url": receiver.url,
            "check_availability": False,
        },
        headers=AUTH,
    )
    assert resp.status == 201, await resp.text()
    booking = await resp.json()
    await receiver.wait_for(1, timeout=5)
    confirmed = await gw.post(f"/v1/bookings/{booking['id']}/confirm", headers=AUTH)
    assert confirmed.status == 200
    await receiver.wait_for(2, timeout=5)
    assert [b["type"] for b in receiver.bodies()] == ["booking.requested", "booking.confirmed"]
    assert receiver.bodies()[1]["data"] == await confirmed.json()

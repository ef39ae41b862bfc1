"""An accepted asynchronous create keeps its validated command; the worker never re-reads a body."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from service import keys
from service.commands import decode_booking
from service.http.requests import booking_command
from service.notify.operations import new_operation
from service.store.base import OperationStatus, OperationType
from tests.conftest import AUTH, JOHN


def body() -> dict[str, Any]:
    start = (datetime.now(UTC) + timedelta(days=4)).replace(hour=9, minute=0, second=0)
    return {
        "organizer": JOHN,
        "title": "Async planning",
        "start": start.isoformat(),
        "duration": 45,
        "timezone": "Europe/Paris",
        "invitees": [{"email": "jane@example.com", "full_name": "Jane"}],
        "place": {"name": "Room 4"},
        "message": "line one\nline two",
        "check_availability": False,
    }


async def settled(gw: Any, op_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 10
    while True:
        op: dict[str, Any] = await (await gw.get(f"/v1/operations/{op_id}", headers=AUTH)).json()
        if op["status"] != "pending":
            return op
        assert time.monotonic() < deadline, op
        await asyncio.sleep(0.05)


async def test_the_stored_request_is_the_validated_command(gateway: Any) -> None:
    resp = await gateway.post(
        "/v1/bookings", json=body(), headers={**AUTH, "Prefer": "respond-async"}
    )
    assert resp.status == 202
    accepted = await resp.json()
    stored = await gateway.app[keys.STORE].get_operation(accepted["id"])
    assert decode_booking(stored.request) == booking_command(body(), ())
    done = await settled(gateway, accepted["id"])
    assert done["status"] == "succeeded", done
    booking = await (await gateway.get(f"/v1/bookings/{done['booking_id']}", headers=AUTH)).json()
    assert (booking["title"], booking["message"]) == ("Async planning", "line one\nline two")


async def test_a_request_this_version_cannot_read_fails_for_good(gateway: Any) -> None:
    op = new_operation(OperationType.CREATE, "alpha", None, None)
    # What an older version kept: the raw body, which the worker no longer parses.
    legacy = attrs.evolve(op, request='{"organizer": "x", "duration": 30}')
    await gateway.app[keys.STORE].add_operation(legacy)
    gateway.app[keys.OPERATIONS].wake()
    done = await settled(gateway, legacy.id)
    assert done["status"] == OperationStatus.FAILED.value
    assert done["attempts"] == 1 and done["last_error"].startswith("400 validation-error")

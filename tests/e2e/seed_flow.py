"""The seed flow every generated Python client must run against the service, written once.

Each generated client gets a small adapter (a FlowClient) that calls its own typed functions
and models and hands back plain values; `run_seed_flow` then checks the same answers for
all of them. To add an operation: add a method to FlowClient, implement it in each adapter,
and add its step to run_seed_flow.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

import attrs

from tests.conftest import JOHN
from tests.contract import SPEC_PATH

INVITEE = {"email": "quentin.tarantino@hollywood.com", "full_name": "Quentin Tarantino"}


@attrs.frozen
class BookingView:
    id: str
    status: str
    version: int
    title: str
    start: datetime
    end: datetime


@attrs.frozen
class Answer:
    """One HTTP answer, as a generated client reports it."""

    status: int
    headers: dict[str, str]
    booking: BookingView | None = None
    operation: tuple[str, str, str | None] | None = None  # id, status, booking_id
    problem: tuple[int, str] | None = None  # status, type


class FlowClient(Protocol):
    def openapi_document(self) -> str: ...
    def availability(
        self, participant: str, first: date, last: date, timezone: str, duration: int
    ) -> list[tuple[datetime, datetime]]: ...
    def create(
        self,
        body: dict[str, Any],
        *,
        idempotency_key: str | None = None,
        respond_async: bool = False,
    ) -> Answer: ...
    def operation(self, operation_id: str) -> Answer: ...
    def get(self, booking_id: str) -> Answer: ...
    def confirm(self, booking_id: str) -> Answer: ...
    def cancel(self, booking_id: str) -> Answer: ...
    def reschedule(self, booking_id: str, start: datetime, end: datetime) -> Answer: ...
    def listing(self, limit: int, cursor: str | None) -> tuple[list[BookingView], str | None]:
        """One page of GET /v1/bookings and its `next_cursor`."""


def booking_request(
    title: str, start: datetime, end: datetime, timezone: str = "Europe/Paris"
) -> dict[str, Any]:
    return {
        "organizer": JOHN,
        "title": title,
        "start": start,
        "end": end,
        "timezone": timezone,
        "invitees": [INVITEE],
        "place": {"name": "Place for the meeting."},
    }


def run_seed_flow(client: FlowClient, key_prefix: str) -> None:
    """availability -> create (keyed, replayed) -> async create + polling -> confirm ->
    cancel -> reschedule -> list page by page, plus the problems a client must be able to
    read."""
    assert client.openapi_document() == SPEC_PATH.read_text()

    # 1. When is John Doe free for an hour on two days a month from now (Paris)?
    first = datetime.now(UTC).date() + timedelta(days=30)
    slots = client.availability(JOHN, first, first + timedelta(days=1), "Europe/Paris", 60)
    assert len(slots) >= 2, slots
    assert all(end - start == timedelta(minutes=60) for start, end in slots)
    assert all(start.utcoffset() is not None for start, _ in slots)
    assert slots == sorted(slots)
    chosen, later = slots[0], slots[-1]

    # 2. Book the first slot, safely retryable: the replay is the same booking.
    request = booking_request("Meeting with Quentin Tarantino", *chosen)
    created = client.create(request, idempotency_key=f"{key_prefix}-1")
    assert created.status == 201, created
    booking = created.booking
    assert booking is not None
    assert (booking.status, booking.version) == ("requested", 1)
    assert (booking.start, booking.end) == chosen
    assert created.headers["location"] == f"/v1/bookings/{booking.id}"
    replay = client.create(request, idempotency_key=f"{key_prefix}-1")
    assert (replay.status, replay.booking) == (201, booking)
    assert replay.headers["idempotent-replayed"] == "true"

    # 3. The same slot again, without a key: a typed 409 problem.
    taken = client.create(request)
    assert taken.problem == (409, "/problems/slot-unavailable"), taken

    # 4. The last slot, asynchronously: 202 with an operation to follow until it is done.
    accepted = client.create(booking_request("Follow-up", *later), respond_async=True)
    assert accepted.status == 202 and accepted.operation is not None, accepted
    operation_id, status, _ = accepted.operation
    assert accepted.headers["location"] == f"/v1/operations/{operation_id}"
    deadline = time.monotonic() + 15
    while status == "pending":
        assert time.monotonic() < deadline, accepted
        time.sleep(0.1)
        polled = client.operation(operation_id)
        assert polled.operation is not None, polled
        _, status, made_id = polled.operation
    assert status == "succeeded", polled
    assert made_id is not None
    made = client.get(made_id).booking
    assert made is not None and (made.title, made.start, made.end) == ("Follow-up", *later)

    # 5. Confirm the first, cancel the second; read them back.
    confirmed = client.confirm(booking.id).booking
    assert confirmed is not None and (confirmed.status, confirmed.version) == ("confirmed", 2)
    assert client.get(booking.id).booking == confirmed
    cancelled = client.cancel(made.id).booking
    assert cancelled is not None and (cancelled.status, cancelled.version) == ("cancelled", 2)

    # 6. Move the confirmed one into the first half of its own time (its time counts as
    # free for it); a cancelled booking cannot move.
    half = (booking.start, booking.start + timedelta(minutes=30))
    moved = client.reschedule(booking.id, *half)
    assert moved.status == 200 and moved.booking is not None, moved
    assert (moved.booking.start, moved.booking.end) == half
    assert (moved.booking.status, moved.booking.version) == ("confirmed", 3)
    assert client.reschedule(made.id, *half).problem == (409, "/problems/booking-cancelled")

    # 7. List them, one per page, by start: the cursor leads from one page to the next.
    first_page, cursor = client.listing(1, None)
    assert first_page == [moved.booking] and cursor is not None
    second_page, cursor = client.listing(1, cursor)
    assert [b.id for b in second_page] == [made.id] and cursor is None

    # 8. Errors come back typed as problems.
    assert client.get("0" * 24).problem == (404, "/problems/booking-not-found")
    assert client.confirm(made.id).problem == (409, "/problems/booking-cancelled")

"""Which of a Vyte event's dates gives a booking its times (DESIGN §3.3)."""

from __future__ import annotations

from datetime import UTC, datetime

from service.vyte.mapping import chosen_date, event_times
from service.vyte.models import Confirmed, Event, EventDate

FIRST = EventDate(date="2030-01-07T09:00:00.000Z", end_date="2030-01-07T10:00:00.000Z", id="d1")
SECOND = EventDate(date="2030-01-08T15:00:00.000Z", end_date="2030-01-08T16:00:00.000Z", id="d2")


def event(date_id: str | None, *dates: EventDate) -> Event:
    return Event(
        id="e" * 24, confirmed=Confirmed(flag=date_id is not None, date_id=date_id), dates=dates
    )


def test_the_confirmed_date_wins_over_the_first() -> None:
    assert chosen_date(event("d2", FIRST, SECOND)) == SECOND
    assert event_times(event("d2", FIRST, SECOND)) == (
        datetime(2030, 1, 8, 15, tzinfo=UTC),
        datetime(2030, 1, 8, 16, tzinfo=UTC),
    )


def test_without_a_known_confirmed_date_the_first_counts() -> None:
    assert chosen_date(event(None, FIRST, SECOND)) == FIRST
    assert chosen_date(event("elsewhere", FIRST, SECOND)) == FIRST
    assert chosen_date(event("d1")) is None
    assert event_times(event(None)) is None

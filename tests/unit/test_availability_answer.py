"""The availability answer's shape: read from find_slots' columns, it is the answer a list of
SlotMatch gives (DESIGN §3.1), byte for byte, in every grouping and order."""

from __future__ import annotations

import json
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest

from service.availability import Availability
from service.commands import AvailabilityQuery
from service.domain.freetime import Order, find_slots
from service.domain.participant import Participant, ParticipantState
from service.http.render import dumps
from service.http.resources import availability_answer
from tests.dates import TUESDAY, next_weekday

PARIS = ZoneInfo("Europe/Paris")
PEOPLE = (
    Participant("5f3feb7821046c3bb9327e6a"),
    Participant("ann@example.com"),
    Participant("5f3feb7821046c3bb9327e6b"),
)
FIRST = next_weekday(TUESDAY)
LAST = FIRST + timedelta(days=1)


def _at(days: int, hour: int, minute: int = 0) -> int:
    moment = datetime.combine(FIRST + timedelta(days=days), time(hour, minute), PARIS)
    return int(moment.timestamp())


FREE = [
    [(_at(0, 9), _at(0, 12)), (_at(1, 14), _at(1, 18))],
    [(_at(0, 10), _at(0, 11, 30)), (_at(1, 9), _at(1, 17))],
    [(_at(0, 8), _at(0, 18))],
]


def _answers(order: Order) -> tuple[Availability, Availability]:
    """The same answer twice: slots as find_slots gives them, and as a list of SlotMatch."""
    q = AvailabilityQuery(
        participants=PEOPLE,
        duration=45,
        first=FIRST,
        last=LAST,
        timezone="Europe/Paris",
        step=15,
        required=1,
        partial=False,
        buffer_before=5 if order == "best" else 0,
        order=order,
    )
    slots = find_slots(
        FREE,
        first=FIRST,
        last=LAST,
        tz=PARIS,
        duration_minutes=45,
        step_minutes=15,
        required=1,
        buffer_before_minutes=q.buffer_before,
        order=order,
    )
    states = tuple(ParticipantState(p) for p in PEOPLE)
    return Availability(q, states, slots), Availability(q, states, list(slots))


@pytest.mark.parametrize("order", ["start", "best"])
@pytest.mark.parametrize("by_day", [False, True])
def test_columns_and_slot_matches_give_the_same_body(order: Order, by_day: bool) -> None:
    columns, matches = _answers(order)
    assert len(columns.slots) > 10
    body = dumps(availability_answer(columns, by_day))
    assert body == dumps(availability_answer(matches, by_day))
    shown = json.loads(body)
    slots = [s for d in shown["days"] for s in d["slots"]] if by_day else shown["slots"]
    assert len(slots) == len(columns.slots)
    first = slots[0] if order == "start" else min(slots, key=lambda s: s["start"])
    # With 5 minutes before it, a meeting cannot start at 08:00, when the earliest window opens.
    wall = "08:00" if order == "start" else "08:15"
    assert first["start"] == f"{FIRST.isoformat()}T{wall}:00+0{_offset_hours()}:00"
    assert all(len(s["participants"]) >= 1 for s in slots)
    if order == "best":
        assert all(isinstance(s["stranded_minutes"], int) for s in slots)
    else:
        assert all("stranded_minutes" not in s for s in slots)


def _offset_hours() -> int:
    offset = datetime.combine(FIRST, time(8), PARIS).utcoffset()
    assert offset is not None
    return offset.seconds // 3600

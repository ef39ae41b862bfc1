"""The sandbox seed's busy blocks: absolute instants and days relative to when it is read."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

import pytest

from service.sandbox.seed import SeedError, parse_seed
from tests.dates import THURSDAY, TUESDAY, at, in_days, next_transition, next_weekday


def seed(zone: str, *busy: dict[str, Any]) -> dict[str, Any]:
    return {
        "organization": {
            "_id": "5f3feb7821046c3bb9327e00",
            "name": "Org",
            "createdAt": "2020-08-24T15:00:00.000Z",
        },
        "users": [
            {
                "_id": "5f3feb7821046c3bb9327e6a",
                "full_name": "Someone",
                "emails": ["someone@example.com"],
                "timezone": zone,
                "busy": list(busy),
            }
        ],
    }


def busy(zone: str, today: date, *blocks: dict[str, Any]) -> list[tuple[datetime, datetime]]:
    (user,) = parse_seed(seed(zone, *blocks), today).users
    return list(user.busy)


def test_days_from_today_in_the_users_own_zone() -> None:
    tuesday = next_weekday(TUESDAY)
    block = {"in_days": 2, "start": "12:00", "end": "14:00"}
    for zone in ("Europe/Paris", "Asia/Kathmandu", "America/St_Johns"):
        thursday = tuesday + timedelta(days=2)
        assert busy(zone, tuesday, block) == [
            (at(thursday, "12:00", zone), at(thursday, "14:00", zone))
        ]


def test_a_weekday_is_the_first_one_on_or_after_the_day() -> None:
    tuesday = next_weekday(TUESDAY)
    thursday = {"in_days": 2, "weekday": "thu", "start": "09:30", "end": "10:30"}
    expected = tuesday + timedelta(days=2)
    assert busy("UTC", tuesday, thursday) == [
        (at(expected, "09:30", "UTC"), at(expected, "10:30", "UTC"))
    ]
    next_week = {"in_days": 3, "weekday": "thu", "start": "09:30", "end": "10:30"}
    expected = tuesday + timedelta(days=9)
    assert busy("UTC", tuesday, next_week) == [
        (at(expected, "09:30", "UTC"), at(expected, "10:30", "UTC"))
    ]
    # Without in_days the week starts today; 24:00 is the next midnight.
    whole_day = {"weekday": "tue", "start": "00:00", "end": "24:00"}
    assert busy("UTC", tuesday, whole_day) == [
        (at(tuesday, "00:00", "UTC"), at(tuesday + timedelta(days=1), "00:00", "UTC"))
    ]


def test_a_relative_block_across_a_clock_change_keeps_its_wall_clock_times() -> None:
    zone = "Australia/Sydney"
    change = next_transition(zone, forward=True)
    block = {"in_days": 0, "start": "00:00", "end": "24:00"}
    ((start, end),) = busy(zone, change, block)
    assert (start, end) == (
        at(change, "00:00", zone),
        at(change + timedelta(days=1), "00:00", zone),
    )
    assert end - start == timedelta(hours=23)


def test_absolute_blocks_still_work_beside_relative_ones() -> None:
    today = in_days(0)
    lunch = (at(in_days(5), "12:00", "Asia/Tokyo"), at(in_days(5), "14:00", "Asia/Tokyo"))
    blocks: list[dict[str, Any]] = [
        {"start": lunch[0].isoformat(), "end": lunch[1].isoformat()},
        {"in_days": -1, "start": "08:00", "end": "09:00"},
    ]
    assert busy("Europe/Paris", today, *blocks) == [
        (at(in_days(-1), "08:00", "Europe/Paris"), at(in_days(-1), "09:00", "Europe/Paris")),
        lunch,
    ]


def test_today_defaults_to_the_utc_date() -> None:
    block = {"in_days": 2, "weekday": "thu", "start": "12:00", "end": "14:00"}
    (user,) = parse_seed(seed("Europe/Paris", block)).users
    lunch = next_weekday(THURSDAY)
    assert user.busy == ((at(lunch, "12:00", "Europe/Paris"), at(lunch, "14:00", "Europe/Paris")),)


@pytest.mark.parametrize(
    ("block", "field"),
    [
        ({"in_days": "2", "start": "12:00", "end": "14:00"}, "in_days"),
        ({"in_days": True, "start": "12:00", "end": "14:00"}, "in_days"),
        ({"in_days": 9999, "start": "12:00", "end": "14:00"}, "in_days"),
        ({"weekday": "thursday", "start": "12:00", "end": "14:00"}, "weekday"),
        ({"in_days": 1, "start": "12h", "end": "14:00"}, "start"),
        ({"in_days": 1, "start": "12:00"}, "end"),
        ({"in_days": 1, "start": "14:00", "end": "12:00"}, "end after it starts"),
        ({"in_days": 1, "start": "12:00", "end": "14:00", "zone": "UTC"}, "unknown fields"),
    ],
)
def test_bad_relative_blocks_name_the_field(block: dict[str, Any], field: str) -> None:
    with pytest.raises(SeedError, match=rf"busy\[0\].*{field}"):
        parse_seed(seed("UTC", block), in_days(0))

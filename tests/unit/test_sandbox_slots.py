"""The sandbox's own slot arithmetic: DST days, odd offsets, foreign zones, intersections."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.sandbox.config import DEFAULT_SEED_PATH
from service.sandbox.seed import Seed, SeedError, User, load_seed, parse_seed
from service.sandbox.slots import (
    Interval,
    common_free_time,
    free_time,
    intersect,
    local_day,
    local_span,
    normalize,
    slots_by_day,
    subtract,
    wall_clock,
)
from service.sandbox.wire import local_time

SEED: Seed = load_seed(DEFAULT_SEED_PATH)
JOHN = SEED.users_by_id["5f3feb7821046c3bb9327e6a"]
JANE = SEED.users_by_email["jane@example.com"]
PRIYA = SEED.users_by_email["priya@example.com"]
ANISH = SEED.users_by_email["anish@example.com"]
OLIVIA = SEED.users_by_email["olivia@example.com"]
MARIE = SEED.users_by_email["marie@example.com"]
OSCAR = SEED.users_by_email["oscar@example.com"]

PARIS = ZoneInfo("Europe/Paris")
NEW_YORK = ZoneInfo("America/New_York")
UTC_ZONE = ZoneInfo("UTC")
HOUR = timedelta(hours=1)


def slots_for(
    users: list[User], zone: ZoneInfo, first: date, last: date, duration: timedelta = HOUR
) -> dict[str, list[tuple[str, str]]]:
    """Rendered like the API renders them, keyed by ISO date."""
    span = local_span(first, last, zone)
    free = common_free_time(
        (free_time(u.hours, u.zone, u.busy, span) for u in users),
        span,
    )
    return {
        day.isoformat(): [(local_time(s, zone), local_time(e, zone)) for s, e in slots]
        for day, slots in slots_by_day(free, zone, first, last, duration).items()
    }


def starts(days: dict[str, list[tuple[str, str]]], day: str) -> list[str]:
    return [start for start, _ in days[day]]


def test_seed_has_the_documented_people() -> None:
    assert JOHN.full_name == "John Doe"
    assert JOHN.timezone == "Europe/Paris"
    assert JOHN.email == "john.doe@example.com"
    assert {u.timezone for u in SEED.users} >= {
        "Europe/Paris",
        "America/New_York",
        "Asia/Kolkata",
        "Asia/Kathmandu",
        "Australia/Sydney",
    }
    assert SEED.users_by_email["marie.dupont@example.com"] is MARIE


def test_john_matches_the_guide_example() -> None:
    days = slots_for([JOHN], PARIS, date(2020, 10, 1), date(2020, 10, 1))
    assert days["2020-10-01"][:2] == [
        ("2020-10-01T00:00:00+02:00", "2020-10-01T01:00:00+02:00"),
        ("2020-10-01T01:00:00+02:00", "2020-10-01T02:00:00+02:00"),
    ]
    # The lunch block (12:00-14:00) is the only gap.
    assert "2020-10-01T12:00:00+02:00" not in starts(days, "2020-10-01")
    assert "2020-10-01T13:00:00+02:00" not in starts(days, "2020-10-01")
    assert len(days["2020-10-01"]) == 22


def test_slots_restart_at_the_end_of_a_busy_block() -> None:
    days = slots_for([JOHN], PARIS, date(2020, 10, 2), date(2020, 10, 2))
    assert starts(days, "2020-10-02")[8:11] == [
        "2020-10-02T08:00:00+02:00",
        "2020-10-02T10:30:00+02:00",
        "2020-10-02T11:30:00+02:00",
    ]
    assert days["2020-10-02"][-1] == ("2020-10-02T22:30:00+02:00", "2020-10-02T23:30:00+02:00")


def test_paris_fall_back_day_has_25_hourly_slots() -> None:
    days = slots_for([JOHN], PARIS, date(2020, 10, 25), date(2020, 10, 25))
    assert len(days["2020-10-25"]) == 25
    assert days["2020-10-25"][1:4] == [
        ("2020-10-25T01:00:00+02:00", "2020-10-25T02:00:00+02:00"),
        ("2020-10-25T02:00:00+02:00", "2020-10-25T02:00:00+01:00"),
        ("2020-10-25T02:00:00+01:00", "2020-10-25T03:00:00+01:00"),
    ]
    assert days["2020-10-25"][-1] == ("2020-10-25T23:00:00+01:00", "2020-10-26T00:00:00+01:00")


def test_paris_spring_forward_day_has_23_hourly_slots() -> None:
    days = slots_for([JOHN], PARIS, date(2020, 3, 29), date(2020, 3, 29))
    assert len(days["2020-03-29"]) == 23
    assert days["2020-03-29"][1:3] == [
        ("2020-03-29T01:00:00+01:00", "2020-03-29T03:00:00+02:00"),
        ("2020-03-29T03:00:00+02:00", "2020-03-29T04:00:00+02:00"),
    ]


def test_new_york_dst_days_seen_from_new_york() -> None:
    fall = slots_for([JOHN], NEW_YORK, date(2020, 11, 1), date(2020, 11, 1))
    assert len(fall["2020-11-01"]) == 25
    assert "2020-11-01T01:00:00-04:00" in starts(fall, "2020-11-01")
    assert "2020-11-01T01:00:00-05:00" in starts(fall, "2020-11-01")
    spring = slots_for([JOHN], NEW_YORK, date(2020, 3, 8), date(2020, 3, 8))
    assert len(spring["2020-03-08"]) == 23
    assert "2020-03-08T02:00:00-04:00" not in starts(spring, "2020-03-08")


def test_jane_keeps_new_york_hours_while_only_europe_has_changed_clocks() -> None:
    # Europe leaves summer time on 2020-10-25, the US on 2020-11-01: for that week
    # New York is five hours behind Paris instead of six.
    days = slots_for([JANE], PARIS, date(2020, 10, 23), date(2020, 10, 26))
    assert days["2020-10-23"][0][0] == "2020-10-23T15:00:00+02:00"
    assert days["2020-10-26"][0][0] == "2020-10-26T14:00:00+01:00"
    assert days["2020-10-26"][-1][1] == "2020-10-26T22:00:00+01:00"
    assert "2020-10-24" not in days and "2020-10-25" not in days


def test_new_york_dst_day_for_a_new_york_worker() -> None:
    days = slots_for([JANE], NEW_YORK, date(2020, 11, 2), date(2020, 11, 2))
    assert days["2020-11-02"][0] == ("2020-11-02T09:00:00-05:00", "2020-11-02T10:00:00-05:00")
    assert len(days["2020-11-02"]) == 8


def test_kolkata_half_hour_offset() -> None:
    days = slots_for([PRIYA], UTC_ZONE, date(2020, 10, 2), date(2020, 10, 2))
    assert starts(days, "2020-10-02") == [f"2020-10-02T{h:02d}:30:00+00:00" for h in range(4, 12)]
    in_paris = slots_for([PRIYA], PARIS, date(2020, 10, 2), date(2020, 10, 2))
    assert in_paris["2020-10-02"][0][0] == "2020-10-02T06:30:00+02:00"


def test_kathmandu_quarter_hour_offset_on_a_nepali_sunday() -> None:
    days = slots_for([ANISH], PARIS, date(2020, 10, 4), date(2020, 10, 4))
    assert starts(days, "2020-10-04") == [f"2020-10-04T{h:02d}:15:00+02:00" for h in range(6, 13)]
    own = slots_for([ANISH], ZoneInfo("Asia/Kathmandu"), date(2020, 10, 4), date(2020, 10, 4))
    assert own["2020-10-04"][0] == ("2020-10-04T10:00:00+05:45", "2020-10-04T11:00:00+05:45")
    # Saturday is his day off.
    assert slots_for([ANISH], PARIS, date(2020, 10, 3), date(2020, 10, 3)) == {}


def test_sydney_hours_are_cut_at_the_requested_zone_midnight_across_its_dst_start() -> None:
    # Olivia works 08:00-16:00 Sydney time, which straddles UTC midnight; Sydney moves from
    # +10:00 to +11:00 on Sunday 2020-10-04, so her Monday starts an hour earlier in UTC.
    days = slots_for([OLIVIA], UTC_ZONE, date(2020, 10, 1), date(2020, 10, 5))

    def utc(day: str, hours: range) -> list[str]:
        return [f"{day}T{h:02d}:00:00+00:00" for h in hours]

    assert starts(days, "2020-10-01") == utc("2020-10-01", range(6)) + utc(
        "2020-10-01", range(22, 24)
    )
    assert starts(days, "2020-10-02") == utc("2020-10-02", range(6))
    assert "2020-10-03" not in days
    assert starts(days, "2020-10-04") == utc("2020-10-04", range(21, 24))
    assert starts(days, "2020-10-05") == utc("2020-10-05", range(5)) + utc(
        "2020-10-05", range(21, 24)
    )


def test_intersection_of_several_people_in_several_zones() -> None:
    # Priya 04:30-12:30Z minus her 07:30-08:30Z lunch; John busy 10:00-12:00Z.
    days = slots_for([JOHN, PRIYA], UTC_ZONE, date(2020, 10, 1), date(2020, 10, 1))
    assert starts(days, "2020-10-01") == [
        "2020-10-01T04:30:00+00:00",
        "2020-10-01T05:30:00+00:00",
        "2020-10-01T06:30:00+00:00",
        "2020-10-01T08:30:00+00:00",
    ]
    # Priya's day ends before Jane's starts.
    assert slots_for([PRIYA, JANE], UTC_ZONE, date(2020, 10, 1), date(2020, 10, 2)) == {}


def test_split_working_day_with_a_duration_that_does_not_divide_it() -> None:
    days = slots_for([MARIE], PARIS, date(2020, 10, 5), date(2020, 10, 5), timedelta(minutes=45))
    assert starts(days, "2020-10-05") == [
        "2020-10-05T09:00:00+02:00",
        "2020-10-05T09:45:00+02:00",
        "2020-10-05T10:30:00+02:00",
        "2020-10-05T11:15:00+02:00",
        "2020-10-05T14:00:00+02:00",
        "2020-10-05T14:45:00+02:00",
        "2020-10-05T15:30:00+02:00",
        "2020-10-05T16:15:00+02:00",
        "2020-10-05T17:00:00+02:00",
    ]


def test_someone_without_working_hours_is_never_free() -> None:
    assert slots_for([OSCAR], UTC_ZONE, date(2020, 1, 1), date(2020, 12, 31)) == {}


def test_a_working_period_starting_in_a_skipped_hour_starts_after_the_jump() -> None:
    assert wall_clock(date(2020, 3, 29), 150, PARIS) == datetime(2020, 3, 29, 1, 30, tzinfo=UTC)
    assert wall_clock(date(2020, 10, 25), 150, PARIS) == datetime(2020, 10, 25, 0, 30, tzinfo=UTC)
    assert wall_clock(date(2020, 10, 25), 1440, PARIS) == datetime(2020, 10, 25, 23, tzinfo=UTC)


def test_local_day_lengths() -> None:
    def hours(day: date, zone: ZoneInfo) -> float:
        start, end = local_day(day, zone)
        return (end - start) / HOUR

    assert hours(date(2020, 10, 25), PARIS) == 25
    assert hours(date(2020, 3, 29), PARIS) == 23
    assert hours(date(2020, 10, 4), ZoneInfo("Australia/Sydney")) == 23
    assert hours(date(2020, 10, 4), ZoneInfo("Asia/Kathmandu")) == 24


def test_a_day_whose_midnight_does_not_exist_starts_at_one() -> None:
    santiago = ZoneInfo("America/Santiago")
    start, end = local_day(date(2026, 9, 6), santiago)
    assert local_time(start, santiago) == "2026-09-06T01:00:00-03:00"
    assert (end - start) / HOUR == 23
    # The day before ends exactly there: no instant is lost or counted twice.
    assert local_day(date(2026, 9, 5), santiago)[1] == start


def test_seed_validation_names_the_bad_field() -> None:
    raw = {
        "organization": {
            "_id": "5f3feb7821046c3bb9327e00",
            "name": "O",
            "createdAt": "2020-01-01T00:00:00Z",
        },
        "users": [
            {
                "_id": "5f3feb7821046c3bb9327e01",
                "full_name": "A",
                "emails": ["a@example.com"],
                "timezone": "Europe/Paris",
                "working_hours": {"mon": [["10:00", "09:00"]]},
            }
        ],
    }
    with pytest.raises(SeedError, match=r"working_hours\.mon\[0\]"):
        parse_seed(raw)


# Interval arithmetic against a minute-by-minute oracle.

BASE = datetime(2020, 1, 1, tzinfo=UTC)


def to_intervals(pairs: list[tuple[int, int]]) -> list[Interval]:
    return [
        (BASE + timedelta(minutes=a), BASE + timedelta(minutes=a + length)) for a, length in pairs
    ]


def minutes_of(intervals: list[Interval]) -> set[int]:
    covered: set[int] = set()
    for start, end in intervals:
        covered.update(
            range(
                int((start - BASE) / timedelta(minutes=1)), int((end - BASE) / timedelta(minutes=1))
            )
        )
    return covered


interval_lists = st.lists(st.tuples(st.integers(0, 300), st.integers(1, 60)), max_size=8).map(
    to_intervals
)


def is_normalized(intervals: list[Interval]) -> bool:
    return all(s < e for s, e in intervals) and all(
        a[1] < b[0] for a, b in itertools.pairwise(intervals)
    )


@given(interval_lists)
def test_normalize_keeps_coverage(intervals: list[Interval]) -> None:
    merged = normalize(intervals)
    assert is_normalized(merged)
    assert minutes_of(merged) == minutes_of(intervals)


@given(interval_lists, interval_lists)
def test_intersect_and_subtract_match_set_arithmetic(
    left: list[Interval], right: list[Interval]
) -> None:
    a, b = normalize(left), normalize(right)
    both = intersect(a, b)
    rest = subtract(a, b)
    assert minutes_of(both) == minutes_of(a) & minutes_of(b)
    assert minutes_of(rest) == minutes_of(a) - minutes_of(b)
    assert is_normalized(normalize(both)) and is_normalized(normalize(rest))


ZONES = st.sampled_from(
    ["Europe/Paris", "America/New_York", "Asia/Kolkata", "Asia/Kathmandu", "Australia/Sydney"]
)


@settings(deadline=None)
@given(
    zone_name=ZONES,
    pairs=st.lists(st.tuples(st.integers(0, 5 * 1440), st.integers(1, 600)), max_size=10),
    duration=st.integers(5, 240),
)
def test_slots_lie_in_free_time_within_their_local_day(
    zone_name: str, pairs: list[tuple[int, int]], duration: int
) -> None:
    zone = ZoneInfo(zone_name)
    # Around Europe's 2020 fall-back weekend.
    base = datetime(2020, 10, 23, tzinfo=UTC)
    free = normalize(
        (base + timedelta(minutes=a), base + timedelta(minutes=a + n)) for a, n in pairs
    )
    step = timedelta(minutes=duration)
    first, last = date(2020, 10, 23), date(2020, 10, 27)
    days = slots_by_day(free, zone, first, last, step)
    for day, slots in days.items():
        day_start, day_end = local_day(day, zone)
        assert slots
        for start, end in slots:
            assert end - start == step
            assert day_start <= start and end <= day_end
            assert any(s <= start and end <= e for s, e in free)
    # Maximal: no more slots fit in any free window cut at local midnights.
    day = first
    while day <= last:
        for start, end in intersect(free, [local_day(day, zone)]):
            expected = int((end - start) / step)
            found = [s for s in days.get(day, []) if start <= s[0] and s[1] <= end]
            assert len(found) == expected
        day += timedelta(days=1)

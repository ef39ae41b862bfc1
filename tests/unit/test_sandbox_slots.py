"""The sandbox's own slot arithmetic: DST days, odd offsets, foreign zones, intersections."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, time, timedelta
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
from tests.dates import (
    FRIDAY,
    MONDAY,
    SUNDAY,
    at,
    iso,
    next_transition,
    next_weekday,
    seed_thursday,
    today,
)

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
    thursday = seed_thursday()
    on = str(thursday)
    days = slots_for([JOHN], PARIS, thursday, thursday)
    assert days[on][:2] == [
        (iso(thursday, "00:00", "Europe/Paris"), iso(thursday, "01:00", "Europe/Paris")),
        (iso(thursday, "01:00", "Europe/Paris"), iso(thursday, "02:00", "Europe/Paris")),
    ]
    # The lunch block (12:00-14:00) is the only gap.
    assert iso(thursday, "12:00", "Europe/Paris") not in starts(days, on)
    assert iso(thursday, "13:00", "Europe/Paris") not in starts(days, on)
    assert len(days[on]) == 22


def test_slots_restart_at_the_end_of_a_busy_block() -> None:
    friday = seed_thursday() + timedelta(days=1)
    days = slots_for([JOHN], PARIS, friday, friday)
    assert starts(days, str(friday))[8:11] == [
        iso(friday, "08:00", "Europe/Paris"),
        iso(friday, "10:30", "Europe/Paris"),
        iso(friday, "11:30", "Europe/Paris"),
    ]
    assert days[str(friday)][-1] == (
        iso(friday, "22:30", "Europe/Paris"),
        iso(friday, "23:30", "Europe/Paris"),
    )


def test_paris_fall_back_day_has_25_hourly_slots() -> None:
    back = next_transition("Europe/Paris", forward=False)
    on, after = str(back), str(back + timedelta(days=1))
    days = slots_for([JOHN], PARIS, back, back)
    assert len(days[on]) == 25
    assert days[on][1:4] == [
        (f"{on}T01:00:00+02:00", f"{on}T02:00:00+02:00"),
        (f"{on}T02:00:00+02:00", f"{on}T02:00:00+01:00"),
        (f"{on}T02:00:00+01:00", f"{on}T03:00:00+01:00"),
    ]
    assert days[on][-1] == (f"{on}T23:00:00+01:00", f"{after}T00:00:00+01:00")


def test_paris_spring_forward_day_has_23_hourly_slots() -> None:
    forward = next_transition("Europe/Paris", forward=True)
    on = str(forward)
    days = slots_for([JOHN], PARIS, forward, forward)
    assert len(days[on]) == 23
    assert days[on][1:3] == [
        (f"{on}T01:00:00+01:00", f"{on}T03:00:00+02:00"),
        (f"{on}T03:00:00+02:00", f"{on}T04:00:00+02:00"),
    ]


def test_new_york_dst_days_seen_from_new_york() -> None:
    back = next_transition("America/New_York", forward=False)
    fall = slots_for([JOHN], NEW_YORK, back, back)
    assert len(fall[str(back)]) == 25
    assert f"{back}T01:00:00-04:00" in starts(fall, str(back))
    assert f"{back}T01:00:00-05:00" in starts(fall, str(back))
    forward = next_transition("America/New_York", forward=True)
    spring = slots_for([JOHN], NEW_YORK, forward, forward)
    assert len(spring[str(forward)]) == 23
    assert f"{forward}T02:00:00-04:00" not in starts(spring, str(forward))


def test_jane_keeps_new_york_hours_while_only_europe_has_changed_clocks() -> None:
    # Europe leaves summer time a week before the US: for that week New York is five hours
    # behind Paris instead of six.
    europe = next_transition("Europe/Paris", forward=False, from_day=4)
    us = next_transition("America/New_York", forward=False, from_day=(europe - today()).days)
    assert us - europe == timedelta(days=7)
    friday, monday = europe - timedelta(days=2), europe + timedelta(days=1)
    days = slots_for([JANE], PARIS, friday, monday)
    assert days[str(friday)][0][0] == f"{friday}T15:00:00+02:00"
    assert days[str(monday)][0][0] == f"{monday}T14:00:00+01:00"
    assert days[str(monday)][-1][1] == f"{monday}T22:00:00+01:00"
    assert str(friday + timedelta(days=1)) not in days and str(europe) not in days


def test_new_york_dst_day_for_a_new_york_worker() -> None:
    monday = next_transition("America/New_York", forward=False) + timedelta(days=1)
    days = slots_for([JANE], NEW_YORK, monday, monday)
    assert days[str(monday)][0] == (f"{monday}T09:00:00-05:00", f"{monday}T10:00:00-05:00")
    assert len(days[str(monday)]) == 8


def test_kolkata_half_hour_offset() -> None:
    friday = next_weekday(FRIDAY)
    days = slots_for([PRIYA], UTC_ZONE, friday, friday)
    assert starts(days, str(friday)) == [f"{friday}T{h:02d}:30:00+00:00" for h in range(4, 12)]
    in_paris = slots_for([PRIYA], PARIS, friday, friday)
    # 10:00 in Kolkata is 06:30 in Paris in summer time, 05:30 in winter time.
    opening = at(friday, "10:00", "Asia/Kolkata").astimezone(PARIS).isoformat()
    assert in_paris[str(friday)][0][0] == opening


def test_kathmandu_quarter_hour_offset_on_a_nepali_sunday() -> None:
    sunday = next_weekday(SUNDAY)
    on = str(sunday)
    days = slots_for([ANISH], PARIS, sunday, sunday)
    assert starts(days, on) == [
        at(sunday, f"{h}:00", "Asia/Kathmandu").astimezone(PARIS).isoformat() for h in range(10, 17)
    ]
    assert all(
        start.endswith(":15:00+02:00") or start.endswith(":15:00+01:00")
        for start in starts(days, on)
    )
    own = slots_for([ANISH], ZoneInfo("Asia/Kathmandu"), sunday, sunday)
    assert own[on][0] == (f"{on}T10:00:00+05:45", f"{on}T11:00:00+05:45")
    # Saturday is his day off.
    saturday = sunday - timedelta(days=1)
    assert slots_for([ANISH], PARIS, saturday, saturday) == {}


def test_sydney_hours_are_cut_at_the_requested_zone_midnight_across_its_dst_start() -> None:
    # Olivia works 08:00-16:00 Sydney time, which straddles UTC midnight; Sydney moves from
    # +10:00 to +11:00 on a Sunday, so her Monday starts an hour earlier in UTC.
    sunday = next_transition("Australia/Sydney", forward=True, from_day=5)
    thursday = sunday - timedelta(days=3)
    friday, saturday, monday = (sunday + timedelta(days=n) for n in (-2, -1, 1))
    days = slots_for([OLIVIA], UTC_ZONE, thursday, monday)

    def utc(day: date, hours: range) -> list[str]:
        return [f"{day}T{h:02d}:00:00+00:00" for h in hours]

    assert starts(days, str(thursday)) == utc(thursday, range(6)) + utc(thursday, range(22, 24))
    assert starts(days, str(friday)) == utc(friday, range(6))
    assert str(saturday) not in days
    assert starts(days, str(sunday)) == utc(sunday, range(21, 24))
    assert starts(days, str(monday)) == utc(monday, range(5)) + utc(monday, range(21, 24))


def test_intersection_of_several_people_in_several_zones() -> None:
    # Priya 04:30-12:30Z minus her 07:30-08:30Z meeting; John's lunch starts at 12:00 Paris:
    # 10:00Z in summer time (one slot fits after her meeting), 11:00Z in winter time (two).
    thursday = seed_thursday()
    lunch = at(thursday, "12:00", "Europe/Paris").astimezone(UTC).hour
    days = slots_for([JOHN, PRIYA], UTC_ZONE, thursday, thursday)
    assert starts(days, str(thursday)) == [
        f"{thursday}T{h:02d}:30:00+00:00" for h in (4, 5, 6, *range(8, lunch - 1))
    ]
    # Priya's day ends before Jane's starts.
    assert slots_for([PRIYA, JANE], UTC_ZONE, thursday, thursday + timedelta(days=1)) == {}


def test_split_working_day_with_a_duration_that_does_not_divide_it() -> None:
    monday = next_weekday(MONDAY)
    days = slots_for([MARIE], PARIS, monday, monday, timedelta(minutes=45))
    assert starts(days, str(monday)) == [
        iso(monday, clock, "Europe/Paris")
        for clock in (
            "09:00",
            "09:45",
            "10:30",
            "11:15",
            "14:00",
            "14:45",
            "15:30",
            "16:15",
            "17:00",
        )
    ]


def test_someone_without_working_hours_is_never_free() -> None:
    assert slots_for([OSCAR], UTC_ZONE, today(), today() + timedelta(days=366)) == {}


def test_a_working_period_starting_in_a_skipped_hour_starts_after_the_jump() -> None:
    # Europe changes its clocks at 01:00 UTC.
    forward = next_transition("Europe/Paris", forward=True)
    back = next_transition("Europe/Paris", forward=False)
    assert wall_clock(forward, 150, PARIS) == datetime.combine(forward, time(1, 30), UTC)
    assert wall_clock(back, 150, PARIS) == datetime.combine(back, time(0, 30), UTC)
    assert wall_clock(back, 1440, PARIS) == datetime.combine(back, time(23), UTC)


def test_local_day_lengths() -> None:
    def hours(day: date, zone: ZoneInfo) -> float:
        start, end = local_day(day, zone)
        return (end - start) / HOUR

    assert hours(next_transition("Europe/Paris", forward=False), PARIS) == 25
    assert hours(next_transition("Europe/Paris", forward=True), PARIS) == 23
    sydney = next_transition("Australia/Sydney", forward=True)
    assert hours(sydney, ZoneInfo("Australia/Sydney")) == 23
    assert hours(sydney, ZoneInfo("Asia/Kathmandu")) == 24


def test_a_day_whose_midnight_does_not_exist_starts_at_one() -> None:
    santiago = ZoneInfo("America/Santiago")
    # Chile moves its clocks forward at midnight.
    forward = next_transition("America/Santiago", forward=True)
    start, end = local_day(forward, santiago)
    assert local_time(start, santiago) == f"{forward}T01:00:00-03:00"
    assert (end - start) / HOUR == 23
    # The day before ends exactly there: no instant is lost or counted twice.
    assert local_day(forward - timedelta(days=1), santiago)[1] == start


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

BASE = datetime.combine(today(), time(), UTC)


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
    # Around Europe's next fall-back weekend.
    first = next_transition("Europe/Paris", forward=False) - timedelta(days=2)
    last = first + timedelta(days=4)
    base = datetime.combine(first, time(), UTC)
    free = normalize(
        (base + timedelta(minutes=a), base + timedelta(minutes=a + n)) for a, n in pairs
    )
    step = timedelta(minutes=duration)
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

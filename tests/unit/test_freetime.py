"""Free-time domain: unit tests and property tests against a brute-force oracle (DESIGN §3.1)."""

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from functools import cache
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.freetime import (
    Interval,
    SlotMatch,
    candidate_starts,
    find_slots,
    format_instant,
    merge_intervals,
    parse_window,
)

# Local dates in 2026 on which each zone moves its clocks (one forward, one back), so that the
# slot grid crosses every kind of transition.
TRANSITION_DAYS: dict[str, tuple[date, ...]] = {
    "America/New_York": (date(2026, 3, 8), date(2026, 11, 1)),
    "Europe/Berlin": (date(2026, 3, 29), date(2026, 10, 25)),
    "Australia/Sydney": (date(2026, 4, 5), date(2026, 10, 4)),
    "America/St_Johns": (date(2026, 3, 8), date(2026, 11, 1)),
    # Midnight itself is skipped or repeated in these three.
    "America/Santiago": (date(2026, 4, 4), date(2026, 9, 6)),
    "Asia/Beirut": (date(2026, 3, 29), date(2026, 10, 24)),
    "America/Havana": (date(2026, 3, 8), date(2026, 11, 1)),
    # Half-hour DST.
    "Australia/Lord_Howe": (date(2026, 4, 5), date(2026, 10, 4)),
}
# Zones without DST (fractional offsets included), on arbitrary days.
STEADY_DAYS: dict[str, tuple[date, ...]] = {
    "Asia/Kolkata": (date(2026, 3, 8), date(2026, 10, 25)),
    "Asia/Kathmandu": (date(2026, 1, 15), date(2026, 7, 1)),
    "UTC": (date(2026, 6, 30), date(2026, 12, 31)),
}
ANCHORS: list[tuple[str, date]] = [
    (zone, day)
    for table in (TRANSITION_DAYS, STEADY_DAYS)
    for zone, days in table.items()
    for day in days
]
STEPS = st.sampled_from([5, 7, 15, 30, 45, 60, 90, 1440]) | st.integers(5, 1440)
DURATIONS = st.sampled_from([5, 15, 30, 45, 60, 90, 120, 480, 1440]) | st.integers(5, 1440)
QUARTER_HOUR = 900


def posix(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp())


# --- the oracle: deliberately naive, shares nothing with the implementation -----------------


@cache
def oracle_wall_minutes(day: date, tz: ZoneInfo) -> tuple[tuple[int, int], ...]:
    """(minute after local midnight, instant) for every existing wall-clock minute of the day."""
    found: list[tuple[int, int]] = []
    for minute in range(24 * 60):
        hour, minute_of_hour = divmod(minute, 60)
        for fold in (0, 1):
            local = datetime(
                day.year, day.month, day.day, hour, minute_of_hour, tzinfo=tz, fold=fold
            )
            instant = local.astimezone(UTC)
            # A wall time exists when going to UTC and back lands on the same wall time.
            if instant.astimezone(tz).replace(tzinfo=None) == local.replace(tzinfo=None):
                found.append((minute, int(instant.timestamp())))
    return tuple(found)


def oracle_grid(first: date, last: date, tz: ZoneInfo, step: int) -> list[int]:
    instants: set[int] = set()
    day = first
    while day <= last:
        instants.update(at for minute, at in oracle_wall_minutes(day, tz) if minute % step == 0)
        day += timedelta(days=1)
    return sorted(instants)


def oracle_free(windows: Sequence[Interval], start: int, end: int) -> bool:
    """[start, end) lies inside the union of windows.

    Coverage can only start to fail at `start` or where some window ends, so checking those
    points is enough.
    """
    probes = {start} | {e for _, e in windows if start < e < end}
    return all(any(s <= probe < e for s, e in windows) for probe in probes)


def oracle_slots(
    free: Sequence[Sequence[Interval]],
    first: date,
    last: date,
    tz: ZoneInfo,
    duration: int,
    step: int,
    required: int,
) -> list[tuple[int, int, tuple[int, ...]]]:
    found = []
    for t in oracle_grid(first, last, tz, step):
        end = t + duration * 60
        who = tuple(i for i, windows in enumerate(free) if oracle_free(windows, t, end))
        if len(who) >= required:
            found.append((t, end, who))
    return found


# --- strategies ------------------------------------------------------------------------------


@st.composite
def windows_near(draw: st.DrawFn, lo: int, hi: int, least: int = 0) -> list[Interval]:
    """Windows starting in [lo, hi]: aligned and odd-second ones, overlapping, touching, empty."""
    windows: list[Interval] = []
    for _ in range(draw(st.integers(least, 5))):
        start = draw(st.integers(lo, hi))
        kind = draw(st.sampled_from(["quarters", "aligned", "nudged", "odd", "empty"]))
        if kind == "quarters":
            # An upstream answer of back-to-back 15-minute slots: touching windows.
            start -= start % QUARTER_HOUR
            for index in range(draw(st.integers(1, 40))):
                windows.append((start + index * QUARTER_HOUR, start + (index + 1) * QUARTER_HOUR))
        elif kind == "aligned":
            start -= start % 300
            windows.append((start, start + 300 * draw(st.integers(1, 500))))
        elif kind == "nudged":
            # One second either side of a grid-aligned edge is where off-by-one errors show.
            start -= start % 300
            end = start + 300 * draw(st.integers(1, 500))
            windows.append(
                (start + draw(st.sampled_from([-1, 0, 1])), end + draw(st.sampled_from([-1, 0, 1])))
            )
        elif kind == "odd":
            windows.append((start, start + draw(st.integers(1, 2 * 86_400))))
        else:
            windows.append((start, start))
    return windows


@st.composite
def scenarios(
    draw: st.DrawFn,
) -> tuple[list[list[Interval]], date, date, ZoneInfo, int, int, int]:
    zone, anchor = draw(st.sampled_from(ANCHORS))
    span = draw(st.integers(1, 3))
    first = anchor - timedelta(days=draw(st.integers(0, span - 1)))
    last = first + timedelta(days=span - 1)
    # Local days lie within 14 hours of the same UTC days; reach a little past that.
    lo = int(datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp()) - 16 * 3600
    hi = int(datetime(last.year, last.month, last.day, tzinfo=UTC).timestamp()) + 40 * 3600
    count = draw(st.integers(1, 8))
    # Windows most participants share make matches for a large `required` likely.
    shared = draw(windows_near(lo, hi, least=1))
    free = []
    for _ in range(count):
        own = draw(windows_near(lo, hi))
        if draw(st.sampled_from([True, True, True, False])):
            own = own + shared
        free.append(draw(st.permutations(own)))
    return (
        free,
        first,
        last,
        ZoneInfo(zone),
        draw(DURATIONS),
        draw(STEPS),
        draw(st.integers(1, count) | st.just(count)),
    )


# --- find_slots against the oracle -----------------------------------------------------------


@settings(max_examples=400, deadline=None, database=None)
@given(scenarios())
def test_find_slots_matches_oracle(
    scenario: tuple[list[list[Interval]], date, date, ZoneInfo, int, int, int],
) -> None:
    free, first, last, tz, duration, step, required = scenario
    got = find_slots(
        free,
        first=first,
        last=last,
        tz=tz,
        duration_minutes=duration,
        step_minutes=step,
        required=required,
    )
    expected = oracle_slots(free, first, last, tz, duration, step, required)
    assert [(m.start, m.end, m.participants) for m in got] == expected


@settings(max_examples=150, deadline=None, database=None)
@given(
    anchor=st.sampled_from(ANCHORS),
    back=st.integers(0, 2),
    span=st.integers(1, 3),
    step=STEPS | st.integers(1, 4),
)
def test_candidate_starts_matches_oracle(
    anchor: tuple[str, date], back: int, span: int, step: int
) -> None:
    zone, day = anchor
    first = day - timedelta(days=back)
    last = first + timedelta(days=span - 1)
    tz = ZoneInfo(zone)
    assert candidate_starts(first, last, tz, step) == oracle_grid(first, last, tz, step)


@pytest.mark.parametrize(("zone", "day"), [(z, d) for z, ds in TRANSITION_DAYS.items() for d in ds])
def test_transition_days_really_change_offset(zone: str, day: date) -> None:
    # Guards the test data: each listed day must skip or repeat some wall-clock minutes.
    assert len(oracle_wall_minutes(day, ZoneInfo(zone))) != 24 * 60


# --- merge_intervals -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_intervals", "expected"),
    [
        ([], []),
        ([(1, 5)], [(1, 5)]),
        ([(1, 5), (5, 9)], [(1, 9)]),
        ([(5, 9), (1, 5)], [(1, 9)]),
        ([(1, 5), (6, 9)], [(1, 5), (6, 9)]),
        ([(1, 10), (2, 3), (4, 12)], [(1, 12)]),
        ([(1, 10), (2, 3)], [(1, 10)]),
        ([(3, 4), (3, 4), (3, 4)], [(3, 4)]),
        ([(3, 3), (7, 2), (1, 2)], [(1, 2)]),
        ([(-10, -5), (-5, 0), (10, 20)], [(-10, 0), (10, 20)]),
    ],
)
def test_merge_intervals(given_intervals: list[Interval], expected: list[Interval]) -> None:
    assert merge_intervals(given_intervals) == expected


def test_merge_intervals_accepts_any_iterable() -> None:
    assert merge_intervals(iter([(4, 6), (0, 2)])) == [(0, 2), (4, 6)]


@settings(max_examples=300, database=None)
@given(st.lists(st.tuples(st.integers(-30, 30), st.integers(-30, 30)), max_size=12))
def test_merge_intervals_same_points_sorted_and_separated(intervals: list[Interval]) -> None:
    merged = merge_intervals(intervals)
    points = {x for s, e in intervals for x in range(s, e)}
    assert {x for s, e in merged for x in range(s, e)} == points
    assert all(s < e for s, e in merged)
    # Strictly increasing and never touching.
    assert all(a[1] < b[0] for a, b in pairwise(merged))


# --- parse_window ----------------------------------------------------------------------------


def test_parse_window_with_offset() -> None:
    assert parse_window("2020-10-01T09:00:00+02:00", "2020-10-01T10:00:00+02:00") == (
        1_601_535_600,
        1_601_539_200,
    )


def test_parse_window_z_and_mixed_offsets() -> None:
    assert parse_window("2020-10-01T07:00:00Z", "2020-10-01T13:45:00+05:45") == (
        1_601_535_600,
        1_601_539_200,
    )


def test_parse_window_fractional_seconds_shrink_the_window() -> None:
    assert parse_window("2020-10-01T07:00:00.250Z", "2020-10-01T08:00:00.999999Z") == (
        1_601_535_601,
        1_601_539_200,
    )
    assert parse_window("2020-10-01T07:00:00.000Z", "2020-10-01T08:00:00.000Z") == (
        1_601_535_600,
        1_601_539_200,
    )


def test_parse_window_within_one_second_is_empty() -> None:
    start, end = parse_window("2020-10-01T07:00:00.2Z", "2020-10-01T07:00:00.7Z")
    assert start == end


def test_parse_window_empty_is_allowed() -> None:
    assert parse_window("2020-10-01T07:00:00Z", "2020-10-01T09:00:00+02:00") == (
        1_601_535_600,
        1_601_535_600,
    )


def test_parse_window_before_1970() -> None:
    assert parse_window("1969-12-31T23:59:59.5Z", "1970-01-01T00:00:00Z") == (0, 0)
    assert parse_window("1969-12-31T23:00:00-01:00", "1970-01-01T00:00:01Z") == (0, 1)


@pytest.mark.parametrize(
    ("start", "end"),
    [
        ("2020-10-01T09:00:00", "2020-10-01T10:00:00+02:00"),
        ("2020-10-01T09:00:00+02:00", "2020-10-01T10:00:00"),
        ("2020-10-01", "2020-10-02"),
        ("not a date", "2020-10-01T10:00:00+02:00"),
        ("2020-10-01T09:00:00+02:00", ""),
        ("2020-13-01T09:00:00+02:00", "2020-13-01T10:00:00+02:00"),
        ("2020-10-01T10:00:00+02:00", "2020-10-01T09:00:00+02:00"),
        ("2020-10-01T09:00:00Z", "2020-10-01T10:00:00+02:00"),
    ],
)
def test_parse_window_rejects(start: str, end: str) -> None:
    with pytest.raises(ValueError, match=r"\S"):
        parse_window(start, end)


# --- candidate_starts ------------------------------------------------------------------------


def hours(day: str, offsets: Sequence[tuple[int, str]]) -> list[int]:
    return [posix(f"{day}T{hour:02d}:00:00{offset}") for hour, offset in offsets]


def test_candidate_starts_spring_forward_new_york() -> None:
    # 02:00 does not exist on 2026-03-08: clocks jump from 02:00 EST to 03:00 EDT.
    expected = hours(
        "2026-03-08",
        [(0, "-05:00"), (1, "-05:00")] + [(h, "-04:00") for h in range(3, 24)],
    )
    got = candidate_starts(date(2026, 3, 8), date(2026, 3, 8), ZoneInfo("America/New_York"), 60)
    assert got == expected
    assert len(got) == 23


def test_candidate_starts_fall_back_new_york() -> None:
    # 01:00 happens twice on 2026-11-01: first in EDT, then in EST.
    expected = hours(
        "2026-11-01",
        [(0, "-04:00"), (1, "-04:00"), (1, "-05:00")] + [(h, "-05:00") for h in range(2, 24)],
    )
    got = candidate_starts(date(2026, 11, 1), date(2026, 11, 1), ZoneInfo("America/New_York"), 60)
    assert got == expected
    assert len(got) == 25


def test_candidate_starts_lord_howe_half_hour_shift() -> None:
    tz = ZoneInfo("Australia/Lord_Howe")
    spring = candidate_starts(date(2026, 10, 4), date(2026, 10, 4), tz, 30)
    # Clocks go from 02:00 to 02:30 (+10:30 -> +11:00): only the 02:00 wall time is skipped.
    assert [format_instant(t, tz)[11:] for t in spring[3:6]] == [
        "01:30:00+10:30",
        "02:30:00+11:00",
        "03:00:00+11:00",
    ]
    assert len(spring) == 47
    autumn = candidate_starts(date(2026, 4, 5), date(2026, 4, 5), tz, 30)
    assert [format_instant(t, tz)[11:] for t in autumn[3:6]] == [
        "01:30:00+11:00",
        "01:30:00+10:30",
        "02:00:00+10:30",
    ]
    assert len(autumn) == 49


def test_candidate_starts_midnight_missing_santiago() -> None:
    # Chile springs forward at midnight: the day starts at 01:00.
    tz = ZoneInfo("America/Santiago")
    got = candidate_starts(date(2026, 9, 6), date(2026, 9, 6), tz, 1440)
    assert got == []
    got = candidate_starts(date(2026, 9, 5), date(2026, 9, 7), tz, 1440)
    assert [format_instant(t, tz) for t in got] == [
        "2026-09-05T00:00:00-04:00",
        "2026-09-07T00:00:00-03:00",
    ]


def test_candidate_starts_step_restarts_at_each_local_midnight() -> None:
    utc = ZoneInfo("UTC")
    got = candidate_starts(date(2026, 6, 1), date(2026, 6, 2), utc, 7 * 60)
    assert got == hours("2026-06-01", [(h, "Z") for h in (0, 7, 14, 21)]) + hours(
        "2026-06-02", [(h, "Z") for h in (0, 7, 14, 21)]
    )


def test_candidate_starts_empty_range_and_bad_step() -> None:
    utc = ZoneInfo("UTC")
    assert candidate_starts(date(2026, 6, 2), date(2026, 6, 1), utc, 30) == []
    with pytest.raises(ValueError, match="step"):
        candidate_starts(date(2026, 6, 1), date(2026, 6, 1), utc, 0)


# --- format_instant --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "text"),
    [
        ("Asia/Kathmandu", "2026-01-15T09:00:00+05:45"),
        ("Asia/Kolkata", "2026-01-15T09:00:00+05:30"),
        ("America/St_Johns", "2026-07-01T09:00:00-02:30"),
        ("America/St_Johns", "2026-01-15T09:00:00-03:30"),
        ("UTC", "2026-01-15T09:00:00+00:00"),
        ("Europe/Paris", "2020-10-01T09:00:00+02:00"),
        ("America/New_York", "2026-11-01T01:30:00-04:00"),
        ("America/New_York", "2026-11-01T01:30:00-05:00"),
    ],
)
def test_format_instant(zone: str, text: str) -> None:
    assert format_instant(posix(text), ZoneInfo(zone)) == text


def test_format_instant_epoch_and_historic_offset() -> None:
    assert format_instant(0, ZoneInfo("UTC")) == "1970-01-01T00:00:00+00:00"
    assert format_instant(59, ZoneInfo("Asia/Kathmandu")) == "1970-01-01T05:30:59+05:30"


# --- find_slots ------------------------------------------------------------------------------


def test_find_slots_design_example() -> None:
    paris = ZoneInfo("Europe/Paris")
    morning = parse_window("2020-10-01T09:00:00+02:00", "2020-10-01T12:00:00+02:00")
    late = parse_window("2020-10-01T10:00:00+02:00", "2020-10-01T11:30:00+02:00")
    got = find_slots(
        [[morning], [late]],
        first=date(2020, 10, 1),
        last=date(2020, 10, 2),
        tz=paris,
        duration_minutes=60,
        step_minutes=60,
        required=2,
    )
    assert got == [
        SlotMatch(posix("2020-10-01T10:00:00+02:00"), posix("2020-10-01T11:00:00+02:00"), (0, 1))
    ]
    assert format_instant(got[0].start, paris) == "2020-10-01T10:00:00+02:00"


def test_find_slots_touching_windows_count_as_one_and_partial_quorum_lists_who() -> None:
    utc = ZoneInfo("UTC")
    nine = posix("2026-06-01T09:00:00Z")
    quarters = [(nine + k * QUARTER_HOUR, nine + (k + 1) * QUARTER_HOUR) for k in range(4)]
    got = find_slots(
        [quarters, [], [(nine + 1800, nine + 3600)]],
        first=date(2026, 6, 1),
        last=date(2026, 6, 1),
        tz=utc,
        duration_minutes=30,
        step_minutes=15,
        required=1,
    )
    assert [(m.start - nine, m.participants) for m in got] == [
        (0, (0,)),
        (900, (0,)),
        (1800, (0, 2)),
    ]


def test_find_slots_slot_may_run_past_the_last_day() -> None:
    utc = ZoneInfo("UTC")
    late = posix("2026-06-01T23:00:00Z")
    got = find_slots(
        [[(late, late + 7200)]],
        first=date(2026, 6, 1),
        last=date(2026, 6, 1),
        tz=utc,
        duration_minutes=120,
        step_minutes=60,
        required=1,
    )
    assert [(m.start, m.end) for m in got] == [(late, late + 7200)]


def test_find_slots_window_edges_exact_to_the_second() -> None:
    utc = ZoneInfo("UTC")
    midnight = posix("2026-06-01T00:00:00Z")
    half_hour = 1800

    def starts(windows: list[Interval]) -> list[int]:
        got = find_slots(
            [windows],
            first=date(2026, 6, 1),
            last=date(2026, 6, 1),
            tz=utc,
            duration_minutes=30,
            step_minutes=30,
            required=1,
        )
        return [m.start - midnight for m in got]

    # A window ending exactly where the first slot of the grid ends still gives that slot.
    assert starts([(midnight - 3600, midnight + half_hour)]) == [0]
    assert starts([(midnight - 3600, midnight + half_hour - 1)]) == []
    assert starts([(midnight + 1, midnight + 2 * half_hour - 1)]) == []
    # The one-second hole at 00:30 rules out the slot starting there.
    hole = [(midnight, midnight + half_hour), (midnight + half_hour + 1, midnight + 7200)]
    assert starts(hole) == [0, 3600, 5400]
    last_slot = midnight + 86_400 - half_hour
    assert starts([(last_slot, last_slot + half_hour)]) == [86_400 - half_hour]
    assert starts([(last_slot + 1, last_slot + 3600)]) == []


@pytest.mark.parametrize(
    ("duration", "required", "match"),
    [(0, 1, "duration"), (30, 0, "required"), (30, 3, "required")],
)
def test_find_slots_rejects_bad_arguments(duration: int, required: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        find_slots(
            [[], []],
            first=date(2026, 6, 1),
            last=date(2026, 6, 1),
            tz=ZoneInfo("UTC"),
            duration_minutes=duration,
            step_minutes=30,
            required=required,
        )


# --- the sweep's runs and the Slots columns ----------------------------------------------------


@settings(max_examples=100, deadline=None, database=None)
@given(scenarios(), st.integers(2, 4), st.none() | st.integers(1, 40))
def test_find_slots_matches_oracle_with_long_runs_of_candidates(
    scenario: tuple[list[list[Interval]], date, date, ZoneInfo, int, int, int],
    step: int,
    limit: int | None,
) -> None:
    # Steps of a few minutes put hundreds of candidates between two changes of who is free:
    # the sweep copies such runs whole, and must stop exactly at the limit inside one.
    free, first, last, tz, duration, _, required = scenario
    got = find_slots(
        free,
        first=first,
        last=last,
        tz=tz,
        duration_minutes=duration,
        step_minutes=step,
        required=required,
        limit=limit,
    )
    expected = oracle_slots(free, first, last, tz, duration, step, required)
    if limit is not None:
        expected = expected[:limit]
    assert [(m.start, m.end, m.participants) for m in got] == expected


def test_slots_read_as_a_sequence_of_slot_matches() -> None:
    got = find_slots(
        [[(0, 7200)], [(1800, 7200)]],
        first=date(1970, 1, 1),
        last=date(1970, 1, 1),
        tz=ZoneInfo("UTC"),
        duration_minutes=30,
        step_minutes=30,
        required=1,
    )
    expected = [
        SlotMatch(0, 1800, (0,)),
        SlotMatch(1800, 3600, (0, 1)),
        SlotMatch(3600, 5400, (0, 1)),
        SlotMatch(5400, 7200, (0, 1)),
    ]
    assert got == expected and expected == got
    assert len(got) == 4
    assert got[1] == expected[1] and got[-1] == expected[-1]
    assert got[1:3] == expected[1:3]
    assert list(got) == expected
    assert got != expected[:3]
    assert got != "not slots"
    assert repr(got) == f"Slots({expected!r})"
    starts, members, duration, stranded = got.columns()
    assert (starts, members, duration, stranded) == (
        [0, 1800, 3600, 5400],
        [(0,), (0, 1), (0, 1), (0, 1)],
        1800,
        None,
    )
    with pytest.raises(IndexError):
        got[4]

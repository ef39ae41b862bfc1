"""find_slots' rules beyond Vyte's (buffers, notice, order=best, limit), DESIGN §3.1 rule 5:
unit cases and property tests against a brute-force oracle, on days computed from today."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.domain.freetime import Interval, Order, SlotMatch, find_slots, format_instant

TODAY = datetime.now(UTC).date()
MINUTE = 60
DAY = 86_400
QUARTER_HOUR = 900


# --- the days to test on: each zone's next transitions, computed from today -----------------


def day_length(day: date, tz: ZoneInfo) -> int:
    """Seconds from one local midnight to the next (through UTC: aware subtraction in one zone
    would compare wall clocks)."""
    after = day + timedelta(days=1)
    start = datetime(day.year, day.month, day.day, tzinfo=tz).timestamp()
    end = datetime(after.year, after.month, after.day, tzinfo=tz).timestamp()
    return int(end - start)


@cache
def next_transitions(zone: str) -> tuple[date, ...]:
    """The next two local dates (after today) on which the zone moves its clocks."""
    tz = ZoneInfo(zone)
    found: list[date] = []
    day = TODAY + timedelta(days=1)
    while len(found) < 2 and day < TODAY + timedelta(days=400):
        if day_length(day, tz) != DAY:
            found.append(day)
        day += timedelta(days=1)
    return tuple(found)


def next_day_with_offset(zone: str, offset: timedelta) -> date:
    """The first date after today on which the zone keeps ``offset`` all day."""
    tz = ZoneInfo(zone)
    day = TODAY + timedelta(days=1)
    while not (
        day_length(day, tz) == DAY
        and datetime(day.year, day.month, day.day, 12, tzinfo=tz).utcoffset() == offset
    ):
        day += timedelta(days=1)
    return day


DST_ZONES = ("Europe/Paris", "America/New_York", "Australia/Sydney", "America/St_Johns")
# Fractional offsets: +05:30 and +05:45 all year, -03:30 in St John's winter.
STEADY = (
    ("Asia/Kolkata", timedelta(hours=5, minutes=30)),
    ("Asia/Kathmandu", timedelta(hours=5, minutes=45)),
    ("America/St_Johns", -timedelta(hours=3, minutes=30)),
)
ANCHORS: list[tuple[str, date]] = [
    (zone, day) for zone in DST_ZONES for day in next_transitions(zone)
] + [(zone, next_day_with_offset(zone, offset)) for zone, offset in STEADY]


@pytest.mark.parametrize("zone", DST_ZONES)
def test_next_transitions_are_one_short_and_one_long_day(zone: str) -> None:
    # Guards the test data: the property tests below really cross both kinds of change.
    lengths = sorted(day_length(day, ZoneInfo(zone)) for day in next_transitions(zone))
    assert len(lengths) == 2
    assert lengths[0] < DAY < lengths[1]


@pytest.mark.parametrize(("zone", "offset"), STEADY)
def test_steady_days_have_the_fractional_offset(zone: str, offset: timedelta) -> None:
    day = next_day_with_offset(zone, offset)
    assert day > TODAY
    noon = datetime(day.year, day.month, day.day, 12, tzinfo=ZoneInfo(zone))
    assert noon.utcoffset() == offset
    assert offset.seconds % 3600 != 0


# --- the oracle: minute by minute over free time written out second by second ---------------
# It shares nothing with the kernel: no interval merging, no sweep, no grid arithmetic.


def oracle_grid(first: date, last: date, tz: ZoneInfo, step: int) -> list[int]:
    """Every existing local wall time at a multiple of ``step`` minutes after midnight."""
    found: set[int] = set()
    day = first
    while day <= last:
        for minute in range(0, 24 * 60, step):
            for fold in (0, 1):
                wall = datetime(day.year, day.month, day.day, minute // 60, minute % 60, fold=fold)
                instant = int(wall.replace(tzinfo=tz).timestamp())
                # The wall time exists when the instant reads back as the same wall time.
                if datetime.fromtimestamp(instant, tz).replace(tzinfo=None) == wall:
                    found.add(instant)
        day += timedelta(days=1)
    return sorted(found)


class OracleFreeTime:
    """One participant's free time as one byte per second of ``[origin, origin + size)``."""

    def __init__(self, windows: Sequence[Interval], origin: int, size: int) -> None:
        self.origin = origin
        self.seconds = bytearray(size)
        for start, end in windows:
            if start < end:
                assert origin < start and end < origin + size
                self.seconds[start - origin : end - origin] = b"\x01" * (end - start)

    def minute_free(self, at: int) -> bool:
        index = at - self.origin
        return self.seconds.count(b"\x00", index, index + MINUTE) == 0

    def free(self, start: int, end: int) -> bool:
        """Every minute of ``[start, end)`` is free."""
        return all(self.minute_free(at) for at in range(start, end, MINUTE))

    def around(self, start: int, end: int) -> tuple[int, int]:
        """The free stretch holding ``[start, end)``: from the busy second before it to the one
        after it."""
        before = self.seconds.rfind(b"\x00", 0, start - self.origin)
        after = self.seconds.find(b"\x00", end - self.origin)
        assert before >= 0 and after >= 0
        return self.origin + before + 1, self.origin + after


def oracle_slots(
    free: Sequence[Sequence[Interval]],
    first: date,
    last: date,
    tz: ZoneInfo,
    duration: int,
    step: int,
    required: int,
    before: int,
    after: int,
    not_before: datetime | None,
    order: str,
    limit: int | None,
) -> list[tuple[int, int, tuple[int, ...], int]]:
    """(start, end, participants, stranded minutes) straight from DESIGN §3.1: every candidate,
    every participant, every minute of the buffered slot; the stranded seconds of a slot's
    gaps are summed and rounded up, as find_slots documents."""
    grid = oracle_grid(first, last, tz, step)
    if not grid:
        return []
    edges = [s for windows in free for s, _ in windows] + [
        e for windows in free for _, e in windows
    ]
    origin = min([grid[0] - before * MINUTE, *edges]) - 2 * MINUTE
    size = max([grid[-1] + (duration + after) * MINUTE, *edges]) + 2 * MINUTE - origin
    people = [OracleFreeTime(windows, origin, size) for windows in free]
    found = []
    for t in grid:
        if not_before is not None and datetime.fromtimestamp(t, UTC) < not_before:
            continue
        start, end = t - before * MINUTE, t + (duration + after) * MINUTE
        who = tuple(i for i, person in enumerate(people) if person.free(start, end))
        if len(who) < required:
            continue
        stranded = 0
        for i in who:
            stretch_start, stretch_end = people[i].around(start, end)
            for gap in (start - stretch_start, stretch_end - end):
                if 0 < gap < duration * MINUTE:
                    stranded += gap
        found.append((t, t + duration * MINUTE, who, math.ceil(stranded / MINUTE)))
    if order == "best":
        found.sort(key=lambda slot: (-len(slot[2]), slot[3], slot[0]))
    return found if limit is None else found[:limit]


# --- strategies ------------------------------------------------------------------------------


@st.composite
def windows_near(
    draw: st.DrawFn, lo: int, hi: int, fitted: Fitted, least: int = 0
) -> list[Interval]:
    """Windows starting in [lo, hi]: Vyte's back-to-back quarters, aligned, a second off an
    aligned edge, odd seconds, empty, and ones fitted to the query (below)."""
    windows: list[Interval] = []
    for _ in range(draw(st.integers(least, 5))):
        start = draw(st.integers(lo, hi))
        kind = draw(st.sampled_from(["quarters", "aligned", "nudged", "odd", "empty", "fitted"]))
        if kind == "fitted":
            windows.append(draw(fitted_window(fitted)))
        elif kind == "quarters":
            start -= start % QUARTER_HOUR
            for index in range(draw(st.integers(1, 40))):
                windows.append((start + index * QUARTER_HOUR, start + (index + 1) * QUARTER_HOUR))
        elif kind == "aligned":
            start -= start % 300
            windows.append((start, start + 300 * draw(st.integers(1, 200))))
        elif kind == "nudged":
            start -= start % 300
            end = start + 300 * draw(st.integers(1, 200))
            windows.append(
                (start + draw(st.sampled_from([-1, 0, 1])), end + draw(st.sampled_from([-1, 0, 1])))
            )
        elif kind == "odd":
            windows.append((start, start + draw(st.integers(1, DAY))))
        else:
            windows.append((start, start))
    return windows


@attrs.frozen
class Scenario:
    free: list[list[Interval]]
    first: date
    last: date
    tz: ZoneInfo
    duration: int
    step: int
    required: int
    before: int
    after: int
    not_before: datetime | None
    order: Order
    limit: int | None

    def kernel(self) -> list[SlotMatch]:
        return find_slots(
            self.free,
            first=self.first,
            last=self.last,
            tz=self.tz,
            duration_minutes=self.duration,
            step_minutes=self.step,
            required=self.required,
            buffer_before_minutes=self.before,
            buffer_after_minutes=self.after,
            not_before=self.not_before,
            order=self.order,
            limit=self.limit,
        )

    def oracle(self) -> list[tuple[int, int, tuple[int, ...], int]]:
        return oracle_slots(
            self.free,
            self.first,
            self.last,
            self.tz,
            self.duration,
            self.step,
            self.required,
            self.before,
            self.after,
            self.not_before,
            self.order,
            self.limit,
        )


BUFFERS = st.sampled_from([0, 5, 10, 15, 30, 720]) | st.integers(0, 120)
ORDERS: st.SearchStrategy[Order] = st.sampled_from(["start", "best"])


@attrs.frozen
class Fitted:
    """What a window needs to sit exactly on the query: candidates, buffers, the meeting."""

    grid: list[int]
    before: int
    after: int
    duration: int


@st.composite
def fitted_window(draw: st.DrawFn, fitted: Fitted) -> Interval:
    """A window whose buffered first slot starts on a candidate and which holds a whole number
    of meetings, give or take a second or a minute: where a gap of exactly 0 or exactly the
    meeting's length (not stranded) meets one a second shorter (stranded)."""
    start = draw(st.sampled_from(fitted.grid)) - fitted.before * MINUTE
    meetings = draw(st.integers(1, 3))
    length = (fitted.before + meetings * fitted.duration + fitted.after) * MINUTE
    nudge = st.sampled_from([-MINUTE, -1, 0, 0, 0, 1, MINUTE])
    return (start + draw(nudge), start + length + draw(nudge))


@st.composite
def scenarios(draw: st.DrawFn, anchors: Sequence[tuple[str, date]] = ANCHORS) -> Scenario:
    zone, anchor = draw(st.sampled_from(anchors))
    tz = ZoneInfo(zone)
    span = draw(st.integers(1, 2))
    first = anchor - timedelta(days=draw(st.integers(0, span - 1)))
    last = first + timedelta(days=span - 1)
    duration = draw(st.sampled_from([5, 15, 30, 45, 60, 90, 120]) | st.integers(5, 240))
    step = draw(st.sampled_from([5, 15, 30, 60]) | st.integers(5, 180))
    before, after = draw(BUFFERS), draw(BUFFERS)
    grid = oracle_grid(first, last, tz, step) or [
        int(datetime(first.year, first.month, first.day, tzinfo=tz).timestamp())
    ]
    fitted = Fitted(grid, before, after, duration)
    # Local days lie within 14 hours of the same UTC days; reach a little past that.
    lo = int(datetime(first.year, first.month, first.day, tzinfo=UTC).timestamp()) - 16 * 3600
    hi = int(datetime(last.year, last.month, last.day, tzinfo=UTC).timestamp()) + 40 * 3600
    count = draw(st.integers(1, 6))
    # Windows most participants share make slots with several participants likely.
    shared = draw(windows_near(lo, hi, fitted, least=1))
    free = []
    for _ in range(count):
        own = draw(windows_near(lo, hi, fitted))
        if draw(st.sampled_from([True, True, True, False])):
            own = own + shared
        free.append(draw(st.permutations(own)))
    not_before = None
    if draw(st.booleans()):
        at = draw(st.integers(lo, hi)) + draw(st.integers(0, 999_999)) / 1_000_000
        not_before = datetime.fromtimestamp(at, draw(st.sampled_from([UTC, tz])))
    return Scenario(
        free=free,
        first=first,
        last=last,
        tz=tz,
        duration=duration,
        step=step,
        required=draw(st.integers(1, count)),
        before=before,
        after=after,
        not_before=not_before,
        order=draw(ORDERS),
        limit=draw(st.none() | st.integers(1, 30)),
    )


# --- find_slots against the oracle -----------------------------------------------------------


@settings(max_examples=300, deadline=None, database=None)
@given(scenarios())
def test_find_slots_rules_match_oracle(scenario: Scenario) -> None:
    got = scenario.kernel()
    expected = scenario.oracle()
    if scenario.order == "best":
        assert [(m.start, m.end, m.participants, m.stranded_minutes) for m in got] == expected
    else:
        assert [(m.start, m.end, m.participants) for m in got] == [e[:3] for e in expected]
        assert all(m.stranded_minutes is None for m in got)


# Before 1972 Monrovia kept -00:44:30, so its candidates fall 30 s off the minute, and on
# 1972-01-07 it skipped 44 min 30 s: the kernel must not assume whole minutes anywhere.
# (Historic dates are fine here: the kernel is pure and never compares them with now.)
OFF_THE_MINUTE: list[tuple[str, date]] = [
    ("Africa/Monrovia", date(1971, 6, 1)),
    ("Africa/Monrovia", date(1972, 1, 7)),
]


def test_off_the_minute_days_really_are() -> None:
    tz = ZoneInfo("Africa/Monrovia")
    assert all(t % MINUTE == 30 for t in oracle_grid(date(1971, 6, 1), date(1971, 6, 1), tz, 15))
    assert day_length(date(1972, 1, 7), tz) == DAY - 44 * MINUTE - 30


@settings(max_examples=100, deadline=None, database=None)
@given(scenarios(OFF_THE_MINUTE))
def test_find_slots_rules_match_oracle_off_the_minute(scenario: Scenario) -> None:
    got = scenario.kernel()
    expected = scenario.oracle()
    if scenario.order == "best":
        assert [(m.start, m.end, m.participants, m.stranded_minutes) for m in got] == expected
    else:
        assert [(m.start, m.end, m.participants) for m in got] == [e[:3] for e in expected]


# --- unit cases ------------------------------------------------------------------------------

PARIS = ZoneInfo("Europe/Paris")


def ordinary_day(tz: ZoneInfo) -> date:
    """A date a week or more ahead on which the zone keeps one offset."""
    day = TODAY + timedelta(days=7)
    while day_length(day, tz) != DAY:
        day += timedelta(days=1)
    return day


def at(day: date, wall: str, tz: ZoneInfo = PARIS) -> int:
    """The instant of a local wall time ("09:30", or "09:00:30") on ``day``."""
    hour, minute, second = (int(part) for part in f"{wall}:00".split(":")[:3])
    return int(datetime(day.year, day.month, day.day, hour, minute, second, tzinfo=tz).timestamp())


def slots(
    free: Sequence[Sequence[Interval]],
    day: date,
    *,
    duration: int = 60,
    step: int = 30,
    required: int = 1,
    order: Order = "best",
    **rules: int | datetime | None,
) -> list[tuple[str, int | None]]:
    """find_slots on one day in Paris, as (local start "HH:MM", stranded minutes)."""
    got = find_slots(
        free,
        first=day,
        last=day,
        tz=PARIS,
        duration_minutes=duration,
        step_minutes=step,
        required=required,
        order=order,
        **rules,  # type: ignore[arg-type]
    )
    return [(format_instant(m.start, PARIS)[11:16], m.stranded_minutes) for m in got]


def test_worked_example_best_order() -> None:
    # DESIGN §3.1 rule 5: free 09:00-12:00, 60 minutes, step 30.
    day = ordinary_day(PARIS)
    free = [[(at(day, "09:00"), at(day, "12:00"))]]
    assert slots(free, day) == [
        ("09:00", 0),
        ("10:00", 0),
        ("11:00", 0),
        ("09:30", 30),
        ("10:30", 30),
    ]
    assert slots(free, day, order="start") == [
        ("09:00", None),
        ("09:30", None),
        ("10:00", None),
        ("10:30", None),
        ("11:00", None),
    ]


def test_buffers_must_be_free_too() -> None:
    day = ordinary_day(PARIS)
    free = [[(at(day, "09:00"), at(day, "12:00"))]]
    # 15 minutes before and 30 after: [t - 15, t + 90) inside 09:00-12:00.
    got = slots(free, day, step=15, buffer_before_minutes=15, buffer_after_minutes=30)
    assert sorted(start for start, _ in got) == [
        "09:15",
        "09:30",
        "09:45",
        "10:00",
        "10:15",
        "10:30",
    ]
    # The gaps lie outside the buffers: 09:45 leaves 09:00-09:30 and 11:15-12:00, both shorter
    # than the meeting; 10:15 leaves 60 minutes before (a meeting fits) and 15 after.
    assert dict(got) == {
        "09:15": 0,
        "09:30": 15,
        "09:45": 75,
        "10:00": 75,
        "10:15": 15,
        "10:30": 0,
    }


def test_more_participants_first_then_fewer_stranded_then_earlier() -> None:
    day = ordinary_day(PARIS)
    ann = [(at(day, "09:00"), at(day, "12:00"))]
    bob = [(at(day, "10:00"), at(day, "11:30"))]
    got = find_slots(
        [ann, bob],
        first=day,
        last=day,
        tz=PARIS,
        duration_minutes=60,
        step_minutes=30,
        required=1,
        order="best",
    )
    assert [
        (format_instant(m.start, PARIS)[11:16], m.participants, m.stranded_minutes) for m in got
    ] == [
        # Both free: 10:00 strands Bob's last 30 minutes, 10:30 Ann's 30 after and Bob's 30 before.
        ("10:00", (0, 1), 30),
        ("10:30", (0, 1), 60),
        ("09:00", (0,), 0),
        ("11:00", (0,), 0),
        ("09:30", (0,), 30),
    ]


def test_a_gap_of_exactly_the_meeting_is_not_stranded() -> None:
    day = ordinary_day(PARIS)
    # Two meetings fit exactly: the second one's time is a gap of 60, not stranded.
    assert slots([[(at(day, "09:00"), at(day, "11:00"))]], day) == [
        ("09:00", 0),
        ("10:00", 0),
        ("09:30", 60),
    ]
    # A window a second longer: 09:00 leaves 60:01 after it (not stranded), 09:30 strands 30 and
    # 30:01 (61 rounded up), 10:00 strands one second, counted as a minute.
    longer = [[(at(day, "09:00"), at(day, "11:00:01"))]]
    assert slots(longer, day) == [("09:00", 0), ("10:00", 1), ("09:30", 61)]
    # One starting a second late: 10:00 leaves 59:59 before it, a second short of a meeting,
    # so stranded (60 rounded up); 09:30 leaves 29:59 (30 rounded up).
    later = [[(at(day, "09:00:01"), at(day, "12:00"))]]
    assert slots(later, day) == [("11:00", 0), ("09:30", 30), ("10:30", 30), ("10:00", 60)]
    # Short of two meetings, every start strands both gaps: 59:59 in all, 60 rounded up.
    short = [[(at(day, "09:00:01"), at(day, "11:00"))]]
    assert slots(short, day) == [("09:30", 60), ("10:00", 60)]


def test_fractional_gaps_add_up_before_rounding_up() -> None:
    day = ordinary_day(PARIS)
    ann = [(at(day, "09:00:20"), at(day, "12:00"))]
    bob = [(at(day, "09:00:40"), at(day, "12:00"))]
    # 09:30 strands 29:40 of Ann's and 29:20 of Bob's: 59 minutes exactly (not 30 + 30);
    # 10:00 strands 59:40 and 59:20: 119; 10:30 strands 30 after for each of them.
    assert slots([ann, bob], day, required=2) == [
        ("11:00", 0),
        ("09:30", 59),
        ("10:30", 60),
        ("10:00", 119),
    ]


def test_not_before_drops_earlier_starts() -> None:
    day = ordinary_day(PARIS)
    free = [[(at(day, "09:00"), at(day, "12:00"))]]
    ten = datetime.fromtimestamp(at(day, "10:00"), UTC)
    assert slots(free, day, order="start", not_before=ten) == [
        ("10:00", None),
        ("10:30", None),
        ("11:00", None),
    ]
    # A microsecond later, 10:00 itself has started.
    later = ten + timedelta(microseconds=1)
    assert [s for s, _ in slots(free, day, order="start", not_before=later)] == ["10:30", "11:00"]
    # Any zone names the same instant.
    in_kolkata = ten.astimezone(ZoneInfo("Asia/Kolkata"))
    assert slots(free, day, not_before=in_kolkata) == [("10:00", 0), ("11:00", 0), ("10:30", 30)]


def test_limit_keeps_the_first_of_the_ordered_list() -> None:
    day = ordinary_day(PARIS)
    free = [[(at(day, "09:00"), at(day, "12:00"))]]
    assert slots(free, day, limit=4) == [("09:00", 0), ("10:00", 0), ("11:00", 0), ("09:30", 30)]
    assert slots(free, day, order="start", limit=2) == [("09:00", None), ("09:30", None)]
    assert len(slots(free, day, limit=1000)) == 5


@pytest.mark.parametrize(
    ("rules", "match"),
    [
        ({"buffer_before_minutes": -1}, "buffers"),
        ({"buffer_after_minutes": -5}, "buffers"),
        ({"limit": 0}, "limit"),
        ({"order": "soonest"}, "order"),
        ({"not_before": datetime(2030, 1, 1, 9)}, "aware"),
    ],
)
def test_rules_reject_bad_arguments(rules: dict[str, object], match: str) -> None:
    day = ordinary_day(PARIS)
    with pytest.raises(ValueError, match=match):
        find_slots(
            [[(at(day, "09:00"), at(day, "12:00"))]],
            first=day,
            last=day,
            tz=PARIS,
            duration_minutes=60,
            step_minutes=30,
            required=1,
            **rules,  # type: ignore[arg-type]
        )

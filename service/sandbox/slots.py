"""Free time and the slot grid, as Vyte computes them: pure interval arithmetic on UTC instants.

Working hours are wall-clock times in each person's own zone, so they are turned into instants
date by date; everything after that is arithmetic on instants, which makes 23- and 25-hour days
come out right. Only the final cut into days uses the zone the caller asked for.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

Interval = tuple[datetime, datetime]
"""`[start, end)` between two aware instants, start < end."""

Period = tuple[int, int]
"""`[start, end)` in minutes after local midnight, 0 <= start < end <= 1440."""

WeeklyHours = tuple[tuple[Period, ...], ...]
"""Working periods for Monday (index 0) to Sunday (index 6)."""

ONE_DAY = timedelta(days=1)


def normalize(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, with overlapping and touching intervals merged and empty ones dropped."""
    merged: list[Interval] = []
    for start, end in sorted(i for i in intervals if i[0] < i[1]):
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def intersect(left: Sequence[Interval], right: Sequence[Interval]) -> list[Interval]:
    """Both operands normalized; so is the result."""
    result: list[Interval] = []
    i = j = 0
    while i < len(left) and j < len(right):
        start = max(left[i][0], right[j][0])
        end = min(left[i][1], right[j][1])
        if start < end:
            result.append((start, end))
        if left[i][1] < right[j][1]:
            i += 1
        else:
            j += 1
    return result


def subtract(base: Sequence[Interval], removed: Sequence[Interval]) -> list[Interval]:
    """Both operands normalized; so is the result."""
    result: list[Interval] = []
    j = 0
    for start, end in base:
        cursor = start
        while j < len(removed) and removed[j][1] <= cursor:
            j += 1
        k = j
        while k < len(removed) and removed[k][0] < end:
            if removed[k][0] > cursor:
                result.append((cursor, removed[k][0]))
            cursor = max(cursor, removed[k][1])
            k += 1
        if cursor < end:
            result.append((cursor, end))
    return result


def wall_clock(day: date, minutes: int, zone: ZoneInfo) -> datetime:
    """The instant a wall clock in `zone` shows `minutes` after midnight of `day`.

    1440 means the next midnight. A time skipped by a spring-forward jump resolves with the
    offset in force before it (so 02:30 on a day that jumps 02:00→03:00 is 03:30); a repeated
    time resolves to its first occurrence.
    """
    day += timedelta(days=minutes // 1440)
    minutes %= 1440
    local = datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=zone)
    return local.astimezone(UTC)


def local_day(day: date, zone: ZoneInfo) -> Interval:
    """The instants of one calendar day in `zone` (23, 24 or 25 hours long)."""
    return wall_clock(day, 0, zone), wall_clock(day + ONE_DAY, 0, zone)


def local_span(first: date, last: date, zone: ZoneInfo) -> Interval:
    """The instants from the start of `first` to the end of `last` (inclusive) in `zone`."""
    return wall_clock(first, 0, zone), wall_clock(last + ONE_DAY, 0, zone)


def working_time(hours: WeeklyHours, zone: ZoneInfo, span: Interval) -> list[Interval]:
    """The instants within `span` that fall in someone's weekly working hours in `zone`."""
    # One local date either side covers every offset between the two zones involved.
    day = span[0].astimezone(zone).date() - ONE_DAY
    last = span[1].astimezone(zone).date() + ONE_DAY
    windows: list[Interval] = []
    while day <= last:
        for start, end in hours[day.weekday()]:
            windows.append((wall_clock(day, start, zone), wall_clock(day, end, zone)))
        day += ONE_DAY
    return intersect(normalize(windows), [span])


def free_time(
    hours: WeeklyHours, zone: ZoneInfo, busy: Iterable[Interval], span: Interval
) -> list[Interval]:
    """Working time within `span` minus every busy interval."""
    return subtract(working_time(hours, zone, span), normalize(busy))


def common_free_time(free_times: Iterable[Sequence[Interval]], span: Interval) -> list[Interval]:
    """The instants within `span` when everyone is free."""
    common: list[Interval] = [span]
    for free in free_times:
        common = intersect(common, free)
    return common


def slots_by_day(
    free: Sequence[Interval], zone: ZoneInfo, first: date, last: date, duration: timedelta
) -> dict[date, list[Interval]]:
    """Slots of `duration` per local date in `zone`, days without a slot left out.

    Free time is cut at each local midnight; inside every remaining window slots start at
    the window's start and follow each other back to back while they fit.
    """
    days: dict[date, list[Interval]] = {}
    day = first
    while day <= last:
        slots: list[Interval] = []
        for start, end in intersect(free, [local_day(day, zone)]):
            cursor = start
            while cursor + duration <= end:
                slots.append((cursor, cursor + duration))
                cursor += duration
        if slots:
            days[day] = slots
        day += ONE_DAY
    return days

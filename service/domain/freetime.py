"""Free time and shared slots: merge windows, build the local slot grid, intersect (DESIGN §3.1).

Instants are integer POSIX seconds; ``zoneinfo`` is only used to build the grid and to format.
"""

from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from itertools import compress
from zoneinfo import ZoneInfo

import attrs

__all__ = [
    "Interval",
    "SlotMatch",
    "candidate_starts",
    "find_slots",
    "format_instant",
    "merge_intervals",
    "parse_window",
    "parse_windows",
]

Interval = tuple[int, int]
"""``[start, end)`` in integer POSIX seconds."""

_SECOND = timedelta(seconds=1)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL = _EPOCH.date().toordinal()
_SECONDS_PER_DAY = 86_400
_MINUTES_PER_DAY = 1_440
_MICROS = 1_000_000


@attrs.frozen
class SlotMatch:
    """One slot ``[start, end)`` and the participants free for all of it."""

    start: int
    end: int
    participants: tuple[int, ...]
    """Indices into the participant list, ascending (= request order)."""


def merge_intervals(intervals: Iterable[Interval]) -> list[Interval]:
    """Sorted, disjoint, non-empty union; touching intervals ([1,5),[5,9)) are merged.

    Empty or reversed intervals (``end <= start``) cover nothing and are dropped.
    """
    merged: list[Interval] = []
    ordered = iter(sorted(intervals))
    for current_start, current_end in ordered:
        if current_start < current_end:
            break
    else:
        return merged
    for start, end in ordered:
        if start <= current_end:
            # An empty interval here never reaches past current_end, so it needs no check.
            if end > current_end:
                current_end = end
        elif start < end:
            merged.append((current_start, current_end))
            current_start, current_end = start, end
    merged.append((current_start, current_end))
    return merged


def parse_window(start: str, end: str) -> Interval:
    """ISO 8601 with offset -> ``[start, end)`` in seconds.

    Accepts ``Z`` and fractional seconds. A fractional start is rounded up and a fractional end
    down, so a window never claims time that was not free. Raises ``ValueError`` on a naive or
    malformed value or when ``end < start``.
    """
    return parse_windows([(start, end)])[0]


def parse_windows(pairs: Iterable[tuple[str, str]]) -> list[Interval]:
    """``parse_window`` for each ``(start, end)`` pair, in order.

    An upstream answer lists back-to-back windows, so most instants appear twice (one window's
    end is the next one's start); each distinct string is parsed once.
    """
    parsed: dict[str, int] = {}
    windows: list[Interval] = []
    for start, end in pairs:
        start_us = parsed.get(start)
        if start_us is None:
            start_us = parsed[start] = _microseconds(start)
        end_us = parsed.get(end)
        if end_us is None:
            end_us = parsed[end] = _microseconds(end)
        if end_us < start_us:
            raise ValueError(f"window ends before it starts: {start!r} .. {end!r}")
        start_seconds = -(-start_us // _MICROS)
        windows.append((start_seconds, max(start_seconds, end_us // _MICROS)))
    return windows


def candidate_starts(first: date, last: date, tz: ZoneInfo, step_minutes: int) -> list[int]:
    """Every instant whose wall-clock time in ``tz`` is a multiple of ``step_minutes`` after
    local midnight, on each local date ``first..last`` inclusive (DESIGN §3.1 rule 2).

    A wall time inside a spring-forward gap gives no instant; one repeated by a fall-back gives
    both. Sorted ascending, no duplicates.
    """
    if step_minutes < 1:
        raise ValueError(f"step must be at least one minute, got {step_minutes}")
    marks = [
        (minute // 60, minute % 60, minute * 60)
        for minute in range(0, _MINUTES_PER_DAY, step_minutes)
    ]
    utcoffset = tz.utcoffset
    seconds_of: dict[timedelta, int] = {}
    starts: list[int] = []
    for ordinal in range(first.toordinal(), last.toordinal() + 1):
        day = date.fromordinal(ordinal)
        year, month, day_of_month = day.year, day.month, day.day
        # The wall clock read as if it were UTC: wall - offset is the instant.
        midnight_wall = (ordinal - _EPOCH_ORDINAL) * _SECONDS_PER_DAY
        for hour, minute, seconds in marks:
            earlier = utcoffset(datetime(year, month, day_of_month, hour, minute, 0, 0, tz))
            later = utcoffset(datetime(year, month, day_of_month, hour, minute, 0, 0, tz, fold=1))
            if earlier is None or later is None:
                raise ValueError(f"time zone {tz} gives no UTC offset on {day}")
            if earlier == later:
                # Neither in a gap nor in a fold: the wall time is exactly one instant.
                offset_seconds = seconds_of.get(earlier)
                if offset_seconds is None:
                    offset_seconds = seconds_of[earlier] = earlier // _SECOND
                starts.append(midnight_wall + seconds - offset_seconds)
                continue
            # zoneinfo answers fold=0 and fold=1 inside a gap too; only a UTC round trip that
            # lands on the same wall time proves an instant exists.
            for offset in (earlier, later):
                instant = midnight_wall + seconds - offset // _SECOND
                if _utcoffset(datetime.fromtimestamp(instant, tz)) == offset:
                    starts.append(instant)
    return sorted(set(starts))


def find_slots(
    free: Sequence[Sequence[Interval]],
    *,
    first: date,
    last: date,
    tz: ZoneInfo,
    duration_minutes: int,
    step_minutes: int,
    required: int,
    grid: Sequence[int] | None = None,
) -> list[SlotMatch]:
    """Slots ``[t, t + duration)`` on the grid where at least ``required`` participants are free.

    ``free[i]`` is participant i's raw windows (any order, may overlap or touch). A participant
    is free for a slot when it lies entirely inside the union of their windows. Sorted by start.
    Costs O(S log S) in the number of windows S plus the grid and the output.

    ``grid``, when given, must be ``candidate_starts(first, last, tz, step_minutes)``: a caller
    answering the same ranges again can build it once.
    """
    count = len(free)
    if duration_minutes < 1:
        raise ValueError(f"duration must be at least one minute, got {duration_minutes}")
    if not 1 <= required <= count:
        raise ValueError(f"required must be between 1 and {count}, got {required}")
    if grid is None:
        grid = candidate_starts(first, last, tz, step_minutes)
    if not grid:
        return []
    duration = duration_minutes * 60
    grid_first, grid_last = grid[0], grid[-1]

    # Participant i is free for [t, t + duration) iff t lies in [start, end - duration] for one
    # of its merged intervals. Merged intervals are separated by a gap, so these start ranges
    # are too: each participant's boundaries strictly alternate on/off and never coincide, and a
    # boundary is a bare toggle. Packing (position, participant) into one int keeps the sort on
    # plain ints; position <= t iff code < (t + 1) * count.
    toggles: list[int] = []
    for participant, windows in enumerate(free):
        for start, end in merge_intervals(windows):
            last_start = end - duration
            if last_start < start or last_start < grid_first or start > grid_last:
                continue
            toggles.append(start * count + participant)
            toggles.append((last_start + 1) * count + participant)
    toggles.sort()

    active = [False] * count
    active_count = 0
    members: tuple[int, ...] = ()
    members_stale = True
    everyone = range(count)
    position = 0
    total = len(toggles)
    slots: list[SlotMatch] = []
    for t in grid:
        limit = (t + 1) * count
        while position < total and toggles[position] < limit:
            participant = toggles[position] % count
            if active[participant]:
                active[participant] = False
                active_count -= 1
            else:
                active[participant] = True
                active_count += 1
            position += 1
            members_stale = True
        if active_count >= required:
            if members_stale:
                members = tuple(compress(everyone, active))
                members_stale = False
            slots.append(SlotMatch(t, t + duration, members))
    return slots


def format_instant(ts: int, tz: ZoneInfo) -> str:
    """ISO 8601 to the second with the offset of ``tz`` at that instant (DESIGN §3.1 rule 4)."""
    return datetime.fromtimestamp(ts, tz).isoformat(timespec="seconds")


def _microseconds(value: str) -> int:
    """An ISO 8601 date-time with offset as integer POSIX microseconds (exact)."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as err:
        raise ValueError(f"not an ISO 8601 date-time: {value!r}") from err
    if parsed.utcoffset() is None:
        raise ValueError(f"date-time without a UTC offset: {value!r}")
    since = parsed - _EPOCH
    return (since.days * _SECONDS_PER_DAY + since.seconds) * _MICROS + since.microseconds


def _utcoffset(moment: datetime) -> timedelta:
    offset = moment.utcoffset()
    if offset is None:
        raise ValueError(f"time zone gives no UTC offset for {moment!r}")
    return offset

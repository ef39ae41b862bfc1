"""Free time and shared slots: merge windows, build the local slot grid, intersect (DESIGN §3.1).

Instants are integer POSIX seconds; ``zoneinfo`` is only used to build the grid and to format.
"""

from bisect import bisect_left
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, timedelta
from itertools import compress
from typing import Literal
from zoneinfo import ZoneInfo

import attrs

__all__ = [
    "Interval",
    "Order",
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

Order = Literal["start", "best"]
"""How ``find_slots`` lists its slots (DESIGN §3.1 ``order``)."""

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
    stranded_minutes: int | None = None
    """With ``order="best"``: the minutes this slot strands (see ``find_slots``); else None."""


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
    buffer_before_minutes: int = 0,
    buffer_after_minutes: int = 0,
    not_before: datetime | None = None,
    order: Order = "start",
    limit: int | None = None,
) -> list[SlotMatch]:
    """Slots ``[t, t + duration)`` on the grid where at least ``required`` participants are free
    (DESIGN §3.1 rules 2, 3 and 5).

    ``free[i]`` is participant i's raw windows (any order, may overlap or touch). A participant
    is free for a slot when the buffered slot ``[t - buffer_before, t + duration + buffer_after)``
    lies entirely inside the union of their windows. Candidates with ``t < not_before`` (an aware
    instant: the caller's now + notice) are dropped.

    ``order="start"`` lists slots by start. ``order="best"`` lists them by more participants
    free, then fewer stranded minutes, then earlier start, and every slot carries
    ``stranded_minutes``: for each participant free for the slot, W is the merged window holding
    the buffered slot, and a gap it leaves, ``(t - buffer_before) - W.start`` or
    ``W.end - (t + duration + buffer_after)``, is stranded when it is longer than nothing and
    shorter than the meeting (compared to the second). Windows come to the second, so a gap
    need not be whole minutes: the stranded seconds of all gaps of the slot are added up and the
    sum is rounded up to whole minutes (any stranded time counts as at least one minute). The
    ranking uses that reported integer, so a caller can check the order from the answer alone.
    ``limit`` keeps the first ``limit`` slots of the ordered list.

    Costs O(S log S) in the number of windows S plus the grid and the output. ``order="best"``
    keeps to the same sweep (two more sorted lists, at most one position per merged window in
    each) and adds one sort of the matches by rank.

    ``grid``, when given, must be ``candidate_starts(first, last, tz, step_minutes)``: a caller
    answering the same ranges again can build it once.
    """
    count = len(free)
    if duration_minutes < 1:
        raise ValueError(f"duration must be at least one minute, got {duration_minutes}")
    if not 1 <= required <= count:
        raise ValueError(f"required must be between 1 and {count}, got {required}")
    if buffer_before_minutes < 0 or buffer_after_minutes < 0:
        raise ValueError(
            "buffers must not be negative, got "
            f"{buffer_before_minutes} before and {buffer_after_minutes} after"
        )
    if order not in ("start", "best"):
        raise ValueError(f"order must be 'start' or 'best', got {order!r}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    if grid is None:
        grid = candidate_starts(first, last, tz, step_minutes)
    if not_before is not None:
        grid = grid[bisect_left(grid, _ceil_seconds(not_before)) :]
    if not grid:
        return []
    duration = duration_minutes * 60
    before = buffer_before_minutes * 60
    # The meeting and what must be free after it: the buffered slot ends at t + reach.
    reach = duration + buffer_after_minutes * 60
    grid_first, grid_last = grid[0], grid[-1]

    if order == "best":
        return _ranked(free, grid, duration, before, reach, required, limit)

    # Participant i is free for [t, t + duration) iff t lies in [start + before, end - reach]
    # for one of its merged intervals. Merged intervals are separated by a gap, so these start
    # ranges are too: each participant's boundaries strictly alternate on/off and never
    # coincide, and a boundary is a bare toggle. Packing (position, participant) into one int
    # keeps the sort on plain ints; position <= t iff code < (t + 1) * count.
    toggles: list[int] = []
    for participant, windows in enumerate(free):
        for start, end in merge_intervals(windows):
            first_start = start + before
            last_start = end - reach
            if last_start < first_start or last_start < grid_first or first_start > grid_last:
                continue
            toggles.append(first_start * count + participant)
            toggles.append((last_start + 1) * count + participant)
    toggles.sort()

    active = [False] * count
    active_count = 0
    members: tuple[int, ...] = ()
    members_stale = True
    everyone = range(count)
    position = 0
    total = len(toggles)
    wanted = len(grid) if limit is None else limit
    slots: list[SlotMatch] = []
    for t in grid:
        bound = (t + 1) * count
        while position < total and toggles[position] < bound:
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
            if len(slots) == wanted:
                break
    return slots


def _ranked(
    free: Sequence[Sequence[Interval]],
    grid: Sequence[int],
    duration: int,
    before: int,
    reach: int,
    required: int,
    limit: int | None,
) -> list[SlotMatch]:
    """``find_slots`` with ``order="best"``: the same sweep, which also sums stranded time.

    A merged window W gives its participant the range ``[lo, hi]`` of starts it is free for,
    ``lo = W.start + before`` and ``hi = W.end - reach``; a start t leaves the gaps ``t - lo``
    and ``hi - t`` in W, each stranded while it is below ``duration``. Summed over the ranges
    holding t that is ``slope * t + offset``, both piecewise constant:
    - a short range (``hi - lo < duration``) strands both gaps at every t, ``hi - lo`` in all,
      a constant added when the range opens and taken away when it closes;
    - a long range adds ``t - lo`` from lo until ``lo + duration`` and ``hi - t`` from
      ``hi - duration + 1`` until it closes (both are 0 at their edge, so edges need no care).
    The openings and closings are the sweep's own toggles; the two inner changes of long
    ranges are two more sorted lists of positions whose values follow from the position
    itself, so their order among the other events at the same t does not matter. Nothing
    scans participants or windows per candidate.
    """
    count = len(free)
    grid_first, grid_last = grid[0], grid[-1]
    # Positions are kept relative to the first candidate: small ints sort fastest.
    toggles: list[int] = []
    # Per participant, in order: (slope change, offset change on opening, on closing).
    changes: list[list[tuple[int, int, int]]] = [[] for _ in range(count)]
    gap_ends: list[int] = []
    gap_starts: list[int] = []
    for participant, windows in enumerate(free):
        own = changes[participant]
        for start, end in merge_intervals(windows):
            lo = start + before - grid_first
            hi = end - reach - grid_first
            if hi < lo or hi < 0 or lo > grid_last - grid_first:
                continue
            toggles.append(lo * count + participant)
            toggles.append((hi + 1) * count + participant)
            if hi - lo < duration:
                own.append((0, hi - lo, lo - hi))
            else:
                own.append((1, -lo, -hi))
                gap_ends.append(lo + duration)
                gap_starts.append(hi - duration + 1)
    toggles.sort()
    gap_ends.sort()
    gap_starts.sort()

    slope = offset = 0
    active = [False] * count
    following = [0] * count
    closing = [0] * count
    active_count = 0
    members: tuple[int, ...] = ()
    members_stale = True
    everyone = range(count)
    position = ends_position = starts_position = 0
    total, ends_total, starts_total = len(toggles), len(gap_ends), len(gap_starts)
    starts: list[int] = []
    who: list[tuple[int, ...]] = []
    stranded: list[int] = []
    ranks: list[int] = []
    # Stranded seconds stay below 2 * duration per participant; the rank packs (fewer free
    # participants, more stranded minutes) into one int, so a stable sort on it keeps start order.
    per_missing = 2 * count * (duration // 60) + 1
    for t in grid:
        at = t - grid_first
        bound = (at + 1) * count
        while position < total and toggles[position] < bound:
            participant = toggles[position] % count
            if active[participant]:
                active[participant] = False
                active_count -= 1
                slope += changes[participant][following[participant] - 1][0]
                offset += closing[participant]
            else:
                active[participant] = True
                active_count += 1
                index = following[participant]
                following[participant] = index + 1
                change, opening, closing[participant] = changes[participant][index]
                slope += change
                offset += opening
            position += 1
            members_stale = True
        # A long range's first gap stops being stranded (it was t - lo, lo = end - duration) ...
        while ends_position < ends_total and gap_ends[ends_position] <= at:
            slope -= 1
            offset += gap_ends[ends_position] - duration
            ends_position += 1
        # ... and its second starts to be (hi - t, hi = start + duration - 1).
        while starts_position < starts_total and gap_starts[starts_position] <= at:
            slope -= 1
            offset += gap_starts[starts_position] + duration - 1
            starts_position += 1
        if active_count >= required:
            if members_stale:
                members = tuple(compress(everyone, active))
                members_stale = False
            # Rounded up: a stranded second counts as a minute.
            minutes = -(-(slope * at + offset) // 60)
            starts.append(t)
            who.append(members)
            stranded.append(minutes)
            ranks.append((count - active_count) * per_missing + minutes)
    order = sorted(range(len(ranks)), key=ranks.__getitem__)
    if limit is not None:
        order = order[:limit]
    return [SlotMatch(starts[i], starts[i] + duration, who[i], stranded[i]) for i in order]


def _ceil_seconds(moment: datetime) -> int:
    """The first whole POSIX second at or after an aware instant."""
    if moment.utcoffset() is None:
        raise ValueError(f"not_before must be an aware date-time, got {moment!r}")
    since = moment - _EPOCH
    return since.days * _SECONDS_PER_DAY + since.seconds + (1 if since.microseconds else 0)


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

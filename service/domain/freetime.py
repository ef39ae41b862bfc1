"""Free time and shared slots: merge windows, build the local slot grid, intersect (DESIGN §3.1).

Instants are integer POSIX seconds; ``zoneinfo`` is only used to build the grid and to format.
"""

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from itertools import compress
from typing import Literal, overload
from zoneinfo import ZoneInfo

import attrs

__all__ = [
    "Interval",
    "Order",
    "SlotMatch",
    "Slots",
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


class Slots(Sequence[SlotMatch]):
    """``find_slots``' answer: the slots as columns, each ``SlotMatch`` built when asked for.

    A month of 15-minute steps can hold thousands of slots. As columns they are a few lists
    rather than as many objects for the garbage collector to walk while an answer is kept, and
    an answer's shaping can read the columns without building them (``columns``).
    """

    __slots__ = ("_duration", "_members", "_starts", "_stranded")

    def __init__(
        self,
        starts: list[int],
        members: list[tuple[int, ...]],
        duration: int,
        stranded: list[int] | None = None,
    ) -> None:
        self._starts = starts
        self._members = members
        self._duration = duration
        self._stranded = stranded

    def columns(self) -> tuple[list[int], list[tuple[int, ...]], int, list[int] | None]:
        """Starts, participants, the duration in seconds (end = start + duration) and the
        stranded minutes (None unless ordered by "best"), slot by slot."""
        return self._starts, self._members, self._duration, self._stranded

    def __len__(self) -> int:
        return len(self._starts)

    @overload
    def __getitem__(self, index: int) -> SlotMatch: ...

    @overload
    def __getitem__(self, index: slice) -> list[SlotMatch]: ...

    def __getitem__(self, index: int | slice) -> SlotMatch | list[SlotMatch]:
        if isinstance(index, slice):
            return list(self)[index]
        start = self._starts[index]
        stranded = None if self._stranded is None else self._stranded[index]
        return SlotMatch(start, start + self._duration, self._members[index], stranded)

    def __iter__(self) -> Iterator[SlotMatch]:
        duration = self._duration
        stranded: Iterable[int | None] = self._stranded or [None] * len(self._starts)
        for start, who, minutes in zip(self._starts, self._members, stranded, strict=True):
            yield SlotMatch(start, start + duration, who, minutes)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Slots({list(self)!r})"


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
    end is the next one's start), and the participants of a query share most of theirs: each
    distinct string is parsed once (``_microseconds`` keeps them).
    """
    windows: list[Interval] = []
    append = windows.append
    for start, end in pairs:
        start_us = _microseconds(start)
        end_us = _microseconds(end)
        if end_us < start_us:
            raise ValueError(f"window ends before it starts: {start!r} .. {end!r}")
        start_seconds = -(-start_us // _MICROS)
        end_seconds = end_us // _MICROS
        append((start_seconds, end_seconds if end_seconds > start_seconds else start_seconds))
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
) -> Slots:
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
    adds two sorted lists of positions per merged window's start range, walked beside the
    matches (see ``_stranded``), and one sort of the matches by rank.

    ``grid``, when given, must be ``candidate_starts(first, last, tz, step_minutes)``: a caller
    answering the same ranges again can build it once.
    """
    count = len(free)
    _check_arguments(
        count, duration_minutes, required, buffer_before_minutes, buffer_after_minutes, order, limit
    )
    if grid is None:
        grid = candidate_starts(first, last, tz, step_minutes)
    if not_before is not None:
        grid = grid[bisect_left(grid, _ceil_seconds(not_before)) :]
    if not grid:
        return Slots([], [], duration_minutes * 60)
    duration = duration_minutes * 60
    before = buffer_before_minutes * 60
    # The meeting and what must be free after it: the buffered slot ends at t + reach.
    reach = duration + buffer_after_minutes * 60
    best = order == "best"
    grid_first = grid[0]
    last_start = grid[-1] - grid_first

    toggles, ranges = _start_ranges(free, grid_first, last_start, before, reach, duration, best)
    # order="start" can stop at the limit; "best" has to see every match before it ranks.
    wanted = limit if limit is not None and not best else len(grid)
    starts, members = _sweep(toggles, count, grid, required, wanted)
    if not best:
        return Slots(starts, members, duration)
    return _ranked(starts, members, grid_first, duration, count, ranges, limit)


def _check_arguments(
    count: int,
    duration_minutes: int,
    required: int,
    buffer_before_minutes: int,
    buffer_after_minutes: int,
    order: str,
    limit: int | None,
) -> None:
    """Raise ValueError for arguments find_slots cannot answer."""
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


@attrs.frozen
class _StartRanges:
    """For order=best (see _stranded): lo and hi of long start ranges, (position, length) of
    short ones, each sorted."""

    lows: list[int]
    highs: list[int]
    short_opens: list[int]
    short_closes: list[int]


def _start_ranges(
    free: Sequence[Sequence[Interval]],
    grid_first: int,
    last_start: int,
    before: int,
    reach: int,
    duration: int,
    best: bool,
) -> tuple[list[int], _StartRanges]:
    """The sorted toggles of every participant's start ranges (and, for order=best, the
    ranges themselves)."""
    count = len(free)
    # Participant i is free for [t, t + duration) iff t lies in [lo, hi] = [start + before,
    # end - reach] for one of its merged intervals. Merged intervals are separated by a gap, so
    # these start ranges are too: each participant's boundaries strictly alternate on/off and
    # never coincide, and a boundary is a bare toggle. Packing (position, participant) into one
    # int keeps the sort on plain ints, and positions relative to the first candidate keep the
    # ints small, which sort fastest; position <= t - first iff code < (t - first + 1) * count.
    toggles: list[int] = []
    # For order=best (see _stranded): lo and hi of long ranges, (position, length) of short ones.
    lows: list[int] = []
    highs: list[int] = []
    short_opens: list[int] = []
    short_closes: list[int] = []
    for participant, windows in enumerate(free):
        for start, end in merge_intervals(windows):
            lo = start + before - grid_first
            hi = end - reach - grid_first
            if hi < lo or hi < 0 or lo > last_start:
                continue
            toggles.append(lo * count + participant)
            toggles.append((hi + 1) * count + participant)
            if best:
                length = hi - lo
                if length < duration:
                    short_opens.append(lo * duration + length)
                    short_closes.append((hi + 1) * duration + length)
                else:
                    lows.append(lo)
                    highs.append(hi)
    toggles.sort()
    for positions in (lows, highs, short_opens, short_closes):
        positions.sort()
    return toggles, _StartRanges(lows, highs, short_opens, short_closes)


def _ranked(
    starts: list[int],
    members: list[tuple[int, ...]],
    grid_first: int,
    duration: int,
    count: int,
    ranges: _StartRanges,
    limit: int | None,
) -> Slots:
    """The matches in order=best order, each with its stranded minutes, cut to ``limit``."""
    stranded = _stranded(
        starts,
        grid_first,
        duration,
        ranges.lows,
        ranges.highs,
        ranges.short_opens,
        ranges.short_closes,
    )
    # Fewer participants missing, then fewer stranded minutes: one int (stranded seconds stay
    # below 2 * duration per participant); a stable sort on it keeps start order for ties.
    per_missing = 2 * count * (duration // 60) + 1
    ranks = [
        (count - len(who)) * per_missing + minutes
        for who, minutes in zip(members, stranded, strict=True)
    ]
    ranked = sorted(range(len(ranks)), key=ranks.__getitem__)
    if limit is not None:
        del ranked[limit:]
    return Slots(
        [starts[i] for i in ranked],
        [members[i] for i in ranked],
        duration,
        [stranded[i] for i in ranked],
    )


def _sweep(
    toggles: Sequence[int], count: int, grid: Sequence[int], required: int, wanted: int
) -> tuple[list[int], list[tuple[int, ...]]]:
    """Walk the sorted toggles, taking the grid in runs between them: the first ``wanted``
    starts at which at least ``required`` participants are free, and who they are (the
    starts of one run share one tuple).

    A toggle at position p (relative to the first candidate) changes who is free from the
    first candidate t with ``t - first >= p`` on; between two such candidates nobody changes,
    so the run of candidates is copied in one slice instead of being visited one by one.
    """
    grid_first = grid[0]
    size = len(grid)
    active = [False] * count
    active_count = 0
    members: tuple[int, ...] = ()
    members_stale = True
    everyone = range(count)
    starts: list[int] = []
    who: list[tuple[int, ...]] = []
    # Candidates before `run` are done; those from it on have the current participants.
    run = 0
    for code in toggles:
        position, participant = divmod(code, count)
        if position > grid[run] - grid_first:
            at = bisect_left(grid, position + grid_first, run)
            if active_count >= required:
                if members_stale:
                    members = tuple(compress(everyone, active))
                    members_stale = False
                starts.extend(grid[run:at])
                who.extend([members] * (at - run))
                if len(starts) >= wanted:
                    break
            if at == size:
                break
            run = at
        if active[participant]:
            active[participant] = False
            active_count -= 1
        else:
            active[participant] = True
            active_count += 1
        members_stale = True
    else:
        if active_count >= required:
            members = tuple(compress(everyone, active))
            starts.extend(grid[run:])
            who.extend([members] * (size - run))
    del starts[wanted:], who[wanted:]
    return starts, who


def _stranded(
    starts: Sequence[int],
    origin: int,
    duration: int,
    lows: Sequence[int],
    highs: Sequence[int],
    short_opens: Sequence[int],
    short_closes: Sequence[int],
) -> list[int]:
    """Stranded minutes of each start (ascending), from the sweep's ranges (relative to
    ``origin``), with nothing scanned per start, participant or window.

    A merged window W gives its participant the range ``[lo, hi]`` of starts it is free for
    (``lo = W.start + before``, ``hi = W.end - reach``); a start t in it leaves the gaps
    ``t - lo`` and ``hi - t``, each stranded while it is below ``duration``. Summed over the
    ranges holding t that is ``slope * t + offset``, both piecewise constant:
    - a short range (``hi - lo < duration``) strands both gaps at every t: ``hi - lo`` in all,
      added at lo and taken away after hi (sorted as ``position * duration + length``);
    - a long range adds ``t - lo`` from lo until ``lo + duration`` and ``hi - t`` from
      ``hi - duration + 1`` until after hi (each is 0 at its edge). These four changes happen
      where lo or hi says, so the sorted lows and highs, each walked by two pointers, give
      them all in order.
    The changes add up in any order, so each pointer catches up only when a start needs it.
    """
    slope = offset = 0
    opened = first_done = second_begun = closed = 0
    short_opened = short_closed = 0
    longs, shorts = len(lows), len(short_opens)
    minutes: list[int] = []
    for t in starts:
        at = t - origin
        while opened < longs and lows[opened] <= at:
            slope += 1
            offset -= lows[opened]
            opened += 1
        done = at - duration
        while first_done < longs and lows[first_done] <= done:
            slope -= 1
            offset += lows[first_done]
            first_done += 1
        begun = at + duration - 1
        while second_begun < longs and highs[second_begun] <= begun:
            slope -= 1
            offset += highs[second_begun]
            second_begun += 1
        while closed < longs and highs[closed] < at:
            slope += 1
            offset -= highs[closed]
            closed += 1
        bound = (at + 1) * duration
        while short_opened < shorts and short_opens[short_opened] < bound:
            offset += short_opens[short_opened] % duration
            short_opened += 1
        while short_closed < shorts and short_closes[short_closed] < bound:
            offset -= short_closes[short_closed] % duration
            short_closed += 1
        # Rounded up: a stranded second counts as a minute.
        minutes.append(-(-(slope * at + offset) // 60))
    return minutes


def _ceil_seconds(moment: datetime) -> int:
    """The first whole POSIX second at or after an aware instant."""
    if moment.utcoffset() is None:
        raise ValueError(f"not_before must be an aware date-time, got {moment!r}")
    since = moment - _EPOCH
    return since.days * _SECONDS_PER_DAY + since.seconds + (1 if since.microseconds else 0)


def format_instant(ts: int, tz: ZoneInfo) -> str:
    """ISO 8601 to the second with the offset of ``tz`` at that instant (DESIGN §3.1 rule 4)."""
    return datetime.fromtimestamp(ts, tz).isoformat(timespec="seconds")


@lru_cache(maxsize=4096)
def _microseconds(value: str) -> int:
    """An ISO 8601 date-time with offset as integer POSIX microseconds (exact).

    Remembered across answers: the participants of one query share most of their instants
    (a working day starts at 09:00 for many), and a repeated text costs a lookup. 4096 texts
    (a month of half hours in a few offsets) take about 1 MB.
    """
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

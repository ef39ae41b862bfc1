"""Test dates computed from today, so no test drifts into the past the service refuses.

Days count from today's UTC date. Two days ahead is the earliest day that has wholly begun
nowhere yet (UTC+14 reaches it 10 hours after today's UTC midnight), so the helpers default
to it; the sandbox seed's relative busy blocks (`{"in_days": 2, "weekday": "thu"}`) follow
the same rule as `next_weekday`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

MONDAY, TUESDAY, WEDNESDAY, THURSDAY, FRIDAY, SATURDAY, SUNDAY = range(7)

SAFE = 2
"""Days from today to the first day no zone on Earth has started yet."""


def today() -> date:
    return datetime.now(UTC).date()


def in_days(n: int) -> date:
    """Today's UTC date plus `n` days."""
    return today() + timedelta(days=n)


def next_weekday(weekday: int, from_day: int = SAFE) -> date:
    """The first `weekday` (0 is Monday) on or after `in_days(from_day)`."""
    first = in_days(from_day)
    return first + timedelta(days=(weekday - first.weekday()) % 7)


def next_transition(zone: str, *, forward: bool, from_day: int = SAFE) -> date:
    """The next local day, on or after `in_days(from_day)`, on which `zone` moves its clocks
    forward (a short day) or back (a long day)."""
    tz = ZoneInfo(zone)
    current = in_days(from_day)
    for _ in range(3 * 366):
        before = datetime.combine(current, time(), tz).utcoffset()
        after = datetime.combine(current + timedelta(days=1), time(), tz).utcoffset()
        assert before is not None and after is not None
        if (after > before) if forward else (after < before):
            return current
        current += timedelta(days=1)
    raise LookupError(f"{zone} changes no clocks in the next three years")


def at(on: date, clock: str, zone: str) -> datetime:
    """`clock` ("HH:MM") on `on` as wall-clock time in `zone`."""
    hour, minute = (int(part) for part in clock.split(":"))
    return datetime.combine(on, time(hour, minute), ZoneInfo(zone))


def iso(on: date, clock: str, zone: str) -> str:
    """Like `at`, rendered as the API renders it (`YYYY-MM-DDT12:00:00+01:00`)."""
    return at(on, clock, zone).isoformat()


def naive(instant: datetime, zone: str) -> str:
    """Wall-clock time in `zone` without an offset, as Vyte takes event dates."""
    return instant.astimezone(ZoneInfo(zone)).replace(tzinfo=None).isoformat()


def zulu(instant: datetime) -> str:
    """UTC with milliseconds and `Z`, as Vyte writes event dates (`YYYY-MM-DDT11:00:00.000Z`)."""
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def seed_thursday() -> date:
    """The day of the demo seed's Thursday busy blocks (John 12:00-14:00 in Paris, Jane and Priya
    13:00-14:00 in their zones); John is busy 09:30-10:30 the day after as well."""
    return next_weekday(THURSDAY)


def meeting_day(weeks: int = 0) -> date:
    """A Wednesday, `weeks` after the next one: no seeded person is busy on it (John's block
    on a Wednesday is six weeks out) and no zone changes its clocks on a Wednesday."""
    return next_weekday(WEDNESDAY) + timedelta(weeks=weeks)

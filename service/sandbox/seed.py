"""The seed: the organization and the Vyte users whose calendars the sandbox serves.

The JSON file is read once at start-up and never written; `/_sandbox/reset` goes back to it.
A busy block is either two instants (`{"start": "2020-10-01T12:00:00+02:00", "end": ...}`) or a
day relative to the date the seed is read (UTC) with wall-clock times in the user's own zone:
`{"in_days": 2, "weekday": "thu", "start": "12:00", "end": "14:00"}` is the first Thursday at
least two days from today, so a demo seed never drifts into the past.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs

from .slots import Interval, Period, WeeklyHours, normalize, wall_clock
from .wire import JSON, OBJECT_ID, timestamp

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_CLOCK = re.compile(r"^([01]\d|2[0-4]):([0-5]\d)$")


class SeedError(ValueError):
    """The seed file does not describe a valid organization and users."""


@attrs.frozen
class Organization:
    id: str
    name: str
    created_at: datetime

    def to_json(self) -> JSON:
        return {
            "_id": self.id,
            "name": self.name,
            "__v": 0,
            "createdAt": timestamp(self.created_at),
            "updatedAt": timestamp(self.created_at),
        }


@attrs.frozen
class User:
    id: str
    full_name: str
    emails: tuple[str, ...]
    timezone: str
    zone: ZoneInfo
    hours: WeeklyHours
    busy: tuple[Interval, ...]

    @property
    def email(self) -> str:
        return self.emails[0]

    def to_json(self) -> JSON:
        return {
            "_id": self.id,
            "full_name": self.full_name,
            "emails": list(self.emails),
            "timezone": self.timezone,
            "working_hours": {
                name: [[_clock(start), _clock(end)] for start, end in self.hours[index]]
                for index, name in enumerate(WEEKDAYS)
            },
            "busy": [{"start": timestamp(s), "end": timestamp(e)} for s, e in self.busy],
        }


@attrs.frozen
class Seed:
    organization: Organization
    users: tuple[User, ...]
    users_by_id: Mapping[str, User]
    users_by_email: Mapping[str, User]
    """Keys are lower-cased: Vyte matches emails case-insensitively."""


def load_seed(path: Path, today: date | None = None) -> Seed:
    """Read and check a seed file (blocking I/O: call it off the event loop)."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise SeedError(f"{path}: {err}") from err
    return parse_seed(raw, today)


def parse_seed(raw: object, today: date | None = None) -> Seed:
    """`today` anchors the relative busy blocks; the current UTC date unless given."""
    if today is None:
        today = datetime.now(UTC).date()
    body = _object(raw, "$")
    org = _object(body.get("organization"), "$.organization")
    organization = Organization(
        id=_object_id(org.get("_id"), "$.organization._id"),
        name=_text(org.get("name"), "$.organization.name"),
        created_at=_instant(org.get("createdAt"), "$.organization.createdAt"),
    )
    raw_users = body.get("users")
    if not isinstance(raw_users, list) or not raw_users:
        raise SeedError("$.users must be a non-empty list")
    users = tuple(_user(item, f"$.users[{index}]", today) for index, item in enumerate(raw_users))
    by_id: dict[str, User] = {}
    by_email: dict[str, User] = {}
    for user in users:
        if user.id in by_id:
            raise SeedError(f"duplicate user id {user.id}")
        by_id[user.id] = user
        for email in user.emails:
            if email in by_email:
                raise SeedError(f"duplicate email {email}")
            by_email[email] = user
    return Seed(organization, users, by_id, by_email)


def _user(raw: object, where: str, today: date) -> User:
    body = _object(raw, where)
    emails = body.get("emails")
    if not isinstance(emails, list) or not emails:
        raise SeedError(f"{where}.emails must be a non-empty list")
    timezone = _text(body.get("timezone"), f"{where}.timezone")
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError, OSError) as err:
        raise SeedError(f"{where}.timezone: unknown time zone {timezone!r}") from err
    busy: list[Interval] = []
    for index, block in enumerate(_list(body.get("busy", []), f"{where}.busy")):
        at = f"{where}.busy[{index}]"
        block_body = _object(block, at)
        if "in_days" in block_body or "weekday" in block_body:
            start, end = _relative_block(block_body, at, zone, today)
        else:
            start = _instant(block_body.get("start"), f"{at}.start")
            end = _instant(block_body.get("end"), f"{at}.end")
        if start >= end:
            raise SeedError(f"{at} must end after it starts")
        busy.append((start, end))
    return User(
        id=_object_id(body.get("_id"), f"{where}._id"),
        full_name=_text(body.get("full_name"), f"{where}.full_name"),
        emails=tuple(
            _text(email, f"{where}.emails[{index}]").lower() for index, email in enumerate(emails)
        ),
        timezone=timezone,
        zone=zone,
        hours=_weekly_hours(body.get("working_hours", {}), f"{where}.working_hours"),
        busy=tuple(normalize(busy)),
    )


def _relative_block(
    body: dict[str, Any], where: str, zone: ZoneInfo, today: date
) -> tuple[datetime, datetime]:
    unknown = set(body) - {"in_days", "weekday", "start", "end"}
    if unknown:
        raise SeedError(f"{where}: unknown fields {sorted(unknown)}")
    in_days = body.get("in_days", 0)
    # bool is an int to Python, but `true` days from now means nothing.
    if not isinstance(in_days, int) or isinstance(in_days, bool) or abs(in_days) > 3660:
        raise SeedError(f"{where}.in_days must be a whole number of days (at most 3660)")
    day = today + timedelta(days=in_days)
    if "weekday" in body:
        weekday = body["weekday"]
        if weekday not in WEEKDAYS:
            raise SeedError(f"{where}.weekday must be one of {', '.join(WEEKDAYS)}")
        day += timedelta(days=(WEEKDAYS.index(weekday) - day.weekday()) % 7)
    start = _minutes(body.get("start"), f"{where}.start")
    end = _minutes(body.get("end"), f"{where}.end")
    return wall_clock(day, start, zone), wall_clock(day, end, zone)


def _weekly_hours(raw: object, where: str) -> WeeklyHours:
    body = _object(raw, where)
    unknown = set(body) - set(WEEKDAYS)
    if unknown:
        raise SeedError(f"{where}: unknown weekdays {sorted(unknown)}")
    week: list[tuple[Period, ...]] = []
    for name in WEEKDAYS:
        periods: list[Period] = []
        for index, item in enumerate(_list(body.get(name, []), f"{where}.{name}")):
            at = f"{where}.{name}[{index}]"
            if not isinstance(item, list) or len(item) != 2:
                raise SeedError(f'{at} must be ["HH:MM", "HH:MM"]')
            start, end = _minutes(item[0], at), _minutes(item[1], at)
            if not start < end:
                raise SeedError(f"{at} must end after it starts")
            periods.append((start, end))
        week.append(tuple(sorted(periods)))
    return tuple(week)


def _minutes(raw: object, where: str) -> int:
    match = _CLOCK.match(raw) if isinstance(raw, str) else None
    if match is None:
        raise SeedError(f"{where}: {raw!r} is not HH:MM")
    minutes = int(match[1]) * 60 + int(match[2])
    if minutes > 1440:
        raise SeedError(f"{where}: {raw!r} is after 24:00")
    return minutes


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _instant(raw: object, where: str) -> datetime:
    try:
        value = datetime.fromisoformat(_text(raw, where))
    except ValueError as err:
        raise SeedError(f"{where}: {err}") from err
    if value.tzinfo is None:
        raise SeedError(f"{where} must carry a UTC offset")
    return value.astimezone(UTC)


def _object_id(raw: object, where: str) -> str:
    if not isinstance(raw, str) or not OBJECT_ID.match(raw):
        raise SeedError(f"{where} must be a 24-hex id")
    return raw


def _text(raw: object, where: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise SeedError(f"{where} must be a non-empty string")
    return raw


def _object(raw: object, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise SeedError(f"{where} must be an object")
    return raw


def _list(raw: object, where: str) -> list[Any]:
    if not isinstance(raw, list):
        raise SeedError(f"{where} must be a list")
    return raw

"""`GET /v2/slots` and `/v2/slots/days`: the query as Vyte reads it and the answer it gives."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, timedelta
from zoneinfo import ZoneInfo

import attrs

from .seed import User
from .slots import Interval, local_span, slots_by_day
from .state import SandboxState
from .wire import JSON, OBJECT_ID, BadRequest, NotFound, local_time, zone_named

LOOKAHEAD_DAYS = 60
"""How far past `to` an empty answer looks for `nextAvailability`."""

MAX_RANGE_DAYS = 366
MAX_DURATION = 1440

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_MINUTES = re.compile(r"^\d{1,5}$")


@attrs.frozen
class SlotQuery:
    users: tuple[User, ...]
    duration: timedelta
    first: date
    last: date
    timezone: str
    zone: ZoneInfo


def parse_slot_query(params: Mapping[str, str], state: SandboxState) -> SlotQuery:
    """Validate the query (400) and resolve the people in it (404 for an unknown one)."""
    raw_duration = params.get("duration")
    if raw_duration is None or not _MINUTES.match(raw_duration):
        raise BadRequest("duration is required: a whole number of minutes")
    duration = int(raw_duration)
    if not 1 <= duration <= MAX_DURATION:
        raise BadRequest(f"duration must be between 1 and {MAX_DURATION} minutes")
    first = _day(params.get("from"), "from")
    last = _day(params.get("to"), "to")
    if last < first:
        raise BadRequest("to must not be before from")
    if (last - first).days >= MAX_RANGE_DAYS:
        raise BadRequest(f"from and to must be at most {MAX_RANGE_DAYS} days apart")
    if "team" in params:
        raise BadRequest("team is not supported by the sandbox; use users or emails")
    users = _people(params, state)
    timezone = params.get("timezone") or users[0].timezone
    return SlotQuery(
        users=users,
        duration=timedelta(minutes=duration),
        first=first,
        last=last,
        timezone=timezone,
        zone=zone_named(timezone, "timezone"),
    )


def slots_answer(query: SlotQuery, state: SandboxState, *, by_day: bool) -> JSON:
    days = _slots(query, state, query.first, query.last)
    body: JSON = {
        "timezone": query.timezone,
        "from": query.first.isoformat(),
        "to": query.last.isoformat(),
    }
    if by_day:
        body["days"] = {
            day.isoformat(): {"slots": [_slot(s, query.zone) for s in slots]}
            for day, slots in days.items()
        }
    else:
        body["slots"] = [_slot(s, query.zone) for slots in days.values() for s in slots]
    if not days:
        later = _slots(
            query,
            state,
            query.last + timedelta(days=1),
            query.last + timedelta(days=LOOKAHEAD_DAYS),
        )
        if later:
            day, slots = next(iter(later.items()))
            body["nextAvailability"] = {
                "availableDate": day.isoformat(),
                "availableSlot": _slot(slots[0], query.zone),
            }
    return body


def _slots(
    query: SlotQuery, state: SandboxState, first: date, last: date
) -> dict[date, list[Interval]]:
    span = local_span(first, last, query.zone)
    free = state.common_free_time(query.users, span)
    return slots_by_day(free, query.zone, first, last, query.duration)


def _slot(slot: Interval, zone: ZoneInfo) -> JSON:
    return {
        "start": {"dateTime": local_time(slot[0], zone)},
        "end": {"dateTime": local_time(slot[1], zone)},
    }


def _day(raw: str | None, field: str) -> date:
    if raw is None or not _DATE.match(raw):
        raise BadRequest(f"{field} is required, formatted YYYY-MM-DD")
    try:
        return date.fromisoformat(raw)
    except ValueError as err:
        raise BadRequest(f"{field}: {raw!r} is not a date") from err


def _people(params: Mapping[str, str], state: SandboxState) -> tuple[User, ...]:
    """Users first, then emails, in request order and without repeats."""
    ids = _csv(params.get("users"))
    emails = _csv(params.get("emails"))
    if not ids and not emails:
        raise BadRequest("users or emails is required")
    people: list[User] = []
    for user_id in ids:
        if not OBJECT_ID.match(user_id):
            raise BadRequest(f"users: {user_id!r} is not a user id")
        user = state.seed.users_by_id.get(user_id)
        if user is None:
            raise NotFound(f"no user {user_id}")
        people.append(user)
    for email in emails:
        if "@" not in email:
            raise BadRequest(f"emails: {email!r} is not an email address")
        user = state.seed.users_by_email.get(email.lower())
        if user is None:
            raise NotFound(f"no user with email {email}")
        people.append(user)
    return tuple(dict.fromkeys(people))


def _csv(raw: str | None) -> list[str]:
    return [part.strip() for part in (raw or "").split(",") if part.strip()]

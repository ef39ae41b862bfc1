"""What callers may send: the schema of every body and query, and the commands they become.

Each schema is a plain attrs class read by the strict converter of `schema.py`; the types
below carry the per-field rules, and `*_command` adds the rules that span fields.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any, NewType
from urllib.parse import urlsplit

import attrs

from service.commands import (
    AvailabilityQuery,
    BookingQuery,
    DeliveryQuery,
    NewBooking,
    NewSubscription,
    Reschedule,
)
from service.domain.booking import BookingStatus, Invitee, Place
from service.domain.networks import Network
from service.domain.participant import EMAIL, Participant, parse_participant, parse_timezone
from service.errors import FieldError, ValidationFailed
from service.http.schema import WIRE_NAME, Invalid, converter, structure
from service.notify.egress import EgressPolicy
from service.notify.outbox import EVENT_TYPES
from service.store.base import DeliveryStatus

MAX_PARTICIPANTS = 50
MAX_DAYS = 62
MAX_INVITEES = 50

_OFFSET = re.compile(r"(Z|[+-]\d{2}:?\d{2})$", re.IGNORECASE)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DIGITS = re.compile(r"^[0-9]{1,6}$")
# Years a date or time may name (DESIGN §3.1, §3.2): refused here, before Vyte or the breaker.
FIRST_YEAR, LAST_YEAR = 2000, 2100
_YEARS = f"the year must be from {FIRST_YEAR} to {LAST_YEAR}"

# -- field types and their rules ------------------------------------------------------------
Title = NewType("Title", str)
Name = NewType("Name", str)
Address = NewType("Address", str)
Phone = NewType("Phone", str)
Message = NewType("Message", str)
Email = NewType("Email", str)
Instant = NewType("Instant", datetime)
Minutes = NewType("Minutes", int)
ZoneName = NewType("ZoneName", str)
Url = NewType("Url", str)
Organizer = NewType("Organizer", Participant)
Invitees = NewType("Invitees", tuple["InviteeBody", ...])
EventTypes = NewType("EventTypes", tuple[str, ...])
# Query parameters arrive as text.
Participants = NewType("Participants", tuple[Participant, ...])
QueryMinutes = NewType("QueryMinutes", int)
QueryCount = NewType("QueryCount", int)
QueryDate = NewType("QueryDate", date)
Grouping = NewType("Grouping", str)
Flag = NewType("Flag", bool)
Limit = NewType("Limit", int)
Status = NewType("Status", DeliveryStatus)
QueryInstant = NewType("QueryInstant", datetime)
Statuses = NewType("Statuses", frozenset[BookingStatus])
PageSize = NewType("PageSize", int)
Cursor = NewType("Cursor", str)


def _text(max_len: int) -> Any:
    def structure(value: Any, _: object) -> str:
        if not isinstance(value, str) or not 1 <= len(value) <= max_len:
            raise Invalid(f"must be a string of 1 to {max_len} characters")
        return value

    return structure


def _email(value: Any, _: object) -> str:
    if not isinstance(value, str) or len(value) > 254 or not EMAIL.match(value):
        raise Invalid("must be a valid email address")
    return value


def _instant(value: Any, _: object) -> datetime:
    if not isinstance(value, str):
        raise Invalid("must be an ISO 8601 date-time with an offset")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or "T" not in value.upper():
        raise Invalid("must be an ISO 8601 date-time with an offset")
    if parsed.tzinfo is None or not _OFFSET.search(value):
        raise Invalid("must carry a UTC offset, e.g. +02:00 or Z")
    if not FIRST_YEAR <= parsed.year <= LAST_YEAR:
        raise Invalid(_YEARS)
    # Vyte keeps whole seconds; so do we, or a booking and its event would not match.
    return parsed.astimezone(UTC).replace(microsecond=0)


def _minutes(value: Any, _: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 5 <= value <= 1440:
        raise Invalid("must be an integer from 5 to 1440")
    return value


def _zone(value: Any, _: object) -> str:
    if not isinstance(value, str) or parse_timezone(value) is None:
        raise Invalid("must be an IANA time zone name")
    return value


def _url(value: Any, _: object) -> str:
    if not isinstance(value, str) or len(value) > 2048:
        raise Invalid("must be an http(s) URL")
    try:
        parts = urlsplit(value)
        host = parts.hostname
        valid = parts.scheme in ("http", "https") and bool(host)
        if host:
            # What the resolver will need: IDNA labels of 1 to 63 characters.
            host.encode("idna")
            parts.port  # noqa: B018 - raises ValueError for a port out of range
    except (ValueError, UnicodeError):
        valid = False
    if not valid:
        raise Invalid("must be an http(s) URL")
    return value


def _organizer(value: Any, _: object) -> Participant:
    parsed = parse_participant(value) if isinstance(value, str) else None
    if parsed is None:
        raise Invalid("must be a Vyte user id or an email")
    return parsed


def _invitees(value: Any, _: object) -> tuple[InviteeBody, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_INVITEES:
        raise Invalid(f"must be a list of 1 to {MAX_INVITEES} invitees")
    return converter.structure(value, tuple[InviteeBody, ...])


def _event_types(value: Any, _: object) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or not value
        or any(not isinstance(e, str) or e not in EVENT_TYPES for e in value)
        or len(set(value)) != len(value)
    ):
        raise Invalid(f"a non-empty list of distinct event types: {', '.join(EVENT_TYPES)}")
    return tuple(value)


def _participants(value: Any, _: object) -> tuple[Participant, ...]:
    if not isinstance(value, str):
        raise Invalid("must be text")
    found: dict[str, Participant] = {}
    wrong = []
    for item in value.split(","):
        parsed = parse_participant(item)
        if parsed is None:
            wrong.append(f"{item.strip()[:80]!r} is not a Vyte user id or an email")
        else:
            found.setdefault(parsed.key, parsed)
    if wrong:
        raise Invalid(*wrong)
    if not 1 <= len(found) <= MAX_PARTICIPANTS:
        raise Invalid(f"give 1 to {MAX_PARTICIPANTS} participants")
    return tuple(found.values())


def _query_int(low: int, high: int) -> Any:
    def structure(value: Any, _: object) -> int:
        if not isinstance(value, str) or not _DIGITS.match(value) or not low <= int(value) <= high:
            raise Invalid(f"must be an integer from {low} to {high}")
        return int(value)

    return structure


def _query_date(value: Any, _: object) -> date:
    try:
        if not isinstance(value, str) or not _DATE.match(value):
            raise ValueError
        day = date.fromisoformat(value)
    except ValueError:
        raise Invalid("must be a date YYYY-MM-DD") from None
    if not FIRST_YEAR <= day.year <= LAST_YEAR:
        raise Invalid(_YEARS)
    return day


def _grouping(value: Any, _: object) -> str:
    if value != "day":
        raise Invalid("the only grouping is 'day'")
    return "day"


def _flag(value: Any, _: object) -> bool:
    if value not in ("true", "false"):
        raise Invalid("must be true or false")
    return bool(value == "true")


def _status(value: Any, _: object) -> DeliveryStatus:
    try:
        return DeliveryStatus(value)
    except ValueError:
        raise Invalid(f"one of {', '.join(s.value for s in DeliveryStatus)}") from None


def _limit(value: Any, _: object) -> int:
    if not (isinstance(value, str) and value.isascii() and value.isdigit()) or not (
        1 <= int(value) <= 500
    ):
        raise Invalid("an integer from 1 to 500")
    return int(value)


def _query_instant(value: Any, _: object) -> datetime:
    # An unescaped "+" of an offset reaches us as a space ("...T10:00:00 01:00"); a date-time
    # with a "T" has no other place for a space.
    if isinstance(value, str) and "T" in value.upper():
        value = value.replace(" ", "+")
    return _instant(value, _)


def _statuses(value: Any, _: object) -> frozenset[BookingStatus]:
    names = ", ".join(s.value for s in BookingStatus)
    try:
        if not isinstance(value, str):
            raise ValueError
        return frozenset(BookingStatus(part) for part in value.split(","))
    except ValueError:
        raise Invalid(f"comma-separated statuses of {names}") from None


def _cursor(value: Any, _: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= 512:
        raise Invalid("not a cursor issued by this gateway")
    return value


for _type, _hook in (
    (Title, _text(255)),
    (Name, _text(255)),
    (Address, _text(500)),
    (Phone, _text(64)),
    (Message, _text(10_000)),
    (Email, _email),
    (Instant, _instant),
    (Minutes, _minutes),
    (ZoneName, _zone),
    (Url, _url),
    (Organizer, _organizer),
    (Invitees, _invitees),
    (EventTypes, _event_types),
    (Participants, _participants),
    (QueryMinutes, _query_int(5, 1440)),
    # `required` is checked against the number of participants once both are read.
    (QueryCount, _query_int(1, 999_999)),
    (QueryDate, _query_date),
    (Grouping, _grouping),
    (Flag, _flag),
    (Limit, _limit),
    (Status, _status),
    (QueryInstant, _query_instant),
    (Statuses, _statuses),
    (PageSize, _query_int(1, 200)),
    (Cursor, _cursor),
):
    converter.register_structure_hook(_type, _hook)


# -- schemas ----------------------------------------------------------------------------------
@attrs.frozen
class InviteeBody:
    email: Email
    full_name: Name | None = None
    phone: Phone | None = None


@attrs.frozen
class PlaceBody:
    name: Name
    address: Address | None = None


@attrs.frozen
class BookingBody:
    """POST /v1/bookings."""

    organizer: Organizer
    title: Title
    start: Instant
    invitees: Invitees
    end: Instant | None = None
    duration: Minutes | None = None
    timezone: ZoneName = ZoneName("UTC")
    place: PlaceBody | None = None
    message: Message | None = None
    callback_url: Url | None = None
    check_availability: bool = True


@attrs.frozen
class RescheduleBody:
    """POST /v1/bookings/{id}/reschedule."""

    start: Instant
    end: Instant | None = None
    duration: Minutes | None = None
    check_availability: bool = True


@attrs.frozen
class EmptyBody:
    """The body of confirm, cancel and retry: nothing, or `{}`."""


@attrs.frozen
class SubscriptionBody:
    url: Url
    events: EventTypes


# Availability's rules beyond Vyte's (DESIGN §3.1 rule 5).
NoticeMinutes = NewType("NoticeMinutes", int)
BufferMinutes = NewType("BufferMinutes", int)
Ordering = NewType("Ordering", str)
SlotLimit = NewType("SlotLimit", int)


def _ordering(value: Any, _: object) -> str:
    if value not in ("start", "best"):
        raise Invalid("must be 'start' or 'best'")
    return str(value)


converter.register_structure_hook(NoticeMinutes, _query_int(0, 43_200))
converter.register_structure_hook(BufferMinutes, _query_int(0, 720))
converter.register_structure_hook(Ordering, _ordering)
converter.register_structure_hook(SlotLimit, _query_int(1, 1000))


@attrs.frozen
class AvailabilityParams:
    """GET /v1/availability."""

    participants: Participants
    duration: QueryMinutes
    from_: QueryDate = attrs.field(metadata={WIRE_NAME: "from"})
    to: QueryDate
    timezone: ZoneName = ZoneName("UTC")
    step: QueryMinutes | None = None
    required: QueryCount | None = None
    group: Grouping | None = None
    partial: Flag = Flag(False)
    notice: NoticeMinutes = NoticeMinutes(0)
    buffer_before: BufferMinutes = BufferMinutes(0)
    buffer_after: BufferMinutes = BufferMinutes(0)
    order: Ordering = Ordering("start")
    limit: SlotLimit | None = None


@attrs.frozen
class BookingListParams:
    """GET /v1/bookings."""

    organizer: Organizer | None = None
    status: Statuses | None = None
    from_: QueryInstant | None = attrs.field(default=None, metadata={WIRE_NAME: "from"})
    to: QueryInstant | None = None
    limit: PageSize = PageSize(50)
    cursor: Cursor | None = None


@attrs.frozen
class DeliveryParams:
    status: Status | None = None
    limit: Limit = Limit(100)


# -- commands -----------------------------------------------------------------------------------
def _allowed(
    url: str | None, name: str, hosts: tuple[str, ...], deny: tuple[Network, ...]
) -> list[FieldError]:
    refusal = None if url is None else EgressPolicy(hosts, deny).refusal(url)
    return [] if refusal is None else [FieldError(name, refusal.value)]


def _times(
    start: datetime, end: datetime | None, duration: int | None, problems: list[FieldError]
) -> datetime | None:
    """The end of a booking given `end` or `duration`; what is wrong goes to `problems`.

    A start before now is refused here, before anything can reach Vyte (DESIGN §3.2)."""
    if start < datetime.now(UTC):
        problems.append(FieldError("start", "must not be in the past"))
    if (end is None) == (duration is None):
        problems.append(FieldError("end", "give exactly one of end or duration"))
        return None
    if duration is not None:
        try:
            end = start + timedelta(minutes=duration)
        except OverflowError:
            problems.append(FieldError("duration", "ends after the last representable date"))
            return None
    assert end is not None
    if end <= start:
        problems.append(FieldError("end", "must be after start"))
    elif end - start > timedelta(days=1):
        problems.append(FieldError("end", "a booking lasts at most 1440 minutes"))
    elif end.year > LAST_YEAR:
        problems.append(FieldError("end", _YEARS))
    return end


def booking_command(
    data: Any, callback_hosts: tuple[str, ...], deny: tuple[Network, ...] = ()
) -> NewBooking:
    """A booking body as a NewBooking; ValidationFailed lists every bad field."""
    body = structure(data, BookingBody)
    problems = _allowed(body.callback_url, "callback_url", callback_hosts, deny)
    end = _times(body.start, body.end, body.duration, problems)
    if problems:
        raise ValidationFailed(problems)
    assert end is not None
    place = body.place
    return NewBooking(
        organizer=body.organizer,
        title=body.title,
        start=body.start,
        end=end,
        timezone=body.timezone,
        invitees=tuple(Invitee(i.email, i.full_name, i.phone) for i in body.invitees),
        place=Place(place.name, place.address) if place else None,
        message=body.message,
        callback_url=body.callback_url,
        check_availability=body.check_availability,
    )


def reschedule_command(data: Any) -> Reschedule:
    """A reschedule body as a Reschedule; ValidationFailed lists every bad field."""
    body = structure(data, RescheduleBody)
    problems: list[FieldError] = []
    end = _times(body.start, body.end, body.duration, problems)
    if problems:
        raise ValidationFailed(problems)
    assert end is not None
    return Reschedule(start=body.start, end=end, check_availability=body.check_availability)


def booking_list_query(params: Mapping[str, str]) -> tuple[BookingQuery, str | None]:
    """The filters of a listing and its cursor (still to be checked against them)."""
    p = structure(dict(params), BookingListParams, unknown="unknown parameter")
    if p.from_ is not None and p.to is not None and p.to <= p.from_:
        raise ValidationFailed([FieldError("to", "must be after from")])
    query = BookingQuery(
        organizer=p.organizer.key if p.organizer else None,
        statuses=p.status or frozenset(),
        start_from=p.from_,
        start_to=p.to,
        limit=p.limit,
    )
    return query, p.cursor


def empty_body(data: Any) -> None:
    """400 naming every field of a body that must be empty."""
    if data is not None:
        structure(data, EmptyBody)


def subscription_command(
    data: Any, callback_hosts: tuple[str, ...], deny: tuple[Network, ...] = ()
) -> NewSubscription:
    body = structure(data, SubscriptionBody)
    problems = _allowed(body.url, "url", callback_hosts, deny)
    if problems:
        raise ValidationFailed(problems)
    return NewSubscription(url=body.url, events=body.events)


def availability_query(
    params: Mapping[str, str], problems: list[FieldError]
) -> tuple[AvailabilityQuery, bool]:
    """The query and whether its answer is grouped by day; ValidationFailed lists every bad
    parameter (with `problems` already found, such as repeated ones)."""
    try:
        p = structure(dict(params), AvailabilityParams, unknown="unknown parameter")
    except ValidationFailed as err:
        raise ValidationFailed([*problems, *err.errors]) from None
    if p.from_ > p.to:
        problems.append(FieldError("to", "must not be before from"))
    elif (p.to - p.from_).days + 1 > MAX_DAYS:
        problems.append(FieldError("to", f"the range spans more than {MAX_DAYS} days"))
    count = len(p.participants)
    if p.required is not None and not 1 <= p.required <= count:
        problems.append(FieldError("required", f"must be an integer from 1 to {count}"))
    if p.order == "best" and p.group == "day":
        problems.append(FieldError("order", "'best' ranks across days: not with group=day"))
    if problems:
        raise ValidationFailed(problems)
    query = AvailabilityQuery(
        participants=p.participants,
        duration=p.duration,
        first=p.from_,
        last=p.to,
        timezone=p.timezone,
        step=p.step or p.duration,
        required=p.required or count,
        partial=p.partial,
        notice=p.notice,
        buffer_before=p.buffer_before,
        buffer_after=p.buffer_after,
        order="best" if p.order == "best" else "start",
        limit=p.limit,
    )
    return query, p.group == "day"


def delivery_query(params: Mapping[str, str]) -> DeliveryQuery:
    p = structure(dict(params), DeliveryParams, unknown="unknown parameter")
    return DeliveryQuery(status=p.status, limit=p.limit)

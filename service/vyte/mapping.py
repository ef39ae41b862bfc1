"""Vyte's events and failures in the gateway's terms: bookings, statuses, problems.

Everything that knows both Vyte's wire models and the gateway's domain lives here, so the
use cases never read or write Vyte's formats themselves.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import cattrs

from service.commands import NewBooking
from service.domain.booking import Booking, BookingStatus, Invitee, Place
from service.domain.participant import parse_timezone
from service.errors import (
    FieldError,
    ServiceError,
    UpstreamFailed,
    UpstreamTimeout,
    UpstreamUnavailable,
    ValidationFailed,
)
from service.vyte import errors
from service.vyte.models import (
    Creator,
    Event,
    EventDate,
    HookNotification,
    Message,
    NewEvent,
    NewEventDate,
    NewInvitee,
    NewPlace,
    converter,
)


def surely_not_created(err: errors.VyteError) -> bool:
    """Whether a failed create certainly did not store an event in Vyte.

    Only refusals say so: Vyte's 4xx answers (429 included), and the calls never sent
    (open breaker, saturation). A 5xx, a timeout, a dropped connection or an unreadable
    answer may come after Vyte stored the event.
    """
    if isinstance(err, errors.CircuitOpen | errors.Saturated):
        return True
    return err.status is not None and 400 <= err.status < 500


def upstream_problem(err: errors.VyteError) -> ServiceError:
    """DESIGN §4: how an upstream failure reaches our caller."""
    if isinstance(err, errors.VyteTimeout):
        return UpstreamTimeout("Vyte did not answer in time")
    if isinstance(err, errors.VyteUnavailable):
        headers = {}
        if err.retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(err.retry_after)))
        return UpstreamUnavailable(str(err), headers=headers)
    return UpstreamFailed(f"Vyte failed: {err}")


def booking_from_event(
    event: Event, now: datetime, *, caller: str | None = None, callback_url: str | None = None
) -> Booking:
    """Adopt a Vyte event the gateway has not seen as a booking."""
    chosen = chosen_date(event)
    if chosen is None:
        raise errors.VyteBadResponse("event has no dates")
    start = vyte_instant(chosen.date)
    end = vyte_instant(chosen.end_date)
    organizer = (event.created_by.user or event.created_by.email or "").lower()
    invitees = tuple(
        Invitee(email=i.email, full_name=i.full_name, phone=i.phone)
        for i in event.invitees
        if i.email and not i.su
    )
    place = event.places[0] if event.places else None
    zone = event.timezone if event.timezone and parse_timezone(event.timezone) else "UTC"
    return Booking(
        id=event.id,
        status=status_of(event),
        title=event.title,
        organizer=organizer,
        start=start,
        end=end,
        timezone=zone,
        invitees=invitees,
        place=Place(name=place.name, address=place.address) if place and place.name else None,
        message=None,
        callback_url=callback_url,
        caller=caller,
        version=1,
        created_at=now,
        updated_at=now,
    )


def status_of(event: Event) -> BookingStatus:
    """The booking status of a Vyte event: cancelled wins, then confirmed."""
    if event.cancelled:
        return BookingStatus.CANCELLED
    if event.confirmed.flag:
        return BookingStatus.CONFIRMED
    return BookingStatus.REQUESTED


def vyte_instant(value: str) -> datetime:
    """An instant of Vyte's (UTC, ISO 8601) as an aware datetime."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise errors.VyteBadResponse(f"unreadable date {value!r}") from None
    # Vyte returns UTC ("...Z"); a naive value is UTC too.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def vyte_time(value: datetime) -> str:
    """An instant as Vyte writes them: UTC, milliseconds, `Z`."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def chosen_date(event: Event) -> EventDate | None:
    """The date an event takes its times from: the one `confirmed.date_id` names, else the
    first (an id naming none of the dates counts as unset); None without dates."""
    wanted = event.confirmed.date_id
    for candidate in event.dates:
        if wanted is not None and candidate.id == wanted:
            return candidate
    return event.dates[0] if event.dates else None


def event_times(event: Event) -> tuple[datetime, datetime] | None:
    """The instants of an event's chosen date; None when it has none or they are unreadable."""
    chosen = chosen_date(event)
    if chosen is None:
        return None
    try:
        return vyte_instant(chosen.date), vyte_instant(chosen.end_date)
    except errors.VyteBadResponse:
        return None


def new_event(req: NewBooking) -> NewEvent:
    """The Vyte body for a booking (DESIGN §3.2): exact instants, in UTC."""
    organizer = req.organizer
    return NewEvent(
        title=req.title,
        created_by=Creator(email=organizer.key)
        if organizer.is_email
        else Creator(user=organizer.key),
        dates=(NewEventDate(date=vyte_time(req.start), end_date=vyte_time(req.end)),),
        invitees=tuple(
            NewInvitee(email=i.email, full_name=i.full_name, phone=i.phone) for i in req.invitees
        ),
        places=(NewPlace(name=req.place.name, address=req.place.address),) if req.place else (),
        messages=(Message(body=req.message),) if req.message else (),
        timezone=req.timezone,
    )


def parse_notifications(body: Any) -> list[HookNotification]:
    """One notification object or a list of them; 400 naming each one that is not."""
    _check_hook_fields(body)
    items = body if isinstance(body, list) else [body]
    out = []
    for i, item in enumerate(items):
        try:
            out.append(converter.structure(item, HookNotification))
        except (cattrs.BaseValidationError, ValueError, TypeError, KeyError):
            raise ValidationFailed([FieldError(f"[{i}]", "not a Vyte hook notification")]) from None
    return out


def _check_hook_fields(body: object) -> None:
    """400 unless the fields read from a notification have Vyte's types.

    The Vyte converter would coerce them (`{"_id": {}}` becomes the id "{}").
    """
    items = body if isinstance(body, list) else [body]
    bad = []
    for i, item in enumerate(items):
        resource = item.get("resource") if isinstance(item, dict) else None
        if not (
            isinstance(item, dict)
            and isinstance(item.get("action"), str)
            and isinstance(item.get("organization"), str | dict | None)
            and isinstance(resource, dict)
            and isinstance(resource.get("_id"), str)
        ):
            bad.append(FieldError(f"[{i}]", "not a Vyte hook notification"))
    if bad:
        raise ValidationFailed(bad)

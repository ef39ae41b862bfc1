"""How every resource is shown to callers, in API answers and webhook payloads alike."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import attrs

from service.availability import Availability
from service.domain.booking import Booking
from service.domain.freetime import SlotMatch, Slots, format_instant
from service.domain.participant import ParticipantState
from service.store.base import Delivery, Operation, Subscription

# Repeated queries format the same instants again and again: a bounded memo turns each text
# into a lookup. 8192 texts take about 2 MB; a month of 15-minute starts needs 3,000.
_instant_text = lru_cache(maxsize=8192)(format_instant)


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds")


def booking_resource(booking: Booking) -> dict[str, Any]:
    """The booking as every booking endpoint answers with it (times in its own zone)."""
    zone = ZoneInfo(booking.timezone)

    def local(value: datetime) -> str:
        return value.astimezone(zone).isoformat(timespec="seconds")

    return {
        "id": booking.id,
        "status": booking.status.value,
        "title": booking.title,
        "organizer": booking.organizer,
        "start": local(booking.start),
        "end": local(booking.end),
        "timezone": booking.timezone,
        "invitees": [
            {k: v for k, v in attrs.asdict(i).items() if v is not None} for i in booking.invitees
        ],
        "place": {k: v for k, v in attrs.asdict(booking.place).items() if v is not None}
        if booking.place
        else None,
        "message": booking.message,
        "callback_url": booking.callback_url,
        "version": booking.version,
        "created_at": _utc(booking.created_at),
        "updated_at": _utc(booking.updated_at),
    }


def booking_list(bookings: Sequence[Booking], next_cursor: str | None) -> dict[str, Any]:
    """GET /v1/bookings's answer: one page, and the cursor of the next (None: the last)."""
    return {"bookings": [booking_resource(b) for b in bookings], "next_cursor": next_cursor}


def operation_resource(op: Operation) -> dict[str, Any]:
    return {
        "id": op.id,
        "type": op.type.value,
        "status": op.status.value,
        "booking_id": op.booking_id,
        "attempts": op.attempts,
        "last_error": op.last_error,
        "created_at": op.created_at.isoformat(timespec="seconds"),
        "updated_at": op.updated_at.isoformat(timespec="seconds"),
    }


def subscription_resource(sub: Subscription) -> dict[str, Any]:
    return {
        "id": sub.id,
        "url": sub.url,
        "events": list(sub.events),
        "created_at": sub.created_at.isoformat(timespec="seconds"),
    }


def delivery_resource(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "event_type": d.event_type,
        "url": d.url,
        "booking_id": d.booking_id,
        "status": d.status.value,
        "attempts": d.attempts,
        "last_error": d.last_error,
        "next_attempt_at": d.next_attempt_at.isoformat(timespec="seconds"),
        "created_at": d.created_at.isoformat(timespec="seconds"),
        "updated_at": d.updated_at.isoformat(timespec="seconds"),
    }


def webhook_body(event_type: str, subject: Booking | Operation, now: datetime) -> str:
    """The exact JSON of an outbound webhook: `{"type", "timestamp", "data": <resource>}`."""
    data = (
        booking_resource(subject) if isinstance(subject, Booking) else operation_resource(subject)
    )
    return json.dumps(
        {"type": event_type, "timestamp": now.isoformat(timespec="seconds"), "data": data},
        separators=(",", ":"),
    )


def participant_states(states: Sequence[ParticipantState]) -> list[dict[str, str]]:
    """An availability query's participants: `ok`, or `error` with the reason and a detail."""
    listed = []
    for state in states:
        entry = {"id": state.participant.given, "status": "ok" if state.ok else "error"}
        if not state.ok:
            entry["reason"] = state.status
            entry["detail"] = state.detail or state.status
        listed.append(entry)
    return listed


def _columns(
    slots: Sequence[SlotMatch],
) -> tuple[Sequence[int], Iterable[int], Sequence[tuple[int, ...]], Sequence[int | None]]:
    """Starts, ends, participants and stranded minutes of every slot: read from find_slots'
    columns as they are, without a SlotMatch per slot."""
    if isinstance(slots, Slots):
        starts, members, duration, stranded = slots.columns()
        ends = map(duration.__add__, starts)
        return starts, ends, members, stranded or [None] * len(starts)
    return (
        [m.start for m in slots],
        [m.end for m in slots],
        [m.participants for m in slots],
        [m.stranded_minutes for m in slots],
    )


def availability_answer(answer: Availability, by_day: bool) -> dict[str, Any]:
    """GET /v1/availability's answer: the slots, or with `by_day` the dates that have some."""
    q = answer.query
    zone = q.zone
    names = [p.given for p in q.participants]
    starts, ends, members, stranded = _columns(answer.slots)
    # A slot's end is usually another slot's start, and neighbouring slots usually have the
    # same participants (find_slots hands out the same tuple then): build each text once.
    texts: dict[int, str] = {}
    group: tuple[int, ...] | None = None
    who: list[str] = []
    slots: list[dict[str, Any]] = []
    for start, end, people in zip(starts, ends, members, strict=True):
        start_text = texts.get(start)
        if start_text is None:
            start_text = texts[start] = _instant_text(start, zone)
        end_text = texts.get(end)
        if end_text is None:
            end_text = texts[end] = _instant_text(end, zone)
        if people is not group:
            group = people
            who = [names[i] for i in people]
        slots.append({"start": start_text, "end": end_text, "participants": who})
    if q.order == "best":
        for slot, minutes in zip(slots, stranded, strict=True):
            slot["stranded_minutes"] = minutes
    body: dict[str, Any] = {
        "timezone": q.timezone,
        "from": q.first.isoformat(),
        "to": q.last.isoformat(),
        "duration": q.duration,
        "step": q.step,
        "required": q.required,
        "complete": answer.complete,
        "participants": participant_states(answer.participants),
    }
    if by_day:
        days: dict[str, list[dict[str, Any]]] = {}
        for slot in slots:
            # The local date opens the formatted start ("2020-10-01T09:00:00+02:00").
            days.setdefault(slot["start"][:10], []).append(slot)
        body["days"] = [{"date": d, "slots": s} for d, s in days.items()]
    else:
        body["slots"] = slots
    return body

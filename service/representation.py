"""How a booking is shown to callers: in API answers and in webhook payloads."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import attrs

from service.domain.booking import Booking


def booking_resource(booking: Booking) -> dict[str, Any]:
    """The booking as every booking endpoint answers with it."""
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
        "created_at": booking.created_at.astimezone(UTC).isoformat(timespec="seconds"),
        "updated_at": booking.updated_at.astimezone(UTC).isoformat(timespec="seconds"),
    }

"""The typed commands the use cases take, as the HTTP edge validated them.

A create accepted for later (`Prefer: respond-async`) is kept as its encoded command, so the
worker applies exactly what was validated, without reading the body again.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from zoneinfo import ZoneInfo

import attrs
import cattrs

from service.domain.booking import BookingStatus, Invitee, Place
from service.domain.freetime import Order
from service.domain.participant import Participant
from service.store.base import DeliveryStatus


@attrs.frozen
class AvailabilityQuery:
    """Free time of `participants` for meetings of `duration` minutes, `first`..`last`."""

    participants: tuple[Participant, ...]
    duration: int
    first: date
    last: date
    timezone: str
    step: int
    required: int
    partial: bool
    # DESIGN §3.1 rule 5: minutes; `notice` counts from the moment the query is answered.
    notice: int = 0
    buffer_before: int = 0
    buffer_after: int = 0
    order: Order = "start"
    limit: int | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@attrs.frozen
class NewBooking:
    """A booking to create; instants are UTC, to the second."""

    organizer: Participant
    title: str
    start: datetime
    end: datetime
    timezone: str
    invitees: tuple[Invitee, ...]
    place: Place | None
    message: str | None
    callback_url: str | None
    check_availability: bool


@attrs.frozen
class Reschedule:
    """New times for a booking; instants are UTC, to the second."""

    start: datetime
    end: datetime
    check_availability: bool


@attrs.frozen
class BookingQuery:
    """Which bookings to list: the filters of GET /v1/bookings and where the page begins.

    `after` is the (start, id) of the last booking of the previous page (None: the first)."""

    organizer: str | None
    statuses: frozenset[BookingStatus]
    start_from: datetime | None
    start_to: datetime | None
    limit: int
    after: tuple[datetime, str] | None = None


@attrs.frozen
class NewSubscription:
    url: str
    events: tuple[str, ...]


@attrs.frozen
class DeliveryQuery:
    """Which of a caller's deliveries to list (`status` None: any), newest first."""

    status: DeliveryStatus | None
    limit: int


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(omit_if_default=True)
    conv.register_unstructure_hook(datetime, lambda moment: moment.isoformat())
    conv.register_structure_hook(datetime, lambda value, _: datetime.fromisoformat(value))
    conv.register_unstructure_hook(Participant, lambda p: p.given)
    conv.register_structure_hook(Participant, lambda value, _: Participant(value))
    return conv


_converter = _make_converter()


def encode_booking(command: NewBooking) -> str:
    """A NewBooking as JSON, for an operation to keep until its worker applies it."""
    return json.dumps(_converter.unstructure(command), separators=(",", ":"))


class UnreadableCommand(ValueError):
    """A stored command this version cannot read back."""


def decode_booking(text: str) -> NewBooking:
    """The NewBooking that `encode_booking` wrote; UnreadableCommand for anything else."""
    try:
        return _converter.structure(json.loads(text), NewBooking)
    except (cattrs.BaseValidationError, ValueError, TypeError, KeyError) as err:
        raise UnreadableCommand(f"not a stored booking command: {type(err).__name__}") from None


def encode_reschedule(command: Reschedule) -> str:
    """A Reschedule as JSON, for an operation to keep until its worker applies it."""
    return json.dumps(_converter.unstructure(command), separators=(",", ":"))


def decode_reschedule(text: str) -> Reschedule:
    """The Reschedule that `encode_reschedule` wrote; UnreadableCommand for anything else."""
    try:
        return _converter.structure(json.loads(text), Reschedule)
    except (cattrs.BaseValidationError, ValueError, TypeError, KeyError) as err:
        raise UnreadableCommand(f"not a stored reschedule command: {type(err).__name__}") from None

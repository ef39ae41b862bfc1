"""Bookings as the gateway knows them, and the status machine they follow."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import attrs


class BookingStatus(StrEnum):
    REQUESTED = "requested"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"


ACTIVE_STATUSES = frozenset({BookingStatus.REQUESTED, BookingStatus.CONFIRMED})


@attrs.frozen
class Invitee:
    email: str
    full_name: str | None = None
    phone: str | None = None


@attrs.frozen
class Place:
    name: str
    address: str | None = None


@attrs.frozen
class Booking:
    """One Vyte event created or adopted by the gateway; `version` grows on every change."""

    id: str
    status: BookingStatus
    title: str
    organizer: str
    start: datetime
    end: datetime
    timezone: str
    invitees: tuple[Invitee, ...]
    place: Place | None
    message: str | None
    callback_url: str | None
    caller: str | None
    version: int
    created_at: datetime
    updated_at: datetime

    @property
    def active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    def changed(self, now: datetime, **changes: object) -> Booking:
        """The next version of this booking with `changes` applied."""
        return attrs.evolve(self, version=self.version + 1, updated_at=now, **changes)  # type: ignore[arg-type]


class TransitionRefused(Exception):
    """The requested status change is not allowed from the current status."""


def plan_transition(current: BookingStatus, target: BookingStatus) -> bool:
    """Whether moving `current` -> `target` needs a change (True) or is a no-op (False).

    Raises TransitionRefused when the move is not allowed (a cancelled booking
    cannot be confirmed).
    """
    if current == target:
        return False
    if current == BookingStatus.CANCELLED:
        raise TransitionRefused(f"booking is {current}")
    if target == BookingStatus.REQUESTED:
        raise TransitionRefused(f"booking is already {current}")
    return True

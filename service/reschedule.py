"""Reschedule: move a booking to new times in Vyte, held like a create, its old time freed."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta

from service.availability import AvailabilityService
from service.bookings import BookingService
from service.commands import Reschedule
from service.domain.booking import Booking, BookingStatus
from service.domain.freetime import merge_intervals
from service.domain.participant import parse_participant, parse_timezone
from service.errors import BookingCancelled, BookingNotFound, Conflict, SlotUnavailable
from service.store.base import Store
from service.vyte import errors as vyte_errors
from service.vyte.client import VyteClient
from service.vyte.mapping import (
    event_times,
    status_of,
    surely_not_created,
    upstream_problem,
    vyte_time,
)
from service.vyte.models import Event, EventChanges, NewEventDate

# The lock on a booking's moves: a hold on a time of its own, under a key no organizer has.
_MOVING = "reschedule:"
_LOCK_START = datetime(2000, 1, 1, tzinfo=UTC)
_LOCK_END = _LOCK_START + timedelta(seconds=1)


class RescheduleService:
    """Moves bookings; every change is stored with its `booking.updated` webhooks."""

    def __init__(
        self,
        bookings: BookingService,
        vyte: VyteClient,
        store: Store,
        availability: AvailabilityService,
    ) -> None:
        self._bookings = bookings
        self._vyte = vyte
        self._store = store
        self._availability = availability

    async def visible(self, caller: str, booking_id: str) -> Booking:
        """The booking `caller` may change; 404 as for a missing id otherwise (DESIGN §3.0)."""
        return await self._bookings.get_for(caller, booking_id)

    async def reschedule(self, caller: str, booking_id: str, move: Reschedule) -> Booking:
        """One move of a booking at a time, on every replica: a second one that arrives while
        Vyte is moving the first is 409 (both would succeed, the stored times and Vyte's ending
        up those of different moves)."""
        lock = f"moving-{uuid.uuid4().hex}"
        if not await self._store.acquire_hold(
            _MOVING + booking_id, _LOCK_START, _LOCK_END, lock, self._bookings.hold_ttl
        ):
            await self.visible(caller, booking_id)  # anyone else's booking: 404, as for any id
            raise Conflict(f"booking {booking_id} is being rescheduled by another request; retry")
        try:
            # Read under the lock: the times a move that just ended left.
            return await self._reschedule(await self.visible(caller, booking_id), move)
        finally:
            await self._store.release_hold(lock)

    async def _reschedule(self, booking: Booking, move: Reschedule) -> Booking:
        """Check, hold the new time, move the event in Vyte, record; the old time goes free."""
        if booking.status == BookingStatus.CANCELLED:
            raise BookingCancelled(f"booking {booking.id} is cancelled")
        if (booking.start, booking.end) == (move.start, move.end):
            return booking
        if move.check_availability:
            await self._check_slot(booking, move)
        hold = f"move-{uuid.uuid4().hex}"
        held = await self._store.acquire_hold(
            booking.organizer,
            move.start,
            move.end,
            hold,
            self._bookings.hold_ttl,
            ignore_booking=booking.id,
        )
        if not held:
            raise SlotUnavailable("the new time overlaps another booking of this organizer")
        event = await self._move(booking, move, hold)
        # Recorded, the move changes the organizer's booking mark: Vyte's cached view, which
        # still shows the old time busy, is not used again here or on any replica.
        return await self._record(booking.id, move, event, hold)

    async def _check_slot(self, booking: Booking, move: Reschedule) -> None:
        """409 unless the new time lies inside the organizer's fresh Vyte windows, the
        booking's own current time counting as free (Vyte shows it busy)."""
        organizer = parse_participant(booking.organizer)
        zone = parse_timezone(booking.timezone)
        if organizer is None or zone is None:
            raise Conflict(f"booking {booking.id} has no organizer Vyte can be asked about")
        minutes = math.ceil((move.end - move.start).total_seconds() / 60)
        try:
            free = await self._availability.free_windows(
                organizer,
                duration=max(5, minutes),
                first=move.start.astimezone(zone).date(),
                last=move.end.astimezone(zone).date(),
                timezone=booking.timezone,
                fresh=True,
            )
        except vyte_errors.VyteError as err:
            raise upstream_problem(err) from err
        own = (int(booking.start.timestamp()), int(booking.end.timestamp()))
        start, end = int(move.start.timestamp()), int(move.end.timestamp())
        if not any(s <= start and end <= e for s, e in merge_intervals([*free, own])):
            raise SlotUnavailable("the organizer is not free for the whole new time")

    async def _move(self, booking: Booking, move: Reschedule, hold: str) -> Event:
        changes = EventChanges(
            dates=(NewEventDate(date=vyte_time(move.start), end_date=vyte_time(move.end)),)
        )
        try:
            return await self._vyte.update_event(booking.id, changes)
        except vyte_errors.VyteNotFound:
            await self._store.release_hold(hold)
            raise BookingNotFound(f"Vyte no longer knows booking {booking.id}") from None
        except vyte_errors.VyteRejected:
            await self._store.release_hold(hold)
            return await self._refused(booking)
        except vyte_errors.VyteError as err:
            if surely_not_created(err):
                await self._store.release_hold(hold)
                raise upstream_problem(err) from err
            # The answer is lost (5xx, timeout): Vyte may have moved the event all the same.
            # Read it back; a move Vyte applied is recorded and answered as done. Otherwise
            # the hold stays until it lapses.
            wanted = (move.start, move.end)
            return await self._bookings.applied_despite(
                booking.id, err, lambda event: event_times(event) == wanted
            )

    async def _refused(self, booking: Booking) -> Event:
        """Vyte refused the move: usually the event was cancelled inside Vyte meanwhile."""
        try:
            event = await self._vyte.get_event(booking.id)
        except vyte_errors.VyteNotFound:
            raise BookingNotFound(f"Vyte no longer knows booking {booking.id}") from None
        except vyte_errors.VyteError as err:
            raise upstream_problem(err) from err
        if status_of(event) == BookingStatus.CANCELLED:
            await self._bookings.apply_status(booking.id, BookingStatus.CANCELLED)
            raise BookingCancelled(f"booking {booking.id} was cancelled in Vyte")
        raise Conflict(f"Vyte refused to reschedule booking {booking.id}")

    async def _record(self, booking_id: str, move: Reschedule, event: Event, hold: str) -> Booking:
        """Write the new times and the status Vyte reports, releasing the hold in the same
        step (so the new time stays blocked by the booking itself)."""
        for _ in range(10):
            current = await self._store.get_booking(booking_id)
            if current is None:
                await self._store.release_hold(hold)
                raise BookingNotFound(f"no booking {booking_id}")
            # A cancellation that arrived meanwhile (Vyte's hook) is final.
            cancelled = current.status == BookingStatus.CANCELLED
            status = current.status if cancelled else status_of(event)
            updated = current.changed(
                datetime.now(UTC), start=move.start, end=move.end, status=status
            )
            if await self._bookings.save(
                updated, "booking.updated", current.version, release_hold=hold
            ):
                return updated
        raise Conflict("booking is changing too fast; retry")

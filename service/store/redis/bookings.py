"""The Redis store's bookings and holds (no double booking)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from service.domain.booking import Booking, BookingStatus
from service.store import codec
from service.store.base import BookingPage, Delivery
from service.store.redis.connection import Connection
from service.store.redis.fields import deliveries_args


class Bookings(Connection):
    """Bookings by id, by organizer and time; holds over an organizer's time."""

    # -- bookings -----------------------------------------------------------------------

    async def get_booking(self, booking_id: str) -> Booking | None:
        async with self._redis() as client:
            record = await client.hget(f"{self.prefix}booking:{booking_id}", "record")
        return None if record is None else codec.loads(record, Booking)

    async def put_booking(
        self,
        booking: Booking,
        *,
        expected_version: int | None,
        release_hold: str | None = None,
        deliveries: Sequence[Delivery] = (),
    ) -> bool:
        args = [
            booking.id,
            "" if expected_version is None else str(expected_version),
            str(booking.version),
            booking.organizer,
            str(codec.to_us(booking.start)),
            str(codec.to_us(booking.end)),
            booking.status.value,
            "1" if booking.active else "0",
            codec.dumps(booking),
            "" if release_hold is None else release_hold,
            *deliveries_args(deliveries),
        ]
        return bool(await self._run(self._scripts.put_booking, args))

    async def active_bookings(
        self, organizers: Collection[str], start: datetime, end: datetime
    ) -> list[Booking]:
        who = sorted(set(organizers))
        if not who:
            return []
        records: list[str] = await self._run(
            self._scripts.active_bookings, [str(codec.to_us(start)), str(codec.to_us(end)), *who]
        )
        bookings = [codec.loads(record, Booking) for record in records]
        return sorted(bookings, key=lambda booking: (booking.start, booking.id))

    # -- no double booking --------------------------------------------------------------

    async def acquire_hold(
        self,
        organizer: str,
        start: datetime,
        end: datetime,
        hold_id: str,
        ttl: float,
        *,
        ignore_booking: str | None = None,
    ) -> bool:
        outcome = await self._run(
            self._scripts.acquire_hold,
            [
                organizer,
                str(codec.to_us(start)),
                str(codec.to_us(end)),
                hold_id,
                str(codec.ms(ttl)),
                ignore_booking or "",
            ],
        )
        return bool(outcome)

    async def release_hold(self, hold_id: str) -> None:
        await self._run(self._scripts.release_hold, [hold_id])

    async def list_bookings(
        self,
        *,
        caller: str | None,
        organizer: str | None = None,
        statuses: Collection[BookingStatus] | None = None,
        start_from: datetime | None = None,
        start_to: datetime | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int = 50,
    ) -> BookingPage:
        raise NotImplementedError

    async def claim_resync(
        self, now: datetime, limit: int, owner: str, interval: float
    ) -> list[Booking]:
        raise NotImplementedError

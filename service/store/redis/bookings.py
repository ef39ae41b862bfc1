"""The Redis store's bookings and holds (no double booking)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Final

from service.domain.booking import Booking, BookingStatus
from service.store import codec
from service.store.base import BookingPage, Delivery, organizer_key
from service.store.redis.connection import Connection
from service.store.redis.fields import (
    deliveries_args,
    list_key,
    list_position,
    list_prefix,
    put_booking_args,
)

# Listing keys one listing call looks at, at most: a filter the index cannot answer
# (an owner within an organizer's bookings) costs a short page, never a long scan.
LIST_LOOKAHEAD: Final = 1000


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
            release_hold or "",
            *put_booking_args(booking, expected_version),
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
        if limit <= 0:
            return BookingPage([], None)
        wanted = sorted({BookingStatus(status).value for status in statuses or BookingStatus})
        # The narrowest index there is; an owner asked for with an organizer is checked
        # record by record, within the look-ahead budget.
        if organizer is not None:
            scope, keep = f"by-organizer:{{}}:{organizer_key(organizer)}", caller or ""
        elif caller is not None:
            scope, keep = f"by-caller:{{}}:{caller}", ""
        else:
            scope, keep = "by-start:{}", ""
        indexes = [f"{self.prefix}bookings:{scope.format(status)}" for status in wanted]
        lower = "-"
        if start_from is not None:
            lower = "[" + list_prefix(start_from)
        if after is not None and list_key(*after) >= lower[1:]:
            lower = "(" + list_key(*after)
        upper = "+" if start_to is None else "(" + list_prefix(start_to)
        records, next_key = await self._run(
            self._scripts.list_bookings,
            [lower, upper, str(limit), str(LIST_LOOKAHEAD), keep, *indexes],
        )
        return BookingPage(
            [codec.loads(record, Booking) for record in records],
            list_position(next_key) if next_key else None,
        )

    async def claim_resync(
        self, now: datetime, limit: int, owner: str, interval: float
    ) -> list[Booking]:
        if interval <= 0:
            raise ValueError("a resync interval must be positive")
        if limit <= 0:
            return []
        records: list[str] = await self._run(
            self._scripts.claim_resync,
            [str(codec.to_us(now)), str(codec.after_us(now, -interval)), str(limit)],
        )
        return [codec.loads(record, Booking) for record in records]

"""The Redis store's bookings and holds (no double booking)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Final, cast

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

# Listing keys that do not match one listing call looks at, at most: a filter the index
# cannot answer (an owner within an organizer's bookings) costs a short page, never a
# long scan.
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

    async def booking_marks(self, organizers: Sequence[str]) -> tuple[str, ...]:
        if not organizers:
            return ()
        async with self._redis() as client:
            found = await client.hmget(f"{self.prefix}bookings:marks", list(organizers))
        return tuple(cast(str | None, mark) or "" for mark in found)

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
        indexes, check = await self._listing_indexes(caller, organizer, wanted)
        lower = "-"
        if start_from is not None:
            lower = "[" + list_prefix(start_from)
        if after is not None and list_key(*after) >= lower[1:]:
            lower = "(" + list_key(*after)
        upper = "+" if start_to is None else "(" + list_prefix(start_to)
        records, next_key = await self._run(
            self._scripts.list_bookings,
            [lower, upper, str(limit), str(LIST_LOOKAHEAD), *check, *indexes],
        )
        return BookingPage(
            [codec.loads(record, Booking) for record in records],
            list_position(next_key) if next_key else None,
        )

    async def _listing_indexes(
        self, caller: str | None, organizer: str | None, statuses: list[str]
    ) -> tuple[list[str], tuple[str, str]]:
        """The listing indexes to merge (one per status), and the booking field to check
        with the value to keep ('' when the indexes answer every filter).

        Owner and organizer both asked for: the smaller of the two scopes, the other
        checked record by record (within the look-ahead budget)."""

        def scope(name: str) -> list[str]:
            return [f"{self.prefix}bookings:{name.format(status)}" for status in statuses]

        if caller is None and organizer is None:
            return scope("by-start:{}"), ("", "")
        by_caller = scope(f"by-caller:{{}}:{caller}") if caller is not None else []
        by_organizer: list[str] = []
        if organizer is not None:
            by_organizer = scope(f"by-organizer:{{}}:{organizer_key(organizer)}")
        if not by_organizer:
            return by_caller, ("", "")
        if not by_caller:
            return by_organizer, ("", "")
        assert caller is not None and organizer is not None
        async with self._redis() as client, client.pipeline(transaction=False) as pipe:
            for index in by_caller + by_organizer:
                pipe.zcard(index)
            sizes: list[int] = await pipe.execute()
        if sum(sizes[: len(by_caller)]) <= sum(sizes[len(by_caller) :]):
            return by_caller, ("organizer_key", organizer_key(organizer))
        return by_organizer, ("caller", caller)

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

"""The SQLite store's bookings and holds (no double booking)."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from service.domain.booking import Booking, BookingStatus
from service.store import codec
from service.store.base import BookingPage, Delivery
from service.store.sqlite.connection import Connection, fetch_all, fetch_one
from service.store.sqlite.rows import INSERT_DELIVERY, delivery_params


class Bookings(Connection):
    """Bookings by id, by organizer and time; holds over an organizer's time."""

    # -- bookings -----------------------------------------------------------------------

    async def get_booking(self, booking_id: str) -> Booking | None:
        async with self._reading() as db:
            row = await fetch_one(db, "SELECT record FROM bookings WHERE id = ?", (booking_id,))
        return None if row is None else codec.loads(row["record"], Booking)

    async def put_booking(
        self,
        booking: Booking,
        *,
        expected_version: int | None,
        release_hold: str | None = None,
        deliveries: Sequence[Delivery] = (),
    ) -> bool:
        params = (
            booking.id,
            booking.organizer,
            codec.to_us(booking.start),
            codec.to_us(booking.end),
            booking.status.value,
            booking.version,
            codec.dumps(booking),
        )
        delivery_rows = [delivery_params(delivery) for delivery in deliveries]
        async with self._writing() as db:
            row = await fetch_one(db, "SELECT version FROM bookings WHERE id = ?", (booking.id,))
            stored = None if row is None else int(row["version"])
            if stored != expected_version:
                return False
            await db.execute(
                """
                INSERT INTO bookings (id, organizer, start_us, end_us, status, version, record)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (id) DO UPDATE SET
                    organizer = excluded.organizer, start_us = excluded.start_us,
                    end_us = excluded.end_us, status = excluded.status,
                    version = excluded.version, record = excluded.record
                """,
                params,
            )
            if release_hold is not None:
                await db.execute("DELETE FROM holds WHERE id = ?", (release_hold,))
            if delivery_rows:
                await db.executemany(INSERT_DELIVERY, delivery_rows)
        return True

    async def active_bookings(
        self, organizers: Collection[str], start: datetime, end: datetime
    ) -> list[Booking]:
        who = sorted(set(organizers))
        if not who:
            return []
        async with self._reading() as db:
            # At most 50 organizers (an availability query's limit), far below SQLite's
            # limit on bound parameters.
            rows = await fetch_all(
                db,
                f"""
                SELECT record FROM bookings
                WHERE organizer IN ({", ".join("?" * len(who))})
                  AND status IN ('requested', 'confirmed')
                  AND start_us < ? AND end_us > ?
                ORDER BY start_us, id
                """,  # noqa: S608 - only placeholders are formatted in
                (*who, codec.to_us(end), codec.to_us(start)),
            )
        return [codec.loads(row["record"], Booking) for row in rows]

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
        start_us, end_us = codec.to_us(start), codec.to_us(end)
        now = codec.now()
        now_us = codec.to_us(now)
        async with self._writing() as db:
            await db.execute("DELETE FROM holds WHERE expires_us <= ?", (now_us,))
            held = await fetch_one(
                db,
                """
                SELECT 1 FROM holds
                WHERE organizer = ? AND start_us < ? AND end_us > ? AND expires_us > ?
                  AND id != ?
                LIMIT 1
                """,
                (organizer, end_us, start_us, now_us, hold_id),
            )
            if held is not None:
                return False
            booked = await fetch_one(
                db,
                """
                SELECT 1 FROM bookings
                WHERE organizer = ? AND status IN ('requested', 'confirmed')
                  AND start_us < ? AND end_us > ? AND id IS NOT ?
                LIMIT 1
                """,
                (organizer, end_us, start_us, ignore_booking),
            )
            if booked is not None:
                return False
            await db.execute(
                "INSERT OR REPLACE INTO holds (id, organizer, start_us, end_us, expires_us) "
                "VALUES (?, ?, ?, ?, ?)",
                (hold_id, organizer, start_us, end_us, codec.after_us(now, ttl)),
            )
        return True

    async def release_hold(self, hold_id: str) -> None:
        async with self._writing() as db:
            await db.execute("DELETE FROM holds WHERE id = ?", (hold_id,))

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

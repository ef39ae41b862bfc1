"""The SQLite store's bookings and holds (no double booking)."""

from __future__ import annotations

import itertools
from collections.abc import Collection, Sequence
from datetime import datetime

import aiosqlite

from service.domain.booking import Booking, BookingStatus
from service.store import codec
from service.store.base import BookingPage, Delivery, organizer_key
from service.store.sqlite.connection import Connection, fetch_all, fetch_one
from service.store.sqlite.rows import INSERT_DELIVERY, delivery_params
from service.store.sqlite.schema import NEVER_US, RESYNC_RETIRED

# Marks of booking writes, unique within the process (one process writes a SQLite store).
_MARKS = itertools.count(1)


def mark_written(marks: dict[str, str], *organizers: str | None) -> None:
    """Give `organizers` new marks in `marks`; called after a write transaction of their
    bookings has ended, also when it failed (a spare new mark costs one recomputed answer)."""
    mark = str(next(_MARKS))
    for organizer in organizers:
        if organizer is not None:
            marks[organizer] = mark


class Bookings(Connection):
    """Bookings by id, by organizer and time; holds over an organizer's time."""

    async def booking_marks(self, organizers: Sequence[str]) -> tuple[str, ...]:
        marks = self._booking_marks
        return tuple(marks.get(organizer, "") for organizer in organizers)

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
        before: list[str | None] = [None]
        try:
            async with self._writing() as db:
                if not await write_booking(db, booking, expected_version, deliveries, before):
                    return False
                if release_hold is not None:
                    await db.execute("DELETE FROM holds WHERE id = ?", (release_hold,))
        finally:
            mark_written(self._booking_marks, booking.organizer, before[0])
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
        conditions: list[str] = []
        params: list[object] = []
        if caller is not None:
            conditions.append("caller = ?")
            params.append(caller)
        if organizer is not None:
            conditions.append("organizer_key = ?")
            params.append(organizer_key(organizer))
        if statuses:
            wanted = sorted({BookingStatus(status).value for status in statuses})
            conditions.append(f"status IN ({', '.join('?' * len(wanted))})")
            params += wanted
        if start_from is not None:
            conditions.append("start_us >= ?")
            params.append(codec.to_us(start_from))
        if start_to is not None:
            conditions.append("start_us < ?")
            params.append(codec.to_us(start_to))
        if after is not None:
            conditions.append("(start_us, id) > (?, ?)")
            params += (codec.to_us(after[0]), after[1])
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        async with self._reading() as db:
            # One more than asked: whether a next page exists.
            found = await fetch_all(
                db,
                f"SELECT record FROM bookings {where} ORDER BY start_us, id LIMIT ?",  # noqa: S608
                (*params, limit + 1),
            )
        bookings = [codec.loads(row["record"], Booking) for row in found]
        if len(bookings) <= limit:
            return BookingPage(bookings, None)
        last = bookings[limit - 1]
        return BookingPage(bookings[:limit], (last.start, last.id))

    async def claim_resync(
        self, now: datetime, limit: int, owner: str, interval: float
    ) -> list[Booking]:
        if interval <= 0:
            raise ValueError("a resync interval must be positive")
        handed: list[Booking] = []
        if limit <= 0:
            return handed
        now_us = codec.to_us(now)
        cutoff = codec.after_us(now, -interval)
        async with self._writing() as db:
            while len(handed) < limit:
                # Least recently handed out first; each row looked at leaves the range
                # (handed out now, or retired once ended), so the loop ends.
                found = await fetch_all(
                    db,
                    """
                    SELECT id, end_us, record FROM bookings
                    WHERE status IN ('requested', 'confirmed') AND resync_us <= ?
                    ORDER BY resync_us, id LIMIT ?
                    """,
                    (cutoff, limit - len(handed)),
                )
                if not found:
                    break
                marks = []
                for row in found:
                    ended = int(row["end_us"]) <= now_us
                    marks.append((RESYNC_RETIRED if ended else now_us, row["id"]))
                    if not ended:
                        handed.append(codec.loads(row["record"], Booking))
                await db.executemany("UPDATE bookings SET resync_us = ? WHERE id = ?", marks)
        return handed

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
        async with self._writing() as db:
            if not await hold_is_free(db, organizer, start_us, end_us, hold_id, ignore_booking):
                return False
            await take_hold(db, organizer, start_us, end_us, hold_id, codec.after_us(now, ttl))
        return True

    async def release_hold(self, hold_id: str) -> None:
        async with self._writing() as db:
            await db.execute("DELETE FROM holds WHERE id = ?", (hold_id,))


async def write_booking(
    db: aiosqlite.Connection,
    booking: Booking,
    expected_version: int | None,
    deliveries: Sequence[Delivery],
    before: list[str | None] | None = None,
) -> bool:
    """Write `booking` and enqueue `deliveries` if the stored version is
    `expected_version` (None: absent); inside a write transaction. When given, `before[0]`
    is set to the organizer the stored booking had, if any (the caller gives both of them new
    marks once the transaction has ended: `mark_written`)."""
    row = await fetch_one(db, "SELECT version, organizer FROM bookings WHERE id = ?", (booking.id,))
    stored = None if row is None else int(row["version"])
    if row is not None and before is not None:
        before[0] = str(row["organizer"])
    if stored != expected_version:
        return False
    # A booking that ended left the resync, and an inactive one is not in it: written
    # again (active), it is due at once. Others keep their turn.
    await db.execute(
        """
        INSERT INTO bookings (id, organizer, start_us, end_us, status, version, record,
                              caller, organizer_key)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
        ON CONFLICT (id) DO UPDATE SET
            organizer = excluded.organizer, start_us = excluded.start_us,
            end_us = excluded.end_us, status = excluded.status,
            version = excluded.version, record = excluded.record,
            caller = excluded.caller, organizer_key = excluded.organizer_key,
            resync_us = CASE
                WHEN resync_us = ? OR status NOT IN ('requested', 'confirmed') THEN 0
                ELSE resync_us END
        """,
        (
            booking.id,
            booking.organizer,
            codec.to_us(booking.start),
            codec.to_us(booking.end),
            booking.status.value,
            booking.version,
            codec.dumps(booking),
            booking.caller,
            organizer_key(booking.organizer),
            RESYNC_RETIRED,
        ),
    )
    if deliveries:
        await db.executemany(INSERT_DELIVERY, [delivery_params(d) for d in deliveries])
    return True


async def hold_is_free(
    db: aiosqlite.Connection,
    organizer: str,
    start_us: int,
    end_us: int,
    hold_id: str,
    ignore_booking: str | None = None,
) -> bool:
    """Whether no other unexpired hold and no active booking (but `ignore_booking`)
    overlaps [start_us, end_us) of `organizer`; drops expired holds on the way."""
    now_us = codec.to_us(codec.now())
    await db.execute("DELETE FROM holds WHERE expires_us <= ?", (now_us,))
    held = await fetch_one(
        db,
        """
        SELECT 1 FROM holds
        WHERE organizer = ? AND start_us < ? AND end_us > ? AND expires_us > ? AND id != ?
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
    return booked is None


async def take_hold(
    db: aiosqlite.Connection,
    organizer: str,
    start_us: int,
    end_us: int,
    hold_id: str,
    expires_us: int,
) -> None:
    """(Re)write hold `hold_id`; one tied to an unresolved create stays tied."""
    row = await fetch_one(db, "SELECT expires_us FROM holds WHERE id = ?", (hold_id,))
    if row is not None and int(row["expires_us"]) == NEVER_US:
        expires_us = NEVER_US
    await db.execute(
        "INSERT OR REPLACE INTO holds (id, organizer, start_us, end_us, expires_us) "
        "VALUES (?, ?, ?, ?, ?)",
        (hold_id, organizer, start_us, end_us, expires_us),
    )

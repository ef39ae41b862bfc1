"""The SQLite store's creates whose outcome is unknown, and the holds tied to them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from service.domain.booking import Booking
from service.store import codec
from service.store.base import (
    IDEMPOTENCY_TTL,
    Delivery,
    IdempotencyState,
    StoredResponse,
    UnresolvedCreate,
)
from service.store.sqlite.bookings import hold_is_free, mark_written, take_hold, write_booking
from service.store.sqlite.connection import Connection, fetch_one
from service.store.sqlite.queue import UNRESOLVED, claim
from service.store.sqlite.rows import unresolved_from
from service.store.sqlite.schema import NEVER_US


class Unresolved(Connection):
    """Unresolved creates: recorded with their hold tied, claimed by one reconciler at a
    time, finished in one step with what was found."""

    async def add_unresolved(self, record: UnresolvedCreate) -> bool:
        start_us, end_us = codec.to_us(record.start), codec.to_us(record.end)
        async with self._writing() as db:
            await db.execute(
                """
                INSERT INTO unresolved (id, caller, command, idempotency_key, hold_id,
                    organizer, start_us, end_us, deadline_us, next_attempt_us, attempts,
                    last_error, created_us, updated_us, request_id, trace_context)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (id) DO NOTHING
                """,
                (
                    record.id,
                    record.caller,
                    record.command,
                    record.idempotency_key,
                    record.hold_id,
                    record.organizer,
                    start_us,
                    end_us,
                    codec.to_us(record.deadline),
                    codec.to_us(record.next_check_at),
                    record.attempts,
                    record.last_error,
                    codec.to_us(record.created_at),
                    codec.to_us(record.updated_at),
                    record.request_id,
                    record.trace_context,
                ),
            )
            pinned = await db.execute(
                "UPDATE holds SET expires_us = ? WHERE id = ? AND expires_us > ?",
                (NEVER_US, record.hold_id, codec.to_us(codec.now())),
            )
            if pinned.rowcount > 0:
                return True
            # The hold lapsed (or was never taken): take it again while the time is free.
            if not await hold_is_free(db, record.organizer, start_us, end_us, record.hold_id):
                return False
            await take_hold(db, record.organizer, start_us, end_us, record.hold_id, NEVER_US)
        return True

    async def get_unresolved(self, record_id: str) -> UnresolvedCreate | None:
        async with self._reading() as db:
            row = await fetch_one(db, "SELECT * FROM unresolved WHERE id = ?", (record_id,))
        return None if row is None else unresolved_from(row)

    async def claim_unresolved(
        self, now: datetime, limit: int, owner: str, lease: float
    ) -> list[UnresolvedCreate]:
        async with self._writing() as db:
            found = await claim(db, UNRESOLVED, now, limit, owner, lease)
        return [unresolved_from(row) for row in found]

    async def update_unresolved(self, record: UnresolvedCreate) -> None:
        async with self._writing() as db:
            await db.execute(
                """
                UPDATE unresolved SET attempts = ?, next_attempt_us = ?, last_error = ?,
                    updated_us = ?, lease_owner = NULL, lease_until_us = NULL
                WHERE id = ?
                """,
                (
                    record.attempts,
                    codec.to_us(record.next_check_at),
                    record.last_error,
                    codec.to_us(record.updated_at),
                    record.id,
                ),
            )

    async def finish_unresolved(
        self,
        record_id: str,
        *,
        booking: Booking | None = None,
        expected_version: int | None = None,
        deliveries: Sequence[Delivery] = (),
        response: StoredResponse | None = None,
    ) -> bool:
        before: list[str | None] = [None]
        try:
            return await self._finish_unresolved(
                record_id, booking, expected_version, deliveries, response, before
            )
        finally:
            if booking is not None:
                mark_written(self._booking_marks, booking.organizer, before[0])

    async def _finish_unresolved(
        self,
        record_id: str,
        booking: Booking | None,
        expected_version: int | None,
        deliveries: Sequence[Delivery],
        response: StoredResponse | None,
        before: list[str | None],
    ) -> bool:
        async with self._writing() as db:
            row = await fetch_one(db, "SELECT * FROM unresolved WHERE id = ?", (record_id,))
            if row is None:
                return False
            record = unresolved_from(row)
            if booking is not None:
                if not await write_booking(db, booking, expected_version, deliveries, before):
                    return False
                if response is not None and record.idempotency_key is not None:
                    await db.execute(
                        "UPDATE idempotency SET state = ?, response = ?, expires_us = ? "
                        "WHERE caller = ? AND key = ?",
                        (
                            IdempotencyState.DONE.value,
                            codec.dumps(response),
                            codec.after_us(codec.now(), IDEMPOTENCY_TTL),
                            record.caller,
                            record.idempotency_key,
                        ),
                    )
            await db.execute("DELETE FROM holds WHERE id = ?", (record.hold_id,))
            await db.execute("DELETE FROM unresolved WHERE id = ?", (record_id,))
        return True

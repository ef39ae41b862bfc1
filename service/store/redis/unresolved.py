"""The Redis store's creates whose outcome is unknown, and the holds tied to them."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from service.domain.booking import Booking
from service.store import codec
from service.store.base import IDEMPOTENCY_TTL, Delivery, StoredResponse, UnresolvedCreate
from service.store.redis.fields import (
    deliveries_args,
    put_booking_args,
    unresolved_from,
    unresolved_insert_args,
    update_args,
)
from service.store.redis.keys import Keys


class Unresolved(Keys):
    """Unresolved creates: a queue like deliveries and operations (queue.lua), whose
    records are deleted when finished; their holds never lapse meanwhile."""

    async def add_unresolved(self, record: UnresolvedCreate) -> bool:
        held = await self._run(
            self._scripts.add_unresolved,
            [
                record.hold_id,
                record.organizer,
                str(codec.to_us(record.start)),
                str(codec.to_us(record.end)),
                *unresolved_insert_args(record),
            ],
        )
        return bool(held)

    async def get_unresolved(self, record_id: str) -> UnresolvedCreate | None:
        fields = await self._fields(f"{self.prefix}unresolved-create:{record_id}")
        return unresolved_from(fields) if fields else None

    async def claim_unresolved(
        self, now: datetime, limit: int, owner: str, lease: float
    ) -> list[UnresolvedCreate]:
        claimed = await self._claim("unresolved", now, limit, owner, lease)
        return [unresolved_from(fields) for fields in claimed]

    async def update_unresolved(self, record: UnresolvedCreate) -> None:
        values: dict[str, str | None] = {
            "attempts": str(record.attempts),
            "next_attempt_at": str(codec.to_us(record.next_check_at)),
            "last_error": record.last_error,
            "updated_at": str(codec.to_us(record.updated_at)),
        }
        await self._run(self._scripts.update, ["unresolved", *update_args(record.id, None, values)])

    async def finish_unresolved(
        self,
        record_id: str,
        *,
        booking: Booking | None = None,
        expected_version: int | None = None,
        deliveries: Sequence[Delivery] = (),
        response: StoredResponse | None = None,
    ) -> bool:
        # Who and which key never change once recorded: read before the atomic step.
        record = await self.get_unresolved(record_id)
        if record is None:
            return False
        idempotency = ""
        if response is not None and record.idempotency_key is not None:
            idempotency = self._idempotency_key(record.caller, record.idempotency_key)
        found = ["0"]
        if booking is not None:
            found = [
                "1",
                *put_booking_args(booking, expected_version),
                *deliveries_args(deliveries),
            ]
        finished = await self._run(
            self._scripts.finish_unresolved,
            [
                record_id,
                idempotency,
                "" if response is None else codec.dumps(response),
                str(codec.ms(IDEMPOTENCY_TTL)),
                *found,
            ],
        )
        return bool(finished)

"""The Redis store's queues: the webhook outbox, asynchronous operations, and their purge."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Final

from service.store import codec
from service.store.base import (
    Delivery,
    DeliveryStatus,
    Operation,
    OperationStatus,
)
from service.store.redis.connection import Connection
from service.store.redis.fields import (
    deliveries_args,
    delivery_from,
    flat_hash,
    insert_args,
    operation_from,
    operation_group,
    operation_values,
    update_args,
)

# Records one purge script looks at, so no single script blocks Redis for long.
PURGE_BATCH: Final = 500


class Queues(Connection):
    """Deliveries and operations: enqueued, claimed under a lease, updated, purged."""

    # -- outbox -------------------------------------------------------------------------

    async def enqueue_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        # A delivery id seen before is skipped: re-enqueueing the same message is a no-op.
        if not deliveries:
            return
        await self._run(self._scripts.insert, ["deliveries", *deliveries_args(deliveries)])

    async def claim_deliveries(
        self, now: datetime, limit: int, owner: str, lease: float
    ) -> list[Delivery]:
        return [
            delivery_from(fields)
            for fields in await self._claim("deliveries", now, limit, owner, lease)
        ]

    async def update_delivery(self, delivery: Delivery) -> None:
        # As in SQLite, an attempt's outcome changes these fields only; the message
        # itself (url, payload, booking) and so its group stay as enqueued.
        values: dict[str, str | None] = {
            "status": delivery.status.value,
            "attempts": str(delivery.attempts),
            "next_attempt_at": str(codec.to_us(delivery.next_attempt_at)),
            "last_error": delivery.last_error,
            "updated_at": str(codec.to_us(delivery.updated_at)),
        }
        await self._run(
            self._scripts.update, ["deliveries", *update_args(delivery.id, None, values)]
        )

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        fields = await self._fields(f"{self.prefix}delivery:{delivery_id}")
        return delivery_from(fields) if fields else None

    async def list_deliveries(
        self, status: DeliveryStatus | None, limit: int, caller: str | None = None
    ) -> list[Delivery]:
        if limit <= 0:
            return []
        index = "all" if status is None else f"status:{status.value}"
        found: list[list[str]] = await self._run(
            self._scripts.list, ["deliveries", index, str(limit), caller or ""]
        )
        return [delivery_from(flat_hash(flat)) for flat in found]

    # -- asynchronous operations --------------------------------------------------------

    async def add_operation(self, operation: Operation) -> None:
        values = operation_values(operation)
        values["id"] = operation.id
        values["created_at"] = str(codec.to_us(operation.created_at))
        values["request_id"] = operation.request_id
        values["trace_context"] = operation.trace_context
        args = insert_args(operation.id, operation_group(operation), values)
        added = await self._run(self._scripts.insert, ["operations", "1", *args])
        if not added:
            raise ValueError(f"operation {operation.id!r} already exists")

    async def get_operation(self, operation_id: str) -> Operation | None:
        fields = await self._fields(f"{self.prefix}operation:{operation_id}")
        return operation_from(fields) if fields else None

    async def claim_operations(
        self, now: datetime, limit: int, owner: str, lease: float
    ) -> list[Operation]:
        return [
            operation_from(fields)
            for fields in await self._claim("operations", now, limit, owner, lease)
        ]

    async def update_operation(
        self, operation: Operation, deliveries: Sequence[Delivery] = ()
    ) -> None:
        # An operation learns its booking_id once created, which moves it into that
        # booking's group.
        args = update_args(operation.id, operation_group(operation), operation_values(operation))
        if not deliveries:
            await self._run(self._scripts.update, ["operations", *args])
            return
        await self._run(self._scripts.update_announced, [*args, *deliveries_args(deliveries)])

    # -- planned (the protocol's new methods; implemented next) -------------------------

    async def purge_finished(self, before: datetime) -> int:
        cutoff = str(codec.to_us(before))
        finished = (
            ("deliveries", (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED)),
            ("operations", (OperationStatus.SUCCEEDED, OperationStatus.FAILED)),
        )
        total = 0
        for kind, statuses in finished:
            for status in statuses:
                offset, done = 0, False
                while not done:
                    removed, kept, finished_walk = await self._run(
                        self._scripts.purge, [kind, status.value, cutoff, offset, PURGE_BATCH]
                    )
                    total += int(removed)
                    offset += int(kept)
                    done = bool(finished_walk)
        return total

    async def pending_counts(self) -> tuple[int, int]:
        async with self._redis() as client, client.pipeline(transaction=False) as pipe:
            pipe.zcard(f"{self.prefix}deliveries:status:{DeliveryStatus.PENDING.value}")
            pipe.zcard(f"{self.prefix}operations:status:{OperationStatus.PENDING.value}")
            deliveries, operations = await pipe.execute()
        return int(deliveries), int(operations)

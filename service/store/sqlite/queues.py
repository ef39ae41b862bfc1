"""The SQLite store's queues: the webhook outbox, asynchronous operations, and their purge."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from service.store import codec
from service.store.base import (
    Delivery,
    DeliveryStatus,
    Operation,
    OperationStatus,
)
from service.store.sqlite.connection import Connection, fetch_all, fetch_one
from service.store.sqlite.queue import DELIVERIES, OPERATIONS, claim
from service.store.sqlite.rows import (
    INSERT_DELIVERY,
    delivery_from,
    delivery_params,
    operation_from,
)


class Queues(Connection):
    """Deliveries and operations: enqueued, claimed under a lease, updated, purged."""

    # -- outbox -------------------------------------------------------------------------

    async def enqueue_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        # A delivery id seen before is skipped: re-enqueueing the same message is a no-op.
        rows = [delivery_params(delivery) for delivery in deliveries]
        if not rows:
            return
        async with self._writing() as db:
            await db.executemany(INSERT_DELIVERY, rows)

    async def claim_deliveries(
        self, now: datetime, limit: int, owner: str, lease: float
    ) -> list[Delivery]:
        async with self._writing() as db:
            found = await claim(db, DELIVERIES, now, limit, owner, lease)
        return [delivery_from(row) for row in found]

    async def update_delivery(self, delivery: Delivery) -> None:
        async with self._writing() as db:
            await db.execute(
                """
                UPDATE deliveries SET status = ?, attempts = ?, next_attempt_us = ?,
                    last_error = ?, updated_us = ?, lease_owner = NULL, lease_until_us = NULL
                WHERE id = ?
                """,
                (
                    delivery.status.value,
                    delivery.attempts,
                    codec.to_us(delivery.next_attempt_at),
                    delivery.last_error,
                    codec.to_us(delivery.updated_at),
                    delivery.id,
                ),
            )

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        async with self._reading() as db:
            row = await fetch_one(db, "SELECT * FROM deliveries WHERE id = ?", (delivery_id,))
        return None if row is None else delivery_from(row)

    async def list_deliveries(
        self, status: DeliveryStatus | None, limit: int, caller: str | None = None
    ) -> list[Delivery]:
        if limit <= 0:  # SQLite reads a negative LIMIT as "no limit"
            return []
        conditions, params = [], []
        if status is not None:
            conditions.append("status = ?")
            params.append(status.value)
        if caller is not None:
            conditions.append("caller = ?")
            params.append(caller)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        async with self._reading() as db:
            rows = await fetch_all(
                db,
                f"SELECT * FROM deliveries {where} ORDER BY seq DESC LIMIT ?",  # noqa: S608
                (*params, limit),
            )
        return [delivery_from(row) for row in rows]

    # -- asynchronous operations --------------------------------------------------------

    async def add_operation(self, operation: Operation) -> None:
        async with self._writing() as db:
            await db.execute(
                """
                INSERT INTO operations (id, type, status, caller, booking_id, request,
                    attempts, last_error, maybe_sent, next_attempt_us, created_us, updated_us,
                    request_id, trace_context)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                (
                    operation.id,
                    operation.type.value,
                    operation.status.value,
                    operation.caller,
                    operation.booking_id,
                    operation.request,
                    operation.attempts,
                    operation.last_error,
                    int(operation.maybe_sent),
                    codec.to_us(operation.next_attempt_at),
                    codec.to_us(operation.created_at),
                    codec.to_us(operation.updated_at),
                    operation.request_id,
                    operation.trace_context,
                ),
            )

    async def get_operation(self, operation_id: str) -> Operation | None:
        async with self._reading() as db:
            row = await fetch_one(db, "SELECT * FROM operations WHERE id = ?", (operation_id,))
        return None if row is None else operation_from(row)

    async def claim_operations(
        self, now: datetime, limit: int, owner: str, lease: float
    ) -> list[Operation]:
        async with self._writing() as db:
            found = await claim(db, OPERATIONS, now, limit, owner, lease)
        return [operation_from(row) for row in found]

    async def update_operation(
        self, operation: Operation, deliveries: Sequence[Delivery] = ()
    ) -> None:
        async with self._writing() as db:
            await db.execute(
                """
                UPDATE operations SET type = ?, status = ?, caller = ?, booking_id = ?,
                    request = ?, attempts = ?, last_error = ?, maybe_sent = ?,
                    next_attempt_us = ?, updated_us = ?,
                    lease_owner = NULL, lease_until_us = NULL
                WHERE id = ?
                """,
                (
                    operation.type.value,
                    operation.status.value,
                    operation.caller,
                    operation.booking_id,
                    operation.request,
                    operation.attempts,
                    operation.last_error,
                    int(operation.maybe_sent),
                    codec.to_us(operation.next_attempt_at),
                    codec.to_us(operation.updated_at),
                    operation.id,
                ),
            )
            if deliveries:
                await db.executemany(
                    INSERT_DELIVERY, [delivery_params(delivery) for delivery in deliveries]
                )

    async def purge_finished(self, before: datetime) -> int:
        cutoff = codec.to_us(before)
        async with self._writing() as db:
            deliveries = await db.execute(
                "DELETE FROM deliveries WHERE status IN (?, ?) AND updated_us < ?",
                (DeliveryStatus.DELIVERED.value, DeliveryStatus.FAILED.value, cutoff),
            )
            operations = await db.execute(
                "DELETE FROM operations WHERE status IN (?, ?) AND updated_us < ?",
                (OperationStatus.SUCCEEDED.value, OperationStatus.FAILED.value, cutoff),
            )
            return deliveries.rowcount + operations.rowcount

    async def pending_counts(self) -> tuple[int, int]:
        async with self._reading() as db:
            row = await fetch_one(
                db,
                """
                SELECT (SELECT COUNT(*) FROM deliveries WHERE status = 'pending'),
                       (SELECT COUNT(*) FROM operations WHERE status = 'pending')
                """,
            )
        assert row is not None
        return int(row[0]), int(row[1])

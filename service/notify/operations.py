"""Asynchronous operations (`Prefer: respond-async`): accepted durably, applied by a worker.

A transient failure is retried with jittered exponential backoff (a Retry-After
wins); a permanent one marks the operation failed and announces `operation.failed`.
"""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import structlog

from service.bookings import BookingService, parse_booking
from service.errors import NotFound, ServiceError
from service.logging import current_request_id
from service.notify.loop import poll
from service.notify.outbox import Outbox, webhook_body
from service.store.base import (
    Operation,
    OperationStatus,
    OperationType,
    Store,
)
from service.tracing import current_traceparent, operation_attempt
from service.vyte.client import retry_after_seconds
from service.vyte.policy import budget

log = structlog.get_logger("operations")

_BATCH = 20
_IDLE_POLL = 0.5


def operation_resource(op: Operation) -> dict[str, Any]:
    return {
        "id": op.id,
        "type": op.type.value,
        "status": op.status.value,
        "booking_id": op.booking_id,
        "attempts": op.attempts,
        "last_error": op.last_error,
        "created_at": op.created_at.isoformat(timespec="seconds"),
        "updated_at": op.updated_at.isoformat(timespec="seconds"),
    }


def new_operation(
    kind: OperationType, caller: str, booking_id: str | None, request: Mapping[str, Any] | None
) -> Operation:
    now = datetime.now(UTC)
    return Operation(
        id=f"op_{uuid.uuid4().hex}",
        type=kind,
        status=OperationStatus.PENDING,
        caller=caller,
        booking_id=booking_id,
        request=json.dumps(request or {}, separators=(",", ":")),
        attempts=0,
        last_error=None,
        maybe_sent=False,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
        request_id=current_request_id(),
        trace_context=current_traceparent(),
    )


def retry_delay(attempts: int, base: float, cap: float, retry_after: float | None) -> float:
    """Delay before attempt `attempts + 1`: about base, doubling, jittered, capped."""
    if retry_after is not None:
        return float(min(retry_after, max(cap, base)))
    nominal: float = min(cap, base * 2.0 ** max(0, attempts - 1))
    return nominal * random.uniform(0.5, 1.0)


class OperationWorker:
    """Applies pending operations to Vyte, once each, surviving restarts."""

    def __init__(
        self,
        store: Store,
        bookings: BookingService,
        outbox: Outbox,
        *,
        owner: str,
        retry_base: float,
        retry_cap: float,
        budget_seconds: float,
    ) -> None:
        self._store = store
        self._bookings = bookings
        self._outbox = outbox
        self._owner = owner
        self._base = retry_base
        self._cap = retry_cap
        self._budget = budget_seconds
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        await poll(self.run_once, self._wake, _IDLE_POLL, "operations")

    async def run_once(self) -> int:
        # Long enough for one attempt (bounded by the budget) and its store writes; a
        # crashed replica's operations are picked up again soon after.
        lease = self._budget + 10
        batch = await self._store.claim_operations(datetime.now(UTC), _BATCH, self._owner, lease)
        if batch:
            await asyncio.gather(*(self._apply(op) for op in batch))
        return len(batch)

    @operation_attempt
    async def _apply(self, op: Operation) -> None:
        # Vyte calls and webhooks caused by the operation carry the accepting request's id.
        structlog.contextvars.bind_contextvars(operation=op.id, request_id=op.request_id)
        booking_id = op.booking_id
        try:
            with budget(self._budget):
                booking_id = await self._perform(op)
        except ServiceError as err:
            await self._failed_attempt(op, err)
            return
        except Exception as err:
            log.exception("operation_crashed", operation=op.id)
            await self._failed_attempt(op, ServiceError(f"unexpected error: {type(err).__name__}"))
            return
        now = datetime.now(UTC)
        done = attrs.evolve(
            op,
            status=OperationStatus.SUCCEEDED,
            booking_id=booking_id,
            attempts=op.attempts + 1,
            last_error=None,
            updated_at=now,
        )
        await self._store.update_operation(done)
        log.info("operation_succeeded", operation=op.id, type=op.type.value, booking=booking_id)

    async def _perform(self, op: Operation) -> str:
        if op.type == OperationType.CREATE:
            req = parse_booking(json.loads(op.request))
            booking = await self._bookings.create_once(op.caller, req, op.id)
            return booking.id
        if op.booking_id is None:
            raise NotFound("operation names no booking")
        if op.type == OperationType.CONFIRM:
            return (await self._bookings.confirm(op.booking_id)).id
        return (await self._bookings.cancel(op.booking_id)).id

    async def _failed_attempt(self, op: Operation, err: ServiceError) -> None:
        now = datetime.now(UTC)
        attempts = op.attempts + 1
        error = f"{err.status} {err.slug}: {err.detail}"
        if err.status < 500:
            failed = attrs.evolve(
                op,
                status=OperationStatus.FAILED,
                attempts=attempts,
                last_error=error,
                updated_at=now,
            )
            deliveries = await self._outbox.plan_body(
                "operation.failed",
                webhook_body("operation.failed", operation_resource(failed), now),
                await self._callback_url(op),
                op.booking_id,
                now,
                message_key=f"{op.id}:failed",
                owner=op.caller,
            )
            await self._store.update_operation(failed, deliveries)
            log.warning("operation_failed", operation=op.id, error=error)
            return
        delay = retry_delay(
            attempts, self._base, self._cap, retry_after_seconds(err.headers.get("Retry-After"))
        )
        retry = attrs.evolve(
            op,
            attempts=attempts,
            last_error=error,
            maybe_sent=op.maybe_sent or op.type == OperationType.CREATE,
            next_attempt_at=now + timedelta(seconds=delay),
            updated_at=now,
        )
        await self._store.update_operation(retry)
        log.info("operation_retry", operation=op.id, error=error, delay=round(delay, 3))

    async def _callback_url(self, op: Operation) -> str | None:
        if op.type == OperationType.CREATE:
            url = json.loads(op.request).get("callback_url")
            return url if isinstance(url, str) else None
        if op.booking_id:
            booking = await self._store.get_booking(op.booking_id)
            return booking.callback_url if booking else None
        return None

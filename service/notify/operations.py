"""Asynchronous operations (`Prefer: respond-async`): accepted durably, applied by a worker.

A transient failure is retried with jittered exponential backoff (a Retry-After
wins); a permanent one marks the operation failed and announces `operation.failed`.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import attrs
import structlog

from service.backoff import exponential
from service.bookings import BookingService
from service.budget import budget
from service.commands import (
    NewBooking,
    Reschedule,
    UnreadableCommand,
    decode_booking,
    decode_reschedule,
    encode_booking,
    encode_reschedule,
)
from service.errors import FieldError, NotFound, ServiceError, ValidationFailed
from service.logging import current_request_id
from service.notify.loop import poll
from service.notify.reconciler import booking_id_answer, operation_key
from service.ports import Outbox
from service.reschedule import RescheduleService
from service.store.base import (
    IDEMPOTENCY_TTL,
    Operation,
    OperationStatus,
    OperationType,
    Store,
)
from service.tracing import current_trace_context, operation_attempt
from service.vyte.client import retry_after_seconds

log = structlog.get_logger("operations")

_BATCH = 20
_IDLE_POLL = 0.5


def new_operation(
    kind: OperationType,
    caller: str,
    booking_id: str | None,
    command: NewBooking | Reschedule | None,
) -> Operation:
    now = datetime.now(UTC)
    request = "{}"
    if isinstance(command, NewBooking):
        request = encode_booking(command)
    elif isinstance(command, Reschedule):
        request = encode_reschedule(command)
    return Operation(
        id=f"op_{uuid.uuid4().hex}",
        type=kind,
        status=OperationStatus.PENDING,
        caller=caller,
        booking_id=booking_id,
        request=request,
        attempts=0,
        last_error=None,
        maybe_sent=False,
        next_attempt_at=now,
        created_at=now,
        updated_at=now,
        request_id=current_request_id(),
        trace_context=current_trace_context(),
    )


def retry_delay(attempts: int, base: float, cap: float, retry_after: float | None) -> float:
    """Delay before attempt `attempts + 1`: about base, doubling, jittered, capped."""
    if retry_after is not None:
        return float(min(retry_after, max(cap, base)))
    return exponential(attempts, base, cap, jitter=0.5)


class Operations:
    """Asynchronous requests as callers see them: accepted durably, then looked up."""

    def __init__(self, store: Store, accepted: Callable[[], None]) -> None:
        self._store = store
        # Tells the worker there is an operation to apply now.
        self._accepted = accepted

    async def accept(
        self,
        kind: OperationType,
        caller: str,
        booking_id: str | None,
        command: NewBooking | Reschedule | None = None,
    ) -> Operation:
        """Store the operation (the create's or reschedule's validated `command`); the
        worker applies it."""
        op = new_operation(kind, caller, booking_id, command)
        await self._store.add_operation(op)
        self._accepted()
        return op

    async def get(self, caller: str, operation_id: str) -> Operation:
        op = await self._store.get_operation(operation_id)
        if op is None or op.caller != caller:
            # Another caller's operation is not there for this one.
            raise NotFound("no such operation")
        return op


class _Undecided(Exception):
    """An earlier attempt's outcome is still unknown: the reconciler is looking for it."""


def _command(op: Operation) -> NewBooking:
    """The validated create an operation keeps (read back, never validated again)."""
    try:
        return decode_booking(op.request)
    except UnreadableCommand as err:
        # Nothing to apply, and retrying will not change that: fail the operation for good.
        raise ValidationFailed([FieldError("request", str(err))]) from None


def _move(op: Operation) -> Reschedule:
    """The validated reschedule an operation keeps."""
    try:
        return decode_reschedule(op.request)
    except UnreadableCommand as err:
        raise ValidationFailed([FieldError("request", str(err))]) from None


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
        reschedule: RescheduleService | None = None,
    ) -> None:
        self._store = store
        self._bookings = bookings
        self._reschedule = reschedule
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
        except _Undecided:
            await self._wait_for_reconciler(op)
            return
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
            return await self._create(op)
        if op.booking_id is None:
            raise NotFound("operation names no booking")
        if op.type == OperationType.CONFIRM:
            return (await self._bookings.confirm(op.caller, op.booking_id)).id
        if op.type == OperationType.RESCHEDULE:
            if self._reschedule is None:
                raise ServiceError("this worker cannot reschedule")
            moved = await self._reschedule.reschedule(op.caller, op.booking_id, _move(op))
            return moved.id
        return (await self._bookings.cancel(op.caller, op.booking_id)).id

    async def _create(self, op: Operation) -> str:
        """Create the operation's booking; its id.

        An attempt that may have reached Vyte (its answer lost, or its replica killed
        mid-call) left an unresolved record: while the reconciler looks for its event,
        nothing is sent again. Found, the booking is the operation's (its id kept under
        the operation's marker); decided absent, the create is sent again. A slot taken
        by any other booking fails the operation (slot-unavailable), never adopts it.
        """
        command = _command(op)
        if await self._store.get_unresolved(op.id) is not None:
            raise _Undecided()
        marker = operation_key(op.id)
        earlier = await self._store.begin_idempotent(
            op.caller, marker, "operation", IDEMPOTENCY_TTL
        )
        found = earlier.response if earlier is not None else None
        if found is not None and found.status == 201:
            return found.body  # recorded by the reconciler (or by an attempt that died)
        booking = await self._bookings.create(
            op.caller, command, hold=op.id, key=marker, answer=booking_id_answer
        )
        # Kept with the booking already, unless it was found recorded meanwhile.
        await self._store.finish_idempotent(
            op.caller, marker, booking_id_answer(booking), IDEMPOTENCY_TTL
        )
        return booking.id

    async def _wait_for_reconciler(self, op: Operation) -> None:
        """Look again soon: not an attempt, since nothing was sent."""
        now = datetime.now(UTC)
        later = attrs.evolve(
            op,
            next_attempt_at=now + timedelta(seconds=self._bookings.look_every),
            updated_at=now,
        )
        await self._store.update_operation(later)

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
            deliveries = await self._outbox.plan_failure(failed, await self._callback_url(op), now)
            await self._store.update_operation(failed, deliveries)
            if deliveries:
                self._outbox.due()
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
            try:
                return _command(op).callback_url
            except ValidationFailed:
                return None
        if op.booking_id:
            booking = await self._store.get_booking(op.booking_id)
            return booking.callback_url if booking else None
        return None

"""The reconciler: settles creates whose outcome is unknown, by looking for them in Vyte.

A create that may have reached Vyte without our learning the outcome (Vyte's answer lost,
the store lost after it, the sending replica killed) is recorded as unresolved before it is
sent, its slot's hold tied to the record. Every few seconds a replica claims the records due
and looks in Vyte for each event (organizer, title, times, invitees; never one already
recorded as another booking). Found: it becomes the caller's booking, `booking.requested` is
announced and a keyed retry replays it. Not found for UNKNOWN_OUTCOME_TIMEOUT: the slot is
released, and only then may the create be sent again.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import attrs
import structlog

from service.bookings import Answer, BookingService, look_interval
from service.budget import budget
from service.commands import UnreadableCommand, decode_booking
from service.domain.booking import Booking
from service.errors import ServiceError
from service.notify.loop import poll
from service.store.base import IDEMPOTENCY_TTL, Store, StoredResponse, UnresolvedCreate
from service.tracing import unresolved_look

log = structlog.get_logger("reconciler")

_BATCH = 20
# "\n" cannot occur in an Idempotency-Key: an operation's marker never meets a caller's key.
_OPERATION = "\noperation"
# What an operation's marker holds once the reconciler decided its create absent from Vyte.
ABSENT = StoredResponse(status=404, body="absent")


def operation_key(operation_id: str) -> str:
    """The key under which an asynchronous create learns its outcome (its booking's id)."""
    return f"{operation_id}{_OPERATION}"


def booking_id_answer(booking: Booking) -> StoredResponse:
    """What an operation's marker keeps once its event is recorded: the booking's id."""
    return StoredResponse(status=201, body=booking.id)


class Reconciler:
    """Looks in Vyte for each unresolved create until it is found or its deadline passes."""

    def __init__(
        self,
        store: Store,
        bookings: BookingService,
        answer: Answer,
        *,
        owner: str,
        timeout: float,
        budget_seconds: float,
    ) -> None:
        self._store = store
        self._bookings = bookings
        # The response a caller's keyed create replays once its event is found.
        self._answer = answer
        self._owner = owner
        self._interval = look_interval(timeout)
        self._budget = budget_seconds
        self._wake = asyncio.Event()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        await poll(self.run_once, self._wake, self._interval, "reconciler")

    async def run_once(self) -> int:
        """Look once for every record that is due; how many were looked at."""
        # One look (bounded by the budget) and its store writes; a crashed replica's
        # records are looked at again soon after.
        lease = self._budget + 10
        batch = await self._store.claim_unresolved(datetime.now(UTC), _BATCH, self._owner, lease)
        if batch:
            await asyncio.gather(*(self._look_safely(record) for record in batch))
        return len(batch)

    async def _look_safely(self, record: UnresolvedCreate) -> None:
        try:
            await self._look(record)
        except Exception:
            # The record stays; its claim lapses and a later look tries again.
            log.exception("unresolved_look_failed", record=record.id)

    def _answer_for(self, record: UnresolvedCreate) -> Answer | None:
        key = record.idempotency_key
        if key is None:
            return None
        return booking_id_answer if key.endswith(_OPERATION) else self._answer

    @unresolved_look
    async def _look(self, record: UnresolvedCreate) -> None:
        structlog.contextvars.bind_contextvars(unresolved=record.id, request_id=record.request_id)
        try:
            req = decode_booking(record.command)
        except UnreadableCommand:
            # Nothing to look for: keep the slot until the deadline all the same.
            log.error("unresolved_unreadable", record=record.id)
            await self._not_found(record, "unreadable command", looked=True)
            return
        try:
            with budget(self._budget):
                event = await self._bookings.find_created(req, unrecorded=True)
            if event is not None:
                answer = self._answer_for(record)
                booking = await self._bookings.record_created(
                    record.caller, req, event, record.id, answer=answer
                )
                if answer is not None and record.idempotency_key is not None:
                    # Kept with the booking already; again here for the paths that found
                    # the event recorded meanwhile (adopted from Vyte's hook, or by its sender).
                    await self._store.finish_idempotent(
                        record.caller, record.idempotency_key, answer(booking), IDEMPOTENCY_TTL
                    )
                log.info("unresolved_found", record=record.id, booking=booking.id)
                return
        except ServiceError as err:
            # A look that failed proves nothing: the deadline waits for one that worked.
            await self._not_found(record, f"{err.status} {err.slug}: {err.detail}", looked=False)
            return
        await self._not_found(record, None, looked=True)

    async def _not_found(
        self, record: UnresolvedCreate, error: str | None, *, looked: bool
    ) -> None:
        now = datetime.now(UTC)
        if now < record.deadline or not looked:
            later = now + timedelta(seconds=self._interval)
            if now < record.deadline:
                later = min(later, record.deadline)  # one last look right at the deadline
            await self._store.update_unresolved(
                attrs.evolve(
                    record,
                    attempts=record.attempts + 1,
                    next_check_at=later,
                    last_error=error,
                    updated_at=now,
                )
            )
            return
        if not await self._store.finish_unresolved(record.id):
            return  # settled meanwhile (its sender recorded it)
        key = record.idempotency_key
        if key is not None and key.endswith(_OPERATION):
            # The operation may send its create again now.
            await self._store.finish_idempotent(record.caller, key, ABSENT, IDEMPOTENCY_TTL)
        elif key is not None:
            # The caller's retry under this key may create it again now.
            await self._store.abandon_idempotent(record.caller, key)
        log.warning("unresolved_absent", record=record.id, looks=record.attempts + 1, error=error)

"""The outbox: the deliveries announcing a change (one per receiving URL), and the signal
that they are due."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable
from datetime import datetime

from service.domain.booking import Booking
from service.logging import current_request_id
from service.store.base import Delivery, DeliveryStatus, Operation, Store
from service.tracing import current_trace_context

EVENT_TYPES = (
    "booking.requested",
    "booking.confirmed",
    "booking.cancelled",
    "booking.updated",
    "operation.failed",
)
#: the exact JSON body of a webhook announcing `event_type` of a booking or an operation
Render = Callable[[str, Booking | Operation, datetime], str]


def _message_id(key: str | None, url: str) -> str:
    if key is None:
        return f"msg_{uuid.uuid4().hex}"
    return "msg_" + hashlib.sha256(f"{key}\0{url}".encode()).hexdigest()[:32]


class Outbox:
    """Plans deliveries; the store writes them atomically with the change itself."""

    def __init__(self, store: Store, render: Render, admins: frozenset[str] = frozenset()) -> None:
        self._store = store
        self._render = render
        # Callers whose subscriptions hear about every booking and operation (DESIGN §3.0).
        self._admins = admins
        self._listeners: list[Callable[[], None]] = []

    def on_due(self, listener: Callable[[], None]) -> None:
        """Call `listener` (the dispatcher's wake-up) whenever deliveries are due now."""
        self._listeners.append(listener)

    def due(self) -> None:
        """Deliveries were just written (or made due again): send them now."""
        for listener in self._listeners:
            listener()

    async def plan(
        self, event_type: str, booking: Booking, now: datetime, *, subscriptions: bool = True
    ) -> list[Delivery]:
        """The deliveries announcing `booking`'s change: to its callback and subscribers."""
        return await self._plan(
            event_type,
            self._render(event_type, booking, now),
            booking.callback_url,
            booking.id,
            now,
            subscriptions=subscriptions,
            owner=booking.caller,
        )

    async def plan_failure(
        self, op: Operation, callback_url: str | None, now: datetime
    ) -> list[Delivery]:
        """The `operation.failed` deliveries of `op`, the same ids however often planned."""
        event_type = "operation.failed"
        return await self._plan(
            event_type,
            self._render(event_type, op, now),
            callback_url,
            op.booking_id,
            now,
            message_key=f"{op.id}:failed",
            owner=op.caller,
        )

    async def _plan(
        self,
        event_type: str,
        body: str,
        callback_url: str | None,
        booking_id: str | None,
        now: datetime,
        *,
        subscriptions: bool = True,
        message_key: str | None = None,
        owner: str | None = None,
    ) -> list[Delivery]:
        """One delivery per receiving URL, each belonging to the caller who gave that URL
        (`owner` for `callback_url`). Subscriptions hear only about their own caller's
        bookings and operations (`owner`), admins' about all; an unowned booking (adopted
        from Vyte) is announced to admins only.

        With `message_key` the ids are derived from it, so planning the same message again
        (after a crash between enqueueing and recording why) enqueues nothing new.
        """
        receivers: dict[str, str | None] = {callback_url: owner} if callback_url else {}
        for sub in await self._store.list_subscriptions() if subscriptions else ():
            hears = sub.caller in self._admins or (owner is not None and sub.caller == owner)
            if hears and event_type in sub.events and sub.url not in receivers:
                receivers[sub.url] = sub.caller
        return [
            Delivery(
                id=_message_id(message_key, url),
                event_type=event_type,
                url=url,
                payload=body,
                booking_id=booking_id,
                status=DeliveryStatus.PENDING,
                attempts=0,
                next_attempt_at=now,
                last_error=None,
                created_at=now,
                updated_at=now,
                request_id=current_request_id(),
                trace_context=current_trace_context(),
                caller=caller,
            )
            for url, caller in receivers.items()
        ]

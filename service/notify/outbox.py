"""Turning a booking change into outbox deliveries (one per receiving URL)."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import datetime

from service.domain.booking import Booking
from service.logging import current_request_id
from service.representation import booking_resource
from service.store.base import Delivery, DeliveryStatus, Store
from service.tracing import current_traceparent

EVENT_TYPES = (
    "booking.requested",
    "booking.confirmed",
    "booking.cancelled",
    "booking.updated",
    "operation.failed",
)


def webhook_body(event_type: str, data: object, now: datetime) -> str:
    return json.dumps(
        {"type": event_type, "timestamp": now.isoformat(timespec="seconds"), "data": data},
        separators=(",", ":"),
    )


def _message_id(key: str | None, url: str) -> str:
    if key is None:
        return f"msg_{uuid.uuid4().hex}"
    return "msg_" + hashlib.sha256(f"{key}\0{url}".encode()).hexdigest()[:32]


class Outbox:
    """Plans deliveries; the store writes them atomically with the change itself."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def plan(
        self, event_type: str, booking: Booking, now: datetime, *, subscriptions: bool = True
    ) -> list[Delivery]:
        body = webhook_body(event_type, booking_resource(booking), now)
        return await self.plan_body(
            event_type,
            body,
            booking.callback_url,
            booking.id,
            now,
            subscriptions=subscriptions,
            owner=booking.caller,
        )

    async def plan_body(
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
        (`owner` for `callback_url`).

        With `message_key` the ids are derived from it, so planning the same message again
        (after a crash between enqueueing and recording why) enqueues nothing new.
        """
        receivers: dict[str, str | None] = {callback_url: owner} if callback_url else {}
        for sub in await self._store.list_subscriptions() if subscriptions else ():
            if event_type in sub.events and sub.url not in receivers:
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
                trace_context=current_traceparent(),
                caller=caller,
            )
            for url, caller in receivers.items()
        ]

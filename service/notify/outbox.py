"""Turning a booking change into outbox deliveries (one per receiving URL)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime

from service.domain.booking import Booking
from service.logging import current_request_id
from service.representation import booking_resource
from service.store.base import Delivery, DeliveryStatus, Store

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


class Outbox:
    """Plans deliveries; the store writes them atomically with the change itself."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def plan(
        self, event_type: str, booking: Booking, now: datetime, *, subscriptions: bool = True
    ) -> list[Delivery]:
        body = webhook_body(event_type, booking_resource(booking), now)
        return await self.plan_body(
            event_type, body, booking.callback_url, booking.id, now, subscriptions=subscriptions
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
    ) -> list[Delivery]:
        urls: list[str] = [callback_url] if callback_url else []
        for sub in await self._store.list_subscriptions() if subscriptions else ():
            if event_type in sub.events and sub.url not in urls:
                urls.append(sub.url)
        return [
            Delivery(
                id=f"msg_{uuid.uuid4().hex}",
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
            )
            for url in urls
        ]

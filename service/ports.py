"""What the use cases are handed rather than import: the outbox of webhook deliveries."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from service.domain.booking import Booking
from service.store.base import Delivery, Operation


class Outbox(Protocol):
    """Plans the webhooks announcing a change; the store writes them with the change."""

    async def plan(
        self, event_type: str, booking: Booking, now: datetime, *, subscriptions: bool = True
    ) -> list[Delivery]:
        """The deliveries of `event_type` for `booking`: its callback, and its subscribers
        unless `subscriptions` is False."""

    async def plan_failure(
        self, op: Operation, callback_url: str | None, now: datetime
    ) -> list[Delivery]:
        """The `operation.failed` deliveries of `op`."""

    def due(self) -> None:
        """Deliveries were just committed: have them sent now."""

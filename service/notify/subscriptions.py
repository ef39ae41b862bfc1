"""Subscriptions and deliveries as a caller manages them: subscribe, list, delete, re-send."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import attrs

from service.commands import DeliveryQuery, NewSubscription
from service.errors import Conflict, NotFound, SubscriptionLimit
from service.store.base import (
    Delivery,
    DeliveryStatus,
    Store,
    Subscription,
    SubscriptionLimitReached,
)


class Subscriptions:
    """The webhook receivers a caller registered, and the deliveries sent to its URLs."""

    def __init__(
        self, store: Store, deliveries_due: Callable[[], None], max_per_caller: int | None = None
    ) -> None:
        self._store = store
        # Tells the dispatcher a delivery is due now.
        self._deliveries_due = deliveries_due
        self._limit = max_per_caller

    async def subscribe(self, caller: str, command: NewSubscription) -> tuple[Subscription, bool]:
        """The caller's subscription and whether it is new: one identical to what the
        caller already holds (same URL and events) answers the existing one, and a caller
        at MAX_SUBSCRIPTIONS gets 409 `subscription-limit`."""
        sub = Subscription(
            id=f"sub_{uuid.uuid4().hex}",
            url=command.url,
            events=command.events,
            caller=caller,
            created_at=datetime.now(UTC),
        )
        try:
            return await self._store.add_subscription(sub, limit=self._limit)
        except SubscriptionLimitReached as err:
            raise SubscriptionLimit(
                f"a caller may hold at most {err.limit} subscriptions; delete one first"
            ) from None

    async def of(self, caller: str) -> list[Subscription]:
        return await self._store.list_subscriptions(caller)

    async def delete(self, caller: str, subscription_id: str) -> None:
        owned = [s for s in await self.of(caller) if s.id == subscription_id]
        if not owned or not await self._store.delete_subscription(subscription_id):
            raise NotFound("no such subscription")

    async def deliveries(self, caller: str, query: DeliveryQuery) -> list[Delivery]:
        return await self._store.list_deliveries(query.status, query.limit, caller)

    async def retry(self, caller: str, delivery_id: str) -> Delivery:
        """Send a failed delivery again from its first attempt; a pending one is left as is."""
        delivery = await self._store.get_delivery(delivery_id)
        if delivery is None or delivery.caller != caller:
            # Another caller's delivery (and its URL) is not there for this one.
            raise NotFound("no such delivery")
        if delivery.status == DeliveryStatus.DELIVERED:
            # Sending it again could put an old event after newer ones at the receiver.
            raise Conflict(f"delivery {delivery.id} was delivered; only failed ones are re-sent")
        if delivery.status == DeliveryStatus.FAILED:
            now = datetime.now(UTC)
            delivery = attrs.evolve(
                delivery,
                status=DeliveryStatus.PENDING,
                attempts=0,
                next_attempt_at=now,
                updated_at=now,
            )
            await self._store.update_delivery(delivery)
            self._deliveries_due()
        return delivery

"""The Redis store's keyed records: Idempotency-Key records, subscriptions, the slot cache."""

from __future__ import annotations

from typing import Any, cast

from service.store import codec
from service.store.base import (
    IdempotencyRecord,
    IdempotencyState,
    StoredResponse,
    Subscription,
    SubscriptionLimitReached,
)
from service.store.redis.connection import Connection
from service.store.redis.fields import subscription_identity


class Keys(Connection):
    """Idempotency-Key claims and their kept answers; subscriptions; shared cache entries."""

    # -- idempotency --------------------------------------------------------------------

    def _idempotency_key(self, caller: str, key: str) -> str:
        # The caller's length keeps ("a:b", "c") and ("a", "b:c") apart.
        return f"{self.prefix}idempotency:{len(caller)}:{caller}:{key}"

    async def begin_idempotent(
        self, caller: str, key: str, fingerprint: str, lease: float
    ) -> IdempotencyRecord | None:
        found: list[str | None] | None = await self._run(
            self._scripts.begin_idempotent,
            [fingerprint, str(codec.ms(lease))],
            key=self._idempotency_key(caller, key),
        )
        if found is None:
            return None
        stored_fingerprint, state, response, expires_ms = found
        assert stored_fingerprint is not None and state is not None and expires_ms is not None
        return IdempotencyRecord(
            caller=caller,
            key=key,
            fingerprint=stored_fingerprint,
            state=IdempotencyState(state),
            response=None if response is None else codec.loads(response, StoredResponse),
            expires_at=codec.from_ms(expires_ms),
        )

    async def finish_idempotent(
        self, caller: str, key: str, response: StoredResponse, ttl: float
    ) -> None:
        await self._run(
            self._scripts.finish_idempotent,
            [codec.dumps(response), str(codec.ms(ttl))],
            key=self._idempotency_key(caller, key),
        )

    async def abandon_idempotent(self, caller: str, key: str) -> None:
        await self._run(
            self._scripts.abandon_idempotent, [], key=self._idempotency_key(caller, key)
        )

    # -- subscriptions ------------------------------------------------------------------

    async def add_subscription(
        self, subscription: Subscription, limit: int | None = None
    ) -> tuple[Subscription, bool]:
        outcome: list[Any] = await self._run(
            self._scripts.add_subscription,
            [
                subscription.id,
                codec.dumps(subscription),
                subscription.caller,
                subscription_identity(subscription),
                "" if limit is None else str(limit),
            ],
        )
        if outcome[0] == 0:
            return codec.loads(outcome[1], Subscription), False
        if outcome[0] == 2:
            assert limit is not None
            raise SubscriptionLimitReached(subscription.caller, limit)
        if outcome[0] == 3:
            raise ValueError(f"subscription {subscription.id!r} already exists")
        return subscription, True

    async def list_subscriptions(self, caller: str | None = None) -> list[Subscription]:
        records: list[str | None] = await self._run(
            self._scripts.list_subscriptions, [caller or ""]
        )
        return [codec.loads(record, Subscription) for record in records if record is not None]

    async def delete_subscription(self, subscription_id: str) -> bool:
        return bool(await self._run(self._scripts.delete_subscription, [subscription_id]))

    # -- shared slot cache ------------------------------------------------------------

    async def cache_get(self, key: str) -> tuple[str, float] | None:
        async with self._redis() as client, client.pipeline(transaction=True) as pipe:
            pipe.get(f"{self.prefix}cache:{key}")
            pipe.pttl(f"{self.prefix}cache:{key}")
            value, left_ms = await pipe.execute()
        if value is None or left_ms <= 0:
            return None
        return cast(str, value), left_ms / 1000

    async def cache_set(self, key: str, value: str, ttl: float) -> None:
        async with self._redis() as client:
            await client.set(f"{self.prefix}cache:{key}", value, px=codec.ms(ttl))

"""The SQLite store's keyed records: Idempotency-Key records and webhook subscriptions."""

from __future__ import annotations

import json

from service.store import codec
from service.store.base import (
    IdempotencyRecord,
    IdempotencyState,
    StoredResponse,
    Subscription,
    SubscriptionLimitReached,
)
from service.store.sqlite.connection import Connection, fetch_all, fetch_one
from service.store.sqlite.rows import idempotency_from, subscription_from


class Keys(Connection):
    """Idempotency-Key claims and their kept answers; subscriptions per caller."""

    # -- idempotency --------------------------------------------------------------------

    async def begin_idempotent(
        self, caller: str, key: str, fingerprint: str, lease: float
    ) -> IdempotencyRecord | None:
        now = codec.now()
        now_us = codec.to_us(now)
        async with self._writing() as db:
            await db.execute("DELETE FROM idempotency WHERE expires_us <= ?", (now_us,))
            row = await fetch_one(
                db, "SELECT * FROM idempotency WHERE caller = ? AND key = ?", (caller, key)
            )
            if row is not None:
                return idempotency_from(row)
            await db.execute(
                "INSERT INTO idempotency (caller, key, fingerprint, state, response, expires_us) "
                "VALUES (?, ?, ?, ?, NULL, ?)",
                (
                    caller,
                    key,
                    fingerprint,
                    IdempotencyState.IN_FLIGHT.value,
                    codec.after_us(now, lease),
                ),
            )
        return None

    async def finish_idempotent(
        self, caller: str, key: str, response: StoredResponse, ttl: float
    ) -> None:
        # Only a claimed key is finished: when the marker is gone (its lease ran out
        # and it was purged) there is no fingerprint to bind the response to.
        expires_us = codec.after_us(codec.now(), ttl)
        async with self._writing() as db:
            await db.execute(
                "UPDATE idempotency SET state = ?, response = ?, expires_us = ? "
                "WHERE caller = ? AND key = ?",
                (IdempotencyState.DONE.value, codec.dumps(response), expires_us, caller, key),
            )

    async def abandon_idempotent(self, caller: str, key: str) -> None:
        async with self._writing() as db:
            await db.execute(
                "DELETE FROM idempotency WHERE caller = ? AND key = ? AND state = ?",
                (caller, key, IdempotencyState.IN_FLIGHT.value),
            )

    # -- subscriptions ------------------------------------------------------------------

    async def add_subscription(
        self, subscription: Subscription, limit: int | None = None
    ) -> tuple[Subscription, bool]:
        async with self._writing() as db:
            rows = await fetch_all(
                db,
                "SELECT * FROM subscriptions WHERE caller = ? ORDER BY seq",
                (subscription.caller,),
            )
            for row in rows:
                existing = subscription_from(row)
                if existing.same_as(subscription):
                    return existing, False
            if limit is not None and len(rows) >= limit:
                raise SubscriptionLimitReached(subscription.caller, limit)
            await db.execute(
                "INSERT INTO subscriptions (id, url, events, caller, created_us) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    subscription.id,
                    subscription.url,
                    json.dumps(list(subscription.events)),
                    subscription.caller,
                    codec.to_us(subscription.created_at),
                ),
            )
        return subscription, True

    async def list_subscriptions(self, caller: str | None = None) -> list[Subscription]:
        async with self._reading() as db:
            if caller is None:
                rows = await fetch_all(db, "SELECT * FROM subscriptions ORDER BY seq")
            else:
                rows = await fetch_all(
                    db, "SELECT * FROM subscriptions WHERE caller = ? ORDER BY seq", (caller,)
                )
        return [subscription_from(row) for row in rows]

    async def delete_subscription(self, subscription_id: str) -> bool:
        async with self._writing() as db:
            cursor = await db.execute("DELETE FROM subscriptions WHERE id = ?", (subscription_id,))
            return cursor.rowcount > 0

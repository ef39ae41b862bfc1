"""The Redis store's data migrations: indexes added to what older versions wrote.

`P schema` holds the version the data is at. Every step is idempotent and checks each
record's version, so replicas that start together may run it side by side.
"""

from __future__ import annotations

import re
from typing import Final, cast

from redis.asyncio import Redis

from service.domain.booking import Booking
from service.store import codec
from service.store.base import Subscription, organizer_key
from service.store.redis.fields import list_key, subscription_identity
from service.store.redis.scripts import Scripts

SCHEMA_VERSION: Final = 1
_SCAN_BATCH: Final = 500


async def migrate(client: Redis, prefix: str, scripts: Scripts) -> None:
    """Bring the data under `prefix` up to SCHEMA_VERSION."""
    version = int(await client.get(f"{prefix}schema") or 0)
    if version >= SCHEMA_VERSION:
        return
    await _index_bookings(client, prefix, scripts)
    await _index_subscriptions(client, prefix, scripts)
    await client.set(f"{prefix}schema", str(SCHEMA_VERSION))


async def _index_bookings(client: Redis, prefix: str, scripts: Scripts) -> None:
    """Owners, listing keys and resync turns for bookings written before they existed."""
    pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "booking:*"
    async for key in client.scan_iter(match=pattern, count=_SCAN_BATCH):
        version, record = await client.hmget(key, ["version", "record"])
        if version is None or record is None:
            continue
        booking = codec.loads(record, Booking)
        await scripts.reindex_booking(
            keys=[],
            args=[
                prefix,
                booking.id,
                version,
                organizer_key(booking.organizer),
                booking.caller or "",
                list_key(booking.start, booking.id),
                "1" if booking.active else "0",
            ],
            client=client,
        )


async def _index_subscriptions(client: Redis, prefix: str, scripts: Scripts) -> None:
    """The per-caller index and identity of subscriptions written before them."""
    # decode_responses=True: every field and value comes back as str.
    records = cast(dict[str, str], await client.hgetall(f"{prefix}subscriptions"))
    for record in records.values():
        sub = codec.loads(record, Subscription)
        await scripts.reindex_subscription(
            keys=[], args=[prefix, sub.id, sub.caller, subscription_identity(sub)], client=client
        )

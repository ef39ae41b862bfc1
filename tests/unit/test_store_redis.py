"""The Redis store beyond the shared contract: several replicas on one Redis, Redis
going away and coming back, its key layout, and its queues checked step by step
against the SQLite reference implementation.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from operator import methodcaller
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import attrs
import pytest
from redis.asyncio import Redis

from service import keys
from service.domain.booking import Booking, BookingStatus
from service.store import open_store
from service.store.base import (
    Delivery,
    DeliveryStatus,
    Operation,
    OperationStatus,
    Store,
    StoredResponse,
    StoreUnavailable,
    Subscription,
)
from service.store.redis import RedisStore
from service.store.redis import bookings as redis_bookings
from service.store.redis import queues as redis_queues
from service.store.sqlite import SQLiteStore
from tests.conftest import AUTH, JOHN, upstream_calls
from tests.dates import in_days, iso
from tests.unit.test_store_contract import (
    ORGANIZER,
    OTHER_ORGANIZER,
    T0,
    URL_A,
    URL_B,
    at,
    make_booking,
    make_delivery,
    make_operation,
    make_unresolved,
)

if TYPE_CHECKING:
    from tests.redis_server import RedisServer

pytest_plugins = ("tests.redis_server",)

QUICK = 2.0  # seconds: how soon a dead Redis must surface as StoreUnavailable
DB = 1  # the shared server's database for these tests (the contract suite uses 0)


@pytest.fixture
async def replicas(redis_server: RedisServer) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    """Two independent stores on one empty database, as two gateway replicas."""
    await redis_server.flush(DB)
    first = await RedisStore.open(redis_server.url(DB))
    second = await RedisStore.open(redis_server.url(DB))
    yield first, second
    await first.close()
    await second.close()


@pytest.fixture
async def raw(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url(DB), decode_responses=True)
    yield client
    await client.aclose()


def alternate(a: Store, b: Store, count: int) -> list[Store]:
    return [a if i % 2 == 0 else b for i in range(count)]


# -- opening -------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["sqlite:///x.db", "redis://", "http://localhost:6379/0", ""])
async def test_open_refuses_other_urls(url: str) -> None:
    with pytest.raises(ValueError, match="redis://"):
        await RedisStore.open(url)


async def test_store_url_opens_a_redis_store(redis_server: RedisServer) -> None:
    store = await open_store(redis_server.url(DB))
    try:
        assert isinstance(store, RedisStore)
        await store.ping()
    finally:
        await store.close()


async def test_open_when_nothing_listens_fails_fast() -> None:
    from tests.redis_server import free_port  # loaded by now, as a plugin

    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await RedisStore.open(f"redis://127.0.0.1:{free_port()}/0")
    assert time.monotonic() - started < QUICK


# -- replicas racing -------------------------------------------------------------------------


async def test_replicas_race_for_an_idempotency_key(
    replicas: tuple[RedisStore, RedisStore],
) -> None:
    stores = alternate(*replicas, 60)
    results = await asyncio.gather(
        *(store.begin_idempotent("crm", "k1", "fp1", lease=60) for store in stores)
    )
    assert results.count(None) == 1
    owner = stores[results.index(None)]
    other = replicas[1] if owner is replicas[0] else replicas[0]
    await owner.finish_idempotent("crm", "k1", StoredResponse(status=201, body="{}"), ttl=60)
    record = await other.begin_idempotent("crm", "k1", "fp1", lease=60)
    assert record is not None
    assert record.response == StoredResponse(status=201, body="{}")


async def test_replicas_race_for_overlapping_holds(
    replicas: tuple[RedisStore, RedisStore],
) -> None:
    stores = alternate(*replicas, 40)
    results = await asyncio.gather(
        *(
            store.acquire_hold(ORGANIZER, at(i), at(i + 60), f"h{i}", ttl=60)
            for i, store in enumerate(stores)
        )
    )
    assert results.count(True) == 1


async def test_replicas_race_for_a_booking_version(
    replicas: tuple[RedisStore, RedisStore],
) -> None:
    booking = make_booking()
    created = await asyncio.gather(
        *(store.put_booking(booking, expected_version=None) for store in alternate(*replicas, 20))
    )
    assert created.count(True) == 1
    confirmed = booking.changed(at(1), status=BookingStatus.CONFIRMED)
    cancelled = booking.changed(at(1), status=BookingStatus.CANCELLED)
    first, second = replicas
    changed = await asyncio.gather(
        first.put_booking(confirmed, expected_version=1),
        second.put_booking(cancelled, expected_version=1),
    )
    assert changed.count(True) == 1
    assert await second.get_booking(booking.id) in (confirmed, cancelled)


async def test_a_hold_blocks_other_replicas_until_it_is_booked_or_released(
    replicas: tuple[RedisStore, RedisStore],
) -> None:
    first, second = replicas
    assert await first.acquire_hold(ORGANIZER, at(0), at(60), "h1", ttl=60)
    assert not await second.acquire_hold(ORGANIZER, at(30), at(90), "h2", ttl=60)
    assert await first.put_booking(make_booking(), expected_version=None, release_hold="h1")
    # The hold is gone, the booking now blocks the range.
    assert not await second.acquire_hold(ORGANIZER, at(30), at(90), "h3", ttl=60)
    assert await second.acquire_hold(ORGANIZER, at(60), at(90), "h4", ttl=60)


async def test_a_dead_replicas_hold_lapses(replicas: tuple[RedisStore, RedisStore]) -> None:
    first, second = replicas
    assert await first.acquire_hold(ORGANIZER, at(0), at(60), "h1", ttl=0.1)
    await first.close()  # the replica dies holding it
    assert not await second.acquire_hold(ORGANIZER, at(0), at(60), "h2", ttl=60)
    await asyncio.sleep(0.2)
    assert await second.acquire_hold(ORGANIZER, at(0), at(60), "h3", ttl=60)


async def drain(
    store: Store, claimed: list[str], finish: Callable[[Store, str], Awaitable[None]], kind: str
) -> None:
    """Claim until nothing is left, finishing each claimed item at once."""
    idle = 0
    while idle < 3:
        if kind == "deliveries":
            batch: list[Delivery] | list[Operation] = await store.claim_deliveries(
                T0, 3, "w", lease=600
            )
        else:
            batch = await store.claim_operations(T0, 3, "w", lease=600)
        idle = 0 if batch else idle + 1
        for item in batch:
            claimed.append(item.id)
            await finish(store, item.id)
        await asyncio.sleep(0)


async def test_replicas_claim_each_delivery_once_and_in_order(
    replicas: tuple[RedisStore, RedisStore],
) -> None:
    deliveries = [
        make_delivery(f"d{i:03}", url=(URL_A, URL_B)[i % 2], booking_id=(None, "ev1", "ev2")[i % 3])
        for i in range(120)
    ]
    await replicas[0].enqueue_deliveries(deliveries)
    by_id = {delivery.id: delivery for delivery in deliveries}

    async def deliver(store: Store, delivery_id: str) -> None:
        done = attrs.evolve(by_id[delivery_id], status=DeliveryStatus.DELIVERED, attempts=1)
        await store.update_delivery(done)

    claimed: list[str] = []
    await asyncio.gather(
        *(drain(store, claimed, deliver, "deliveries") for store in alternate(*replicas, 8))
    )
    assert sorted(claimed) == sorted(by_id)
    for url in (URL_A, URL_B):
        for booking_id in ("ev1", "ev2"):
            group = [d.id for d in deliveries if (d.url, d.booking_id) == (url, booking_id)]
            assert [i for i in claimed if i in group] == group


async def test_replicas_claim_each_operation_once_and_in_order(
    replicas: tuple[RedisStore, RedisStore],
) -> None:
    operations = [
        make_operation(f"op{i:03}", booking_id=(None, "ev1", "ev2", "ev3")[i % 4])
        for i in range(100)
    ]
    for store, operation in zip(alternate(*replicas, len(operations)), operations, strict=True):
        await store.add_operation(operation)
    by_id = {operation.id: operation for operation in operations}

    async def succeed(store: Store, operation_id: str) -> None:
        done = attrs.evolve(by_id[operation_id], status=OperationStatus.SUCCEEDED, attempts=1)
        await store.update_operation(done)

    claimed: list[str] = []
    await asyncio.gather(
        *(drain(store, claimed, succeed, "operations") for store in alternate(*replicas, 8))
    )
    assert sorted(claimed) == sorted(by_id)
    for booking_id in ("ev1", "ev2", "ev3"):
        group = [o.id for o in operations if o.booking_id == booking_id]
        assert [i for i in claimed if i in group] == group


async def test_lease_expiry_lets_the_other_replica_reclaim(
    replicas: tuple[RedisStore, RedisStore],
) -> None:
    first, second = replicas
    now = datetime.now(UTC)
    delivery = make_delivery("d1", due=now)
    operation = make_operation("op1", due=now)
    await first.enqueue_deliveries([delivery])
    await first.add_operation(operation)

    assert await first.claim_deliveries(now, 10, "replica-1", lease=0.2) == [delivery]
    assert await first.claim_operations(now, 10, "replica-1", lease=0.2) == [operation]
    assert await second.claim_deliveries(datetime.now(UTC), 10, "replica-2", lease=30) == []
    assert await second.claim_operations(datetime.now(UTC), 10, "replica-2", lease=30) == []
    await asyncio.sleep(0.3)  # replica 1 died without finishing
    now = datetime.now(UTC)
    assert await second.claim_deliveries(now, 10, "replica-2", lease=30) == [delivery]
    assert await second.claim_operations(now, 10, "replica-2", lease=30) == [operation]
    assert await first.claim_deliveries(now, 10, "replica-1", lease=30) == []
    assert await first.claim_operations(now, 10, "replica-1", lease=30) == []


# -- Redis going away and coming back -----------------------------------------------------


def every_call(store: Store) -> dict[str, Callable[[], Awaitable[object]]]:
    booking = make_booking()
    delivery = make_delivery("d1")
    operation = make_operation("op1")
    return {
        "ping": store.ping,
        "get_booking": lambda: store.get_booking("ev1"),
        "put_booking": lambda: store.put_booking(booking, expected_version=None),
        "active_bookings": lambda: store.active_bookings([ORGANIZER], at(0), at(60)),
        "acquire_hold": lambda: store.acquire_hold(ORGANIZER, at(0), at(60), "h1", ttl=60),
        "release_hold": lambda: store.release_hold("h1"),
        "begin_idempotent": lambda: store.begin_idempotent("crm", "k", "fp", lease=60),
        "finish_idempotent": lambda: store.finish_idempotent(
            "crm", "k", StoredResponse(status=200, body="{}"), ttl=60
        ),
        "abandon_idempotent": lambda: store.abandon_idempotent("crm", "k"),
        "enqueue_deliveries": lambda: store.enqueue_deliveries([delivery]),
        "claim_deliveries": lambda: store.claim_deliveries(T0, 10, "w", lease=30),
        "update_delivery": lambda: store.update_delivery(delivery),
        "get_delivery": lambda: store.get_delivery("d1"),
        "list_deliveries": lambda: store.list_deliveries(None, 10),
        "list_subscriptions": store.list_subscriptions,
        "delete_subscription": lambda: store.delete_subscription("s1"),
        "add_operation": lambda: store.add_operation(operation),
        "get_operation": lambda: store.get_operation("op1"),
        "claim_operations": lambda: store.claim_operations(T0, 10, "w", lease=30),
        "update_operation": lambda: store.update_operation(operation),
        "pending_counts": store.pending_counts,
        "cache_get": lambda: store.cache_get("k"),
        "cache_set": lambda: store.cache_set("k", "v", ttl=1),
    }


async def assert_unavailable_quickly(call: Callable[[], Awaitable[object]], name: str) -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await asyncio.wait_for(call(), timeout=30)
    elapsed = time.monotonic() - started
    assert elapsed < QUICK, f"{name} took {elapsed:.2f}s to fail"


async def test_stopped_redis_is_unavailable_quickly(own_redis_server: RedisServer) -> None:
    store = await RedisStore.open(own_redis_server.url())
    try:
        await store.ping()
        await asyncio.to_thread(own_redis_server.stop)
        for name, call in every_call(store).items():
            await assert_unavailable_quickly(call, name)
    finally:
        await store.close()


async def test_hung_redis_times_out_as_unavailable(own_redis_server: RedisServer) -> None:
    store = await RedisStore.open(own_redis_server.url(), socket_timeout=0.3)
    try:
        await store.ping()
        own_redis_server.pause()
        try:
            await assert_unavailable_quickly(store.ping, "ping")
            await assert_unavailable_quickly(
                lambda: store.put_booking(make_booking(), expected_version=None), "put_booking"
            )
        finally:
            own_redis_server.resume()
        await store.ping()
        assert await store.put_booking(make_booking(), expected_version=None)
    finally:
        await store.close()


async def test_store_recovers_when_redis_restarts(own_redis_server: RedisServer) -> None:
    store = await RedisStore.open(own_redis_server.url())
    try:
        # Several pooled connections, all of which the restart breaks.
        await asyncio.gather(*(store.get_booking(f"ev{i}") for i in range(8)))
        assert await store.begin_idempotent("crm", "k1", "fp1", lease=60) is None

        await asyncio.to_thread(own_redis_server.stop)
        await assert_unavailable_quickly(store.ping, "ping")
        await asyncio.to_thread(own_redis_server.start)

        # The same instance, without reopening: fresh connections, scripts loaded again
        # (the restarted server has none cached, and no data: it does not persist).
        await store.ping()
        assert await store.begin_idempotent("crm", "k1", "fp1", lease=60) is None
        results = await asyncio.gather(
            *(store.acquire_hold(ORGANIZER, at(i), at(i + 60), f"h{i}", ttl=60) for i in range(8))
        )
        assert results.count(True) == 1
        assert await store.put_booking(make_booking("ev9", 600, 660), expected_version=None)
        assert await store.get_booking("ev9") == make_booking("ev9", 600, 660)
    finally:
        await store.close()


# -- listing, resync, unresolved creates across replicas ------------------------------------


async def walk_pages(store: Store, **filters: Any) -> tuple[list[Booking], int]:
    """Every booking of a paged listing, and how many calls it took."""
    found: list[Booking] = []
    after: tuple[datetime, str] | None = None
    for calls in range(1, 100):
        page = await store.list_bookings(after=after, limit=10, **filters)
        found += page.bookings
        if page.next_after is None:
            return found, calls
        after = page.next_after
    raise AssertionError("the listing never ended")


async def test_owner_and_organizer_together_cost_a_bounded_look_ahead(
    replicas: tuple[RedisStore, RedisStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = replicas[0]
    monkeypatch.setattr(redis_bookings, "LIST_LOOKAHEAD", 5)
    # ORGANIZER: 12 of billing's bookings, then one of crm's; crm has 20 more elsewhere.
    theirs = [make_booking(f"b{i:02d}", i, i + 1, caller="billing") for i in range(12)]
    mine = make_booking("c1", 20, 21, caller="crm")
    elsewhere = [
        make_booking(f"c{i:02d}", 100 + i, 101 + i, caller="crm", organizer=OTHER_ORGANIZER)
        for i in range(10, 30)
    ]
    for booking in [*theirs, mine, *elsewhere]:
        assert await store.put_booking(booking, expected_version=None)
    # The organizer's 13 are fewer than crm's 21: walked, the owner checked record by
    # record, each call passing over five others' at most. A page may come back empty, but
    # says where to go on.
    first = await store.list_bookings(caller="crm", organizer=ORGANIZER, limit=10)
    assert first.bookings == []
    assert first.next_after == (theirs[4].start, theirs[4].id)
    assert await walk_pages(store, caller="crm", organizer=ORGANIZER) == ([mine], 3)
    # billing's 12 are fewer than OTHER_ORGANIZER's 20: walked the other way round.
    assert await walk_pages(store, caller="billing", organizer=OTHER_ORGANIZER) == ([], 3)
    # What one index answers alone is never cut short: 21 in full pages of 10.
    assert await walk_pages(store, caller="crm") == ([mine, *elsewhere], 3)


async def test_replicas_share_the_resync_work(replicas: tuple[RedisStore, RedisStore]) -> None:
    first, second = replicas
    for i in range(30):
        assert await first.put_booking(
            make_booking(f"ev{i}", 60 + i, 90 + i), expected_version=None
        )
    rounds = [
        store.claim_resync(at(0), 4, f"replica{i % 2}", interval=300)
        for i, store in enumerate(alternate(first, second, 12))
    ]
    handed = [b.id for batch in await asyncio.gather(*rounds) for b in batch]
    assert sorted(handed) == sorted(f"ev{i}" for i in range(30))


async def test_replicas_reconcile_each_unresolved_create_once(
    replicas: tuple[RedisStore, RedisStore],
) -> None:
    first, second = replicas
    for i in range(10):
        record = make_unresolved(f"u{i}", hold_id=f"h{i}", start=i * 60, end=i * 60 + 60)
        assert await first.add_unresolved(record)
    claims = [
        store.claim_unresolved(T0, 2, f"replica{i % 2}", lease=60)
        for i, store in enumerate(alternate(first, second, 8))
    ]
    handed = [r.id for batch in await asyncio.gather(*claims) for r in batch]
    assert sorted(handed) == sorted(f"u{i}" for i in range(10))
    # Finished on one replica (found and not), the other sees the time change at once.
    assert await second.finish_unresolved("u0", booking=make_booking("ev0", 0, 60))
    assert await second.finish_unresolved("u1")
    assert not await first.acquire_hold(ORGANIZER, at(0), at(60), "x0", ttl=60)
    assert await first.acquire_hold(ORGANIZER, at(60), at(120), "x1", ttl=60)
    assert not await first.finish_unresolved("u1")


async def test_a_tied_hold_and_its_index_never_expire_until_finished(
    replicas: tuple[RedisStore, RedisStore], raw: Redis
) -> None:
    store = replicas[0]
    assert await store.acquire_hold(ORGANIZER, at(200), at(260), "short", ttl=60)
    assert await store.add_unresolved(make_unresolved("u1", hold_id="h1"))
    hold, index = f"{store.prefix}hold:h1", f"{store.prefix}holds:{ORGANIZER}"
    assert await raw.pttl(hold) == -1
    assert await raw.pttl(index) == -1
    # Another hold of the organizer does not give the index a lifetime again.
    assert await store.acquire_hold(ORGANIZER, at(300), at(360), "later", ttl=60)
    assert await raw.pttl(index) == -1
    assert await store.finish_unresolved("u1")
    assert await raw.exists(hold) == 0
    await store.release_hold("later")
    assert await store.acquire_hold(ORGANIZER, at(400), at(460), "again", ttl=60)
    assert 0 < await raw.pttl(index) <= 60_000
    # Nothing of the record is left but the queue's sequence counter.
    assert await raw.keys(f"{store.prefix}unresolved*") == [f"{store.prefix}unresolved:seq"]


async def test_data_written_before_the_new_indexes_is_indexed_on_open(
    redis_server: RedisServer, raw: Redis
) -> None:
    """What an older version left (no owners, listing keys, resync turns or per-caller
    subscription index) is indexed once when a store opens, and then works as new data."""
    await redis_server.flush(DB)
    store = await RedisStore.open(redis_server.url(DB))
    owned, unowned = make_booking("ev1", 0, 60), make_booking("ev2", 30, 90, caller=None)
    sub = Subscription(
        id="s1", url=URL_A, events=("booking.confirmed",), caller="crm", created_at=T0
    )
    try:
        for booking in (owned, unowned):
            assert await store.put_booking(booking, expected_version=None)
        await store.add_subscription(sub)
    finally:
        await store.close()
    prefix = store.prefix
    for key in ("ev1", "ev2"):
        await raw.hdel(f"{prefix}booking:{key}", "caller", "organizer_key", "list_key")
    added = [
        *await raw.keys(f"{prefix}bookings:by-*"),
        f"{prefix}bookings:resync",
        f"{prefix}subscriptions:caller:crm",
        f"{prefix}subscriptions:identity",
        f"{prefix}schema",
    ]
    await raw.delete(*added)

    reopened = await RedisStore.open(redis_server.url(DB))
    try:
        assert [b.id for b in (await reopened.list_bookings(caller="crm")).bookings] == ["ev1"]
        everything = await reopened.list_bookings(caller=None, organizer=ORGANIZER.upper())
        assert [b.id for b in everything.bookings] == ["ev1", "ev2"]
        handed = await reopened.claim_resync(at(0), 10, "r1", interval=60)
        assert sorted(b.id for b in handed) == ["ev1", "ev2"]
        assert await reopened.list_subscriptions("crm") == [sub]
        assert await reopened.add_subscription(attrs.evolve(sub, id="s2")) == (sub, False)
        assert await reopened.delete_subscription("s1")
        assert await reopened.list_subscriptions("crm") == []
        # Changed after the migration, a booking moves in the listing as new ones do.
        cancelled = owned.changed(T0, status=BookingStatus.CANCELLED)
        assert await reopened.put_booking(cancelled, expected_version=1)
        requested = await reopened.list_bookings(caller="crm", statuses=[BookingStatus.REQUESTED])
        assert requested.bookings == []
    finally:
        await reopened.close()


# -- layout ----------------------------------------------------------------------------------


async def test_keys_stay_under_the_prefix_and_temporary_ones_expire(
    redis_server: RedisServer, raw: Redis
) -> None:
    await redis_server.flush(DB)
    store = await RedisStore.open(redis_server.url(DB), prefix="tenant-a:")
    other: RedisStore | None = None
    try:
        assert await store.acquire_hold(ORGANIZER, at(0), at(60), "h1", ttl=60)
        assert await store.begin_idempotent("crm", "k1", "fp1", lease=60) is None
        assert await store.put_booking(
            make_booking("ev1", 120, 180), expected_version=None, deliveries=[make_delivery("d1")]
        )
        await store.add_operation(make_operation("op1"))

        keys = [str(key) for key in await raw.keys("*")]
        assert keys
        assert all(key.startswith("tenant-a:") for key in keys)
        for key in await raw.keys("tenant-a:hold*") + await raw.keys("tenant-a:idempotency:*"):
            assert 0 < await raw.pttl(key) <= 60_000, key

        # The other prefix is another store: nothing is shared.
        other = await RedisStore.open(redis_server.url(DB), prefix="tenant-b:")
        assert await other.acquire_hold(ORGANIZER, at(0), at(60), "h1", ttl=60)
        assert await other.get_booking("ev1") is None
        assert await other.claim_deliveries(T0, 10, "w", lease=30) == []

        await store.release_hold("h1")
        await store.abandon_idempotent("crm", "k1")
        assert await raw.keys("tenant-a:hold*") == []
        assert await raw.keys("tenant-a:idempotency:*") == []
    finally:
        await store.close()
        if other is not None:
            await other.close()


async def test_a_cancelled_booking_leaves_the_active_index(
    replicas: tuple[RedisStore, RedisStore], raw: Redis
) -> None:
    store = replicas[0]
    booking = make_booking()
    assert await store.put_booking(booking, expected_version=None)
    index = f"{store.prefix}bookings:active:{ORGANIZER}"
    assert await raw.zrange(index, 0, -1) == ["ev1"]
    moved = booking.changed(at(1), start=at(120), end=at(180))
    assert await store.put_booking(moved, expected_version=1)
    assert await store.active_bookings([ORGANIZER], at(0), at(60)) == []
    assert await store.active_bookings([ORGANIZER], at(150), at(160)) == [moved]
    cancelled = moved.changed(at(2), status=BookingStatus.CANCELLED)
    assert await store.put_booking(cancelled, expected_version=2)
    assert await raw.exists(index) == 0


async def test_purge_pages_past_records_it_keeps_and_leaves_no_index_behind(
    replicas: tuple[RedisStore, RedisStore], raw: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(redis_queues, "PURGE_BATCH", 2)
    store = replicas[0]
    cutoff = T0
    old, recent = T0 - timedelta(days=1), T0 + timedelta(days=1)
    # Five failed long ago but retried lately (kept) ahead of three to forget, in seq order.
    kept = [
        attrs.evolve(make_delivery(f"k{i}", booking_id=None), created_at=old, updated_at=recent)
        for i in range(5)
    ]
    gone = [
        attrs.evolve(make_delivery(f"g{i}", booking_id=None), created_at=old, updated_at=old)
        for i in range(3)
    ]
    await store.enqueue_deliveries(
        [attrs.evolve(d, status=DeliveryStatus.FAILED) for d in kept + gone]
    )
    assert await store.purge_finished(cutoff) == 3
    remaining = await store.list_deliveries(DeliveryStatus.FAILED, 20)
    assert sorted(d.id for d in remaining) == [f"k{i}" for i in range(5)]
    for index in ("all", "status:failed"):
        assert await raw.zcard(f"{store.prefix}deliveries:{index}") == 5
    assert not await raw.exists(*(f"{store.prefix}delivery:g{i}" for i in range(3)))


async def test_shared_cache_entries_expire(
    replicas: tuple[RedisStore, RedisStore], raw: Redis
) -> None:
    first, second = replicas
    assert await second.cache_get("slots:x") is None
    await first.cache_set("slots:x", "[[1,2]]", ttl=0.2)
    found = await second.cache_get("slots:x")
    assert found is not None
    value, left = found
    assert value == "[[1,2]]" and 0 < left <= 0.2
    await asyncio.sleep(0.3)
    assert await second.cache_get("slots:x") is None


# -- the queues against the reference implementation -----------------------------------------


class Twin:
    """The same calls made on the SQLite reference and on Redis, answers compared."""

    def __init__(self, reference: Store, redis: Store) -> None:
        self.reference = reference
        self.redis = redis

    async def both(self, call: Callable[[Store], Awaitable[object]]) -> None:
        expected = await call(self.reference)
        assert await call(self.redis) == expected


@pytest.fixture
async def twin(redis_server: RedisServer, tmp_path: Path) -> AsyncIterator[Twin]:
    await redis_server.flush(DB)
    reference = await SQLiteStore.open(f"sqlite:///{tmp_path / 'reference.sqlite3'}")
    redis = await RedisStore.open(redis_server.url(DB))
    yield Twin(reference, redis)
    await reference.close()
    await redis.close()


def random_moment(rng: random.Random, now: float) -> datetime:
    return at(now + rng.choice([-1, 0, 0, 1, 2, 5]))


@pytest.mark.parametrize("seed", range(12))
async def test_outbox_behaves_like_the_reference(twin: Twin, seed: int) -> None:
    rng = random.Random(seed)
    now = 0.0  # minutes after T0; mostly moves forward, sometimes back (clock skew)
    known: list[Delivery] = []
    for step in range(150):
        now += rng.choice([-0.5, 0, 0.5, 1, 2])
        action = rng.random()
        if action < 0.3:
            batch = [
                make_delivery(
                    f"d{step}-{n}",
                    url=rng.choice([URL_A, URL_B]),
                    booking_id=rng.choice([None, "ev1", "ev2"]),
                    due=random_moment(rng, now),
                )
                for n in range(rng.randint(1, 3))
            ]
            if known and rng.random() < 0.2:
                batch.append(rng.choice(known))  # a known id: ignored
            await twin.both(methodcaller("enqueue_deliveries", batch))
            known += batch
        elif action < 0.65:
            limit, lease = rng.randint(1, 4), rng.choice([30, 90, 600])
            await twin.both(methodcaller("claim_deliveries", at(now), limit, "w", lease=lease))
        elif known:
            current = await twin.reference.get_delivery(rng.choice(known).id)
            assert current is not None
            status = rng.choice(list(DeliveryStatus))
            changed = attrs.evolve(
                current,
                status=status,
                attempts=current.attempts + 1,
                next_attempt_at=random_moment(rng, now),
                last_error=rng.choice([None, "HTTP 503", "timeout"]),
                updated_at=at(now),
            )
            await twin.both(methodcaller("update_delivery", changed))
        if step % 10 == 9:  # the whole state, now and then
            for status in (None, *DeliveryStatus):
                await twin.both(methodcaller("list_deliveries", status, 500))
    # Everything left is eventually claimable, in the same order.
    await twin.both(methodcaller("claim_deliveries", at(now + 10_000), 500, "w", lease=1))


@pytest.mark.parametrize("seed", range(12))
async def test_operations_behave_like_the_reference(twin: Twin, seed: int) -> None:
    rng = random.Random(seed)
    now = 0.0
    known: list[str] = []
    for step in range(150):
        now += rng.choice([-0.5, 0, 0.5, 1, 2])
        action = rng.random()
        if action < 0.3:
            operation = make_operation(
                f"op{step}",
                booking_id=rng.choice([None, "ev1", "ev2", "ev3"]),
                due=random_moment(rng, now),
            )
            await twin.both(methodcaller("add_operation", operation))
            known.append(operation.id)
        elif action < 0.65:
            limit, lease = rng.randint(1, 4), rng.choice([30, 90, 600])
            await twin.both(methodcaller("claim_operations", at(now), limit, "w", lease=lease))
        elif known:
            current = await twin.reference.get_operation(rng.choice(known))
            assert current is not None
            changed = attrs.evolve(
                current,
                status=rng.choice(list(OperationStatus)),
                # A create learns its booking; a retry may move it to another booking.
                booking_id=rng.choice([current.booking_id, current.booking_id, "ev1", "ev4"]),
                attempts=current.attempts + 1,
                maybe_sent=rng.random() < 0.5,
                next_attempt_at=random_moment(rng, now),
                last_error=rng.choice([None, "HTTP 503"]),
                updated_at=at(now),
            )
            await twin.both(methodcaller("update_operation", changed))
        if step % 10 == 9:
            for operation_id in known:
                await twin.both(methodcaller("get_operation", operation_id))
    await twin.both(methodcaller("claim_operations", at(now + 10_000), 500, "w", lease=1))


@pytest.mark.parametrize("seed", range(8))
async def test_bookings_and_holds_behave_like_the_reference(twin: Twin, seed: int) -> None:
    rng = random.Random(seed)
    organizers = [ORGANIZER, OTHER_ORGANIZER]
    bookings: dict[str, Booking] = {}
    holds: list[str] = []
    for step in range(150):
        action = rng.random()
        start = rng.randrange(0, 3000, 15)
        # Mostly short, now and then one over several days.
        end = start + rng.choice([15, 30, 60, 60, 120, 4 * 1440])
        if action < 0.3:
            booking_id = f"ev{step}"
            status = rng.choice([BookingStatus.REQUESTED, BookingStatus.CONFIRMED])
            booking = make_booking(
                booking_id, start, end, organizer=rng.choice(organizers), status=status
            )
            hold = rng.choice(holds) if holds and rng.random() < 0.5 else None
            await twin.both(
                methodcaller("put_booking", booking, expected_version=None, release_hold=hold)
            )
            bookings[booking_id] = booking
        elif action < 0.5 and bookings:
            current = rng.choice(list(bookings.values()))
            changed = current.changed(
                at(1),
                status=rng.choice(list(BookingStatus)),
                start=at(start),
                end=at(end),
                organizer=rng.choice(organizers),
            )
            version = rng.choice([current.version, current.version, current.version - 1])
            await twin.both(methodcaller("put_booking", changed, expected_version=version))
            if version == current.version:
                bookings[current.id] = changed
        elif action < 0.8:
            hold_id = f"h{step}"
            # Now and then a reschedule's hold, whose own booking's time counts as free.
            ignored = rng.choice(list(bookings)) if bookings and rng.random() < 0.3 else None
            await twin.both(
                methodcaller(
                    "acquire_hold",
                    rng.choice(organizers),
                    at(start),
                    at(end),
                    hold_id,
                    ttl=3600,
                    ignore_booking=ignored,
                )
            )
            holds.append(hold_id)
        elif holds:
            await twin.both(methodcaller("release_hold", rng.choice(holds)))
        organizer = rng.choice(organizers)
        await twin.both(methodcaller("active_bookings", [organizer], at(start), at(end)))
    for organizer in organizers:
        await twin.both(methodcaller("active_bookings", [organizer], at(-10_000), at(10_000)))


@pytest.mark.parametrize("seed", range(8))
async def test_listings_and_resync_behave_like_the_reference(twin: Twin, seed: int) -> None:
    rng = random.Random(seed)
    organizers = [ORGANIZER, OTHER_ORGANIZER, "Jane@Example.com"]
    callers = ["crm", "crm", "billing", None]
    bookings: dict[str, Booking] = {}
    clock = 0
    for step in range(120):
        start = rng.randrange(0, 600, 30)  # many share a start: ties ordered by id
        if rng.random() < 0.6 or not bookings:
            booking = make_booking(
                f"ev{rng.randrange(1000):03d}-{step}",
                start,
                start + rng.choice([15, 30, 60]),
                organizer=rng.choice(organizers),
                status=rng.choice(list(BookingStatus)),
                caller=rng.choice(callers),
            )
            await twin.both(methodcaller("put_booking", booking, expected_version=None))
            bookings[booking.id] = booking
        else:
            current = rng.choice(list(bookings.values()))
            changes: dict[str, Any] = rng.choice(
                [
                    {"status": rng.choice(list(BookingStatus))},
                    {"start": at(start), "end": at(start + 45)},
                    {"organizer": rng.choice(organizers).upper()},
                ]
            )
            changed = current.changed(at(1), **changes)
            await twin.both(methodcaller("put_booking", changed, expected_version=current.version))
            bookings[current.id] = changed
        if step % 10 == 9:
            filters: dict[str, Any] = {"caller": rng.choice([*callers, "nobody"])}
            if rng.random() < 0.4:
                filters["organizer"] = rng.choice(organizers).swapcase()
            if rng.random() < 0.4:
                filters["statuses"] = rng.sample(list(BookingStatus), rng.randint(1, 2))
            if rng.random() < 0.3:
                filters["start_from"] = at(rng.randrange(0, 600, 30))
            if rng.random() < 0.3:
                filters["start_to"] = at(rng.randrange(0, 700, 30))
            # Page by page, the same pages.
            after: tuple[datetime, str] | None = None
            limit = rng.randint(1, 7)
            for _ in range(200):
                expected = await twin.reference.list_bookings(after=after, limit=limit, **filters)
                assert (
                    await twin.redis.list_bookings(after=after, limit=limit, **filters) == expected
                )
                if expected.next_after is None:
                    break
                after = expected.next_after
            clock += rng.choice([0, 100, 400])
            now = at(rng.randrange(0, 700, 30)) + timedelta(seconds=clock)
            handed = [
                sorted(b.id for b in await store.claim_resync(now, 5, "r", interval=300))
                for store in (twin.reference, twin.redis)
            ]
            assert handed[0] == handed[1]


# -- two gateway replicas on one Redis -------------------------------------------------------


@pytest.mark.parametrize("shared", [True, False])
async def test_two_gateway_replicas_share_slot_answers(
    redis_server: RedisServer,
    gateway_factory: Callable[..., Any],
    sandbox_admin: aiohttp.ClientSession,
    shared: bool,
) -> None:
    await redis_server.flush(DB)
    replicas = [
        await gateway_factory(store_url=redis_server.url(DB), slot_cache_shared=shared)
        for _ in range(2)
    ]
    query = (
        f"/v1/availability?participants={JOHN}&duration=60&from={in_days(2)}&to={in_days(3)}"
        "&timezone=Europe/Paris"
    )
    answers = [await (await gw.get(query, headers=AUTH)).json() for gw in replicas]
    assert answers[0] == answers[1] and answers[0]["slots"]
    assert await upstream_calls(sandbox_admin, "GET /v2/slots") == (1 if shared else 2)


async def test_two_gateway_replicas_share_holds_and_idempotency(
    redis_server: RedisServer, gateway_factory: Callable[..., Any]
) -> None:
    """The real app, twice, through its factory: the guarantees hold across replicas."""
    await redis_server.flush(DB)
    first = await gateway_factory(store_url=redis_server.url(DB))
    second = await gateway_factory(store_url=redis_server.url(DB))
    assert isinstance(first.server.app[keys.STORE], RedisStore)

    def body(start: str) -> dict[str, Any]:
        return {
            "organizer": JOHN,
            "title": "Meeting with Quentin Tarantino",
            "start": start,
            "duration": 60,
            "timezone": "Europe/Paris",
            "invitees": [{"email": "quentin.tarantino@hollywood.com"}],
            "check_availability": False,
        }

    starts = [iso(in_days(3), f"10:{m:02d}", "Europe/Paris") for m in (0, 15, 30, 45)] * 3
    answers = await asyncio.gather(
        *(
            (first, second)[i % 2].post("/v1/bookings", json=body(start), headers=AUTH)
            for i, start in enumerate(starts)
        )
    )
    assert sorted(answer.status for answer in answers) == [201] + [409] * 11

    headers = {**AUTH, "Idempotency-Key": "across-replicas"}
    later = body(iso(in_days(4), "10:00", "Europe/Paris"))
    created = await first.post("/v1/bookings", json=later, headers=headers)
    assert created.status == 201
    replayed = await second.post("/v1/bookings", json=later, headers=headers)
    assert replayed.status == 201
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert await replayed.json() == await created.json()
    booking_id = (await created.json())["id"]
    read = await second.get(f"/v1/bookings/{booking_id}", headers=AUTH)
    assert read.status == 200
    assert (await read.json())["version"] == 1

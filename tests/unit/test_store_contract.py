"""The Store contract: every backend must pass the same suite.

A backend joins by adding an entry to BACKENDS; the tests at the end are about
SQLite only (its URL, file and schema). Redis specifics are in test_store_redis.py.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, time, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import pytest

from service.domain.booking import Booking, BookingStatus, Invitee, Place
from service.store.base import (
    Delivery,
    DeliveryStatus,
    IdempotencyState,
    Operation,
    OperationStatus,
    OperationType,
    Store,
    StoredResponse,
    StoreUnavailable,
    Subscription,
)
from service.store.redis import RedisStore
from service.store.sqlite import MIGRATIONS, SQLiteStore
from tests.dates import MONDAY, next_weekday

if TYPE_CHECKING:
    from tests.redis_server import RedisServer

pytest_plugins = ("tests.redis_server",)

T0 = datetime.combine(next_weekday(MONDAY), time(9), UTC)
PARIS_SUMMER = timezone(timedelta(hours=2))
ORGANIZER = "5f3feb7821046c3bb9327e6a"
OTHER_ORGANIZER = "jane@example.com"
URL_A = "https://a.internal/hooks"
URL_B = "https://b.internal/hooks"
SHORT = 0.05  # seconds: a lease or ttl that a test waits out
WAIT = 0.15


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


# -- backends -------------------------------------------------------------------------------

# Opens the backend's store on the location given; called again on the same location
# it must open the same data (that is how restarts are tested).
Opener = Callable[[], Awaitable[Store]]


def _sqlite_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    url = f"sqlite:///{tmp_path / 'store.sqlite3'}"

    async def open_store() -> Store:
        return await SQLiteStore.open(url)

    return open_store


def _redis_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    # The session's server; each test starts from an empty database, and reopening
    # within the test finds what it left there.
    server: RedisServer = request.getfixturevalue("redis_server")
    flushed = False

    async def open_store() -> Store:
        nonlocal flushed
        if not flushed:
            await server.flush()
            flushed = True
        return await RedisStore.open(server.url())

    return open_store


BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Opener]] = {
    "sqlite": _sqlite_backend,
    "redis": _redis_backend,
}


@pytest.fixture(params=sorted(BACKENDS))
async def open_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[[], Awaitable[Store]]]:
    """Opens stores of one backend on one location, and closes them all afterwards."""
    opener = BACKENDS[request.param](request, tmp_path)
    opened: list[Store] = []

    async def tracked() -> Store:
        store = await opener()
        opened.append(store)
        return store

    yield tracked
    for store in opened:
        await store.close()


@pytest.fixture
async def store(open_store: Callable[[], Awaitable[Store]]) -> Store:
    return await open_store()


# -- records --------------------------------------------------------------------------------


def make_booking(
    booking_id: str = "ev1",
    start: float = 0,
    end: float = 60,
    *,
    organizer: str = ORGANIZER,
    status: BookingStatus = BookingStatus.REQUESTED,
) -> Booking:
    return Booking(
        id=booking_id,
        status=status,
        title="Meeting with Quentin Tarantino",
        organizer=organizer,
        start=at(start),
        end=at(end),
        timezone="Europe/Paris",
        invitees=(Invitee(email="quentin.tarantino@hollywood.com", full_name="Quentin"),),
        place=Place(name="Place for the meeting."),
        message=None,
        callback_url="https://crm.internal/hooks/bookings",
        caller="crm",
        version=1,
        created_at=T0 - timedelta(days=1),
        updated_at=T0 - timedelta(days=1),
    )


def make_delivery(
    delivery_id: str,
    *,
    url: str = URL_A,
    booking_id: str | None = "ev1",
    due: datetime = T0,
) -> Delivery:
    return Delivery(
        id=delivery_id,
        event_type="booking.requested",
        url=url,
        payload=f'{{"type":"booking.requested","id":"{delivery_id}"}}',
        booking_id=booking_id,
        status=DeliveryStatus.PENDING,
        attempts=0,
        next_attempt_at=due,
        last_error=None,
        created_at=T0 - timedelta(seconds=1),
        updated_at=T0 - timedelta(seconds=1),
        request_id=f"req-{delivery_id}",
    )


def make_operation(
    operation_id: str,
    *,
    booking_id: str | None = "ev1",
    type: OperationType = OperationType.CONFIRM,
    due: datetime = T0,
) -> Operation:
    return Operation(
        id=operation_id,
        type=type,
        status=OperationStatus.PENDING,
        caller="crm",
        booking_id=booking_id,
        request="{}",
        attempts=0,
        last_error=None,
        maybe_sent=False,
        next_attempt_at=due,
        created_at=T0 - timedelta(seconds=1),
        updated_at=T0 - timedelta(seconds=1),
        request_id=f"req-{operation_id}",
    )


def ids(records: list[Delivery] | list[Operation]) -> list[str]:
    return [record.id for record in records]


def assert_utc(moment: datetime) -> None:
    assert moment.tzinfo is not None
    assert moment.utcoffset() == timedelta(0)


async def cancel(store: Store, booking: Booking) -> Booking:
    cancelled = booking.changed(T0, status=BookingStatus.CANCELLED)
    assert await store.put_booking(cancelled, expected_version=booking.version)
    return cancelled


# -- bookings -------------------------------------------------------------------------------


async def test_booking_insert_and_get(store: Store) -> None:
    booking = make_booking()
    assert await store.get_booking(booking.id) is None
    assert await store.put_booking(booking, expected_version=None)
    assert await store.get_booking(booking.id) == booking


async def test_booking_datetimes_come_back_as_the_same_instants_in_utc(store: Store) -> None:
    local = attrs.evolve(
        make_booking(),
        start=at(0).astimezone(PARIS_SUMMER),
        end=at(60).astimezone(PARIS_SUMMER),
        created_at=(T0 - timedelta(days=6, hours=-1, microseconds=-123456)).astimezone(
            PARIS_SUMMER
        ),
    )
    assert await store.put_booking(local, expected_version=None)
    stored = await store.get_booking(local.id)
    assert stored == local
    assert stored is not None
    for moment in (stored.start, stored.end, stored.created_at, stored.updated_at):
        assert_utc(moment)
    assert stored.created_at.microsecond == 123456


async def test_booking_naive_datetime_is_refused(store: Store) -> None:
    naive = attrs.evolve(make_booking(), start=T0.replace(tzinfo=None))
    with pytest.raises(ValueError, match="naive"):
        await store.put_booking(naive, expected_version=None)


async def test_booking_insert_when_present_is_refused(store: Store) -> None:
    booking = make_booking()
    assert await store.put_booking(booking, expected_version=None)
    other = attrs.evolve(booking, title="Another title")
    assert not await store.put_booking(other, expected_version=None)
    assert await store.get_booking(booking.id) == booking


async def test_booking_update_checks_the_version(store: Store) -> None:
    booking = make_booking()
    assert await store.put_booking(booking, expected_version=None)
    confirmed = booking.changed(at(1), status=BookingStatus.CONFIRMED)

    assert not await store.put_booking(confirmed, expected_version=2)
    assert not await store.put_booking(confirmed, expected_version=0)
    assert await store.get_booking(booking.id) == booking

    assert await store.put_booking(confirmed, expected_version=1)
    assert await store.get_booking(booking.id) == confirmed
    # The same change again is stale now.
    assert not await store.put_booking(confirmed, expected_version=1)


async def test_booking_update_of_absent_booking_is_refused(store: Store) -> None:
    assert not await store.put_booking(make_booking(), expected_version=1)
    assert await store.get_booking("ev1") is None


@pytest.mark.parametrize(
    ("start", "end", "overlaps"),
    [
        (-60, 0, False),  # ends where the booking starts
        (60, 120, False),  # starts where the booking ends
        (-60, 1, True),
        (59, 120, True),
        (15, 45, True),  # inside
        (-60, 120, True),  # around
        (0, 60, True),  # the same
    ],
)
async def test_active_bookings_overlap_is_half_open(
    store: Store, start: float, end: float, overlaps: bool
) -> None:
    booking = make_booking(start=0, end=60)
    assert await store.put_booking(booking, expected_version=None)
    expected = [booking] if overlaps else []
    assert await store.active_bookings([ORGANIZER], at(start), at(end)) == expected


async def test_active_bookings_only_active_ones_of_that_organizer(store: Store) -> None:
    requested = make_booking("ev1", 0, 60)
    confirmed = make_booking("ev2", 60, 120, status=BookingStatus.CONFIRMED)
    cancelled = make_booking("ev3", 30, 90, status=BookingStatus.CANCELLED)
    elsewhere = make_booking("ev4", 0, 120, organizer=OTHER_ORGANIZER)
    for booking in (requested, confirmed, cancelled, elsewhere):
        assert await store.put_booking(booking, expected_version=None)

    found = await store.active_bookings([ORGANIZER], at(-60), at(180))
    assert sorted(b.id for b in found) == ["ev1", "ev2"]
    assert await store.active_bookings([OTHER_ORGANIZER], at(-60), at(180)) == [elsewhere]

    await cancel(store, requested)
    assert await store.active_bookings([ORGANIZER], at(0), at(60)) == []


async def test_active_bookings_of_several_organizers_in_one_call(store: Store) -> None:
    mine = make_booking("ev1", 60, 120)
    theirs = make_booking("ev2", 0, 90, organizer=OTHER_ORGANIZER)
    outsider = make_booking("ev3", 0, 90, organizer="someone-else")
    for booking in (mine, theirs, outsider):
        assert await store.put_booking(booking, expected_version=None)
    both = [ORGANIZER, OTHER_ORGANIZER, ORGANIZER]  # a repeat changes nothing
    assert await store.active_bookings(both, at(-60), at(180)) == [theirs, mine]
    assert await store.active_bookings([OTHER_ORGANIZER, ORGANIZER], at(95), at(100)) == [mine]
    assert await store.active_bookings([], at(-60), at(180)) == []


async def test_put_booking_releases_the_hold_and_enqueues_deliveries(store: Store) -> None:
    assert await store.acquire_hold(ORGANIZER, at(0), at(60), "hold1", ttl=60)
    booking = make_booking()
    deliveries = [make_delivery("d1"), make_delivery("d2", url=URL_B)]
    assert await store.put_booking(
        booking, expected_version=None, release_hold="hold1", deliveries=deliveries
    )
    assert await store.get_delivery("d1") == deliveries[0]
    assert await store.get_delivery("d2") == deliveries[1]
    # Once the booking is cancelled nothing blocks the range, so the hold is gone.
    await cancel(store, booking)
    assert await store.acquire_hold(ORGANIZER, at(0), at(60), "hold2", ttl=60)


async def test_put_booking_refused_keeps_the_hold_and_enqueues_nothing(store: Store) -> None:
    booking = make_booking()
    assert await store.put_booking(booking, expected_version=None)
    assert await store.acquire_hold(ORGANIZER, at(120), at(180), "hold1", ttl=60)
    stale = booking.changed(at(1), title="stale")
    assert not await store.put_booking(
        stale, expected_version=7, release_hold="hold1", deliveries=[make_delivery("d1")]
    )
    assert await store.get_delivery("d1") is None
    assert await store.list_deliveries(None, 10) == []
    assert not await store.acquire_hold(ORGANIZER, at(120), at(180), "hold2", ttl=60)


# -- holds ----------------------------------------------------------------------------------


async def test_hold_blocks_overlapping_ranges_of_the_same_organizer(store: Store) -> None:
    assert await store.acquire_hold(ORGANIZER, at(0), at(60), "h1", ttl=60)
    assert not await store.acquire_hold(ORGANIZER, at(30), at(90), "h2", ttl=60)
    assert not await store.acquire_hold(ORGANIZER, at(-30), at(1), "h3", ttl=60)
    assert not await store.acquire_hold(ORGANIZER, at(10), at(20), "h4", ttl=60)


async def test_hold_allows_touching_ranges_and_other_organizers(store: Store) -> None:
    assert await store.acquire_hold(ORGANIZER, at(0), at(60), "h1", ttl=60)
    assert await store.acquire_hold(ORGANIZER, at(60), at(120), "h2", ttl=60)
    assert await store.acquire_hold(ORGANIZER, at(-60), at(0), "h3", ttl=60)
    assert await store.acquire_hold(OTHER_ORGANIZER, at(0), at(60), "h4", ttl=60)


async def test_hold_is_refused_over_an_active_booking(store: Store) -> None:
    booking = make_booking(start=0, end=60)
    assert await store.put_booking(booking, expected_version=None)
    assert not await store.acquire_hold(ORGANIZER, at(30), at(90), "h1", ttl=60)
    assert await store.acquire_hold(ORGANIZER, at(60), at(90), "h2", ttl=60)
    await cancel(store, booking)
    assert await store.acquire_hold(ORGANIZER, at(0), at(60), "h3", ttl=60)


async def test_hold_lapses_after_its_ttl(store: Store) -> None:
    assert await store.acquire_hold(ORGANIZER, at(0), at(60), "h1", ttl=SHORT)
    await asyncio.sleep(WAIT)
    assert await store.acquire_hold(ORGANIZER, at(0), at(60), "h2", ttl=60)


async def test_a_hold_taken_again_under_its_own_id_is_renewed(store: Store) -> None:
    assert await store.acquire_hold(ORGANIZER, at(0), at(60), "h1", ttl=60)
    assert await store.acquire_hold(ORGANIZER, at(0), at(60), "h1", ttl=60)
    assert not await store.acquire_hold(ORGANIZER, at(30), at(90), "h2", ttl=60)
    # Taken again for another range, it leaves the first one.
    assert await store.acquire_hold(ORGANIZER, at(120), at(180), "h1", ttl=60)
    assert await store.acquire_hold(ORGANIZER, at(0), at(60), "h2", ttl=60)
    assert not await store.acquire_hold(ORGANIZER, at(150), at(160), "h3", ttl=60)
    # Still refused over someone else's hold or an active booking.
    assert not await store.acquire_hold(ORGANIZER, at(0), at(60), "h1", ttl=60)


async def test_hold_release(store: Store) -> None:
    assert await store.acquire_hold(ORGANIZER, at(0), at(60), "h1", ttl=60)
    await store.release_hold("h1")
    await store.release_hold("unknown")
    assert await store.acquire_hold(ORGANIZER, at(0), at(60), "h2", ttl=60)


async def test_concurrent_overlapping_holds_exactly_one_wins(store: Store) -> None:
    results = await asyncio.gather(
        *(store.acquire_hold(ORGANIZER, at(i), at(i + 60), f"h{i}", ttl=60) for i in range(20))
    )
    assert results.count(True) == 1


# -- idempotency ----------------------------------------------------------------------------


async def test_idempotency_first_begin_owns_the_key(store: Store) -> None:
    assert await store.begin_idempotent("crm", "k1", "fp1", lease=60) is None
    record = await store.begin_idempotent("crm", "k1", "fp2", lease=60)
    assert record is not None
    assert (record.caller, record.key) == ("crm", "k1")
    assert record.fingerprint == "fp1"
    assert record.state is IdempotencyState.IN_FLIGHT
    assert record.response is None
    assert_utc(record.expires_at)
    assert record.expires_at > datetime.now(UTC)


async def test_idempotency_finish_keeps_the_response(store: Store) -> None:
    response = StoredResponse(
        status=201, body='{"id":"ev1"}', headers=(("Location", "/v1/bookings/ev1"),)
    )
    assert await store.begin_idempotent("crm", "k1", "fp1", lease=60) is None
    await store.finish_idempotent("crm", "k1", response, ttl=86400)
    record = await store.begin_idempotent("crm", "k1", "fp1", lease=60)
    assert record is not None
    assert record.state is IdempotencyState.DONE
    assert record.fingerprint == "fp1"
    assert record.response == response
    assert record.expires_at > datetime.now(UTC) + timedelta(hours=23)


async def test_idempotency_abandon_frees_the_key(store: Store) -> None:
    assert await store.begin_idempotent("crm", "k1", "fp1", lease=60) is None
    await store.abandon_idempotent("crm", "k1")
    assert await store.begin_idempotent("crm", "k1", "fp2", lease=60) is None
    record = await store.begin_idempotent("crm", "k1", "fp3", lease=60)
    assert record is not None
    assert record.fingerprint == "fp2"


async def test_idempotency_abandon_leaves_a_finished_record(store: Store) -> None:
    response = StoredResponse(status=200, body="{}")
    assert await store.begin_idempotent("crm", "k1", "fp1", lease=60) is None
    await store.finish_idempotent("crm", "k1", response, ttl=60)
    await store.abandon_idempotent("crm", "k1")
    record = await store.begin_idempotent("crm", "k1", "fp1", lease=60)
    assert record is not None
    assert record.response == response


async def test_idempotency_lease_lapses(store: Store) -> None:
    assert await store.begin_idempotent("crm", "k1", "fp1", lease=SHORT) is None
    await asyncio.sleep(WAIT)
    assert await store.begin_idempotent("crm", "k1", "fp2", lease=60) is None


async def test_idempotency_finished_record_expires_after_its_ttl(store: Store) -> None:
    assert await store.begin_idempotent("crm", "k1", "fp1", lease=60) is None
    await store.finish_idempotent("crm", "k1", StoredResponse(status=201, body="{}"), ttl=SHORT)
    await asyncio.sleep(WAIT)
    assert await store.begin_idempotent("crm", "k1", "fp1", lease=60) is None


async def test_idempotency_keys_are_scoped_per_caller(store: Store) -> None:
    assert await store.begin_idempotent("crm", "k1", "fp1", lease=60) is None
    assert await store.begin_idempotent("billing", "k1", "fp1", lease=60) is None
    await store.finish_idempotent("crm", "k1", StoredResponse(status=201, body="{}"), ttl=60)
    record = await store.begin_idempotent("billing", "k1", "fp1", lease=60)
    assert record is not None
    assert record.state is IdempotencyState.IN_FLIGHT


async def test_concurrent_begin_idempotent_exactly_one_owner(store: Store) -> None:
    results = await asyncio.gather(
        *(store.begin_idempotent("crm", "k1", "fp1", lease=60) for _ in range(50))
    )
    assert results.count(None) == 1
    for record in results:
        if record is not None:
            assert record.state is IdempotencyState.IN_FLIGHT
            assert record.fingerprint == "fp1"


# -- outbox ---------------------------------------------------------------------------------


def delivered(delivery: Delivery, now: datetime = T0) -> Delivery:
    return attrs.evolve(
        delivery, status=DeliveryStatus.DELIVERED, attempts=delivery.attempts + 1, updated_at=now
    )


async def test_outbox_get_and_unknown(store: Store) -> None:
    delivery = make_delivery("d1")
    await store.enqueue_deliveries([delivery])
    got = await store.get_delivery("d1")
    assert got == delivery
    assert got is not None
    for moment in (got.next_attempt_at, got.created_at, got.updated_at):
        assert_utc(moment)
    assert await store.get_delivery("nope") is None


async def test_outbox_enqueue_of_a_known_id_is_a_no_op(store: Store) -> None:
    first = make_delivery("d1")
    await store.enqueue_deliveries([first])
    await store.enqueue_deliveries([attrs.evolve(first, payload="{}")])
    assert await store.get_delivery("d1") == first
    assert ids(await store.list_deliveries(None, 10)) == ["d1"]


async def test_outbox_claims_due_deliveries_only(store: Store) -> None:
    await store.enqueue_deliveries(
        [
            make_delivery("d1", booking_id="ev1", due=at(0)),
            make_delivery("d2", booking_id="ev2", due=at(1)),
        ]
    )
    assert ids(await store.claim_deliveries(at(-1), 10, "w1", lease=600)) == []
    assert ids(await store.claim_deliveries(at(0), 10, "w1", lease=600)) == ["d1"]
    assert ids(await store.claim_deliveries(at(1), 10, "w1", lease=600)) == ["d2"]


async def test_outbox_claims_oldest_first_up_to_the_limit(store: Store) -> None:
    await store.enqueue_deliveries([make_delivery(f"d{i}", booking_id=None) for i in range(5)])
    assert ids(await store.claim_deliveries(T0, 3, "w1", lease=30)) == ["d0", "d1", "d2"]
    assert ids(await store.claim_deliveries(T0, 3, "w1", lease=30)) == ["d3", "d4"]


@pytest.mark.parametrize("outcome", [DeliveryStatus.DELIVERED, DeliveryStatus.FAILED])
async def test_outbox_keeps_order_per_url_and_booking(
    store: Store, outcome: DeliveryStatus
) -> None:
    first, second = make_delivery("d1"), make_delivery("d2")
    await store.enqueue_deliveries([first])
    await store.enqueue_deliveries([second])

    assert ids(await store.claim_deliveries(T0, 10, "w1", lease=30)) == ["d1"]
    # d1 is claimed, and d2 may not overtake it even after d1's lease.
    assert ids(await store.claim_deliveries(T0, 10, "w2", lease=30)) == []

    done = attrs.evolve(first, status=outcome, attempts=1, updated_at=at(1))
    await store.update_delivery(done)
    assert ids(await store.claim_deliveries(at(1), 10, "w2", lease=30)) == ["d2"]


async def test_outbox_waiting_head_blocks_its_group(store: Store) -> None:
    first, second = make_delivery("d1"), make_delivery("d2")
    await store.enqueue_deliveries([first, second])
    [claimed] = await store.claim_deliveries(T0, 10, "w1", lease=30)
    retry_later = attrs.evolve(
        claimed, attempts=1, next_attempt_at=at(10), last_error="HTTP 503", updated_at=T0
    )
    await store.update_delivery(retry_later)
    assert ids(await store.claim_deliveries(at(5), 10, "w1", lease=30)) == []
    assert ids(await store.claim_deliveries(at(10), 10, "w1", lease=30)) == ["d1"]


async def test_outbox_groups_are_independent(store: Store) -> None:
    await store.enqueue_deliveries(
        [
            make_delivery("a1", url=URL_A, booking_id="ev1"),
            make_delivery("a2", url=URL_A, booking_id="ev1"),
            make_delivery("b1", url=URL_B, booking_id="ev1"),
            make_delivery("a3", url=URL_A, booking_id="ev2"),
            make_delivery("n1", url=URL_A, booking_id=None),
            make_delivery("n2", url=URL_A, booking_id=None),
        ]
    )
    claimed = await store.claim_deliveries(T0, 10, "w1", lease=30)
    assert ids(claimed) == ["a1", "b1", "a3", "n1", "n2"]


async def test_outbox_lease_hides_claimed_deliveries_until_it_lapses(store: Store) -> None:
    delivery = make_delivery("d1", booking_id=None)
    await store.enqueue_deliveries([delivery])
    assert await store.claim_deliveries(T0, 10, "w1", lease=30) == [delivery]
    assert await store.claim_deliveries(T0 + timedelta(seconds=29), 10, "w2", lease=30) == []
    reclaimed = await store.claim_deliveries(T0 + timedelta(seconds=30), 10, "w2", lease=30)
    assert reclaimed == [delivery]


async def test_outbox_update_drops_the_claim(store: Store) -> None:
    delivery = make_delivery("d1", booking_id=None)
    await store.enqueue_deliveries([delivery])
    [claimed] = await store.claim_deliveries(T0, 10, "w1", lease=300)
    retry = attrs.evolve(
        claimed,
        attempts=1,
        next_attempt_at=at(1),
        last_error="timeout",
        updated_at=T0 + timedelta(seconds=15),
    )
    await store.update_delivery(retry)
    assert await store.get_delivery("d1") == retry
    # Well inside the 300 s lease, but the update gave the claim back.
    assert await store.claim_deliveries(at(1), 10, "w2", lease=30) == [retry]


async def test_outbox_finished_deliveries_are_never_claimed(store: Store) -> None:
    delivery = make_delivery("d1", booking_id=None)
    await store.enqueue_deliveries([delivery])
    await store.update_delivery(delivered(delivery))
    assert await store.claim_deliveries(at(60), 10, "w1", lease=30) == []


async def test_pending_counts_follow_deliveries_and_operations(store: Store) -> None:
    assert await store.pending_counts() == (0, 0)
    deliveries = [make_delivery(f"d{i}", booking_id=None) for i in range(3)]
    await store.enqueue_deliveries(deliveries)
    await store.update_delivery(delivered(deliveries[0]))
    operations = [make_operation(f"op{i}", booking_id=f"ev{i}") for i in range(2)]
    for operation in operations:
        await store.add_operation(operation)
    await store.update_operation(attrs.evolve(operations[1], status=OperationStatus.FAILED))
    assert await store.pending_counts() == (2, 1)


async def test_purge_forgets_only_what_finished_before_the_cutoff(store: Store) -> None:
    cutoff = T0 - timedelta(days=7)
    old, recent = cutoff - timedelta(days=1), cutoff + timedelta(days=1)

    def aged(record: Any, created: datetime, updated: datetime, status: Any) -> Any:
        return attrs.evolve(record, created_at=created, updated_at=updated, status=status)

    deliveries = [
        aged(make_delivery("gone-1", booking_id=None), old, old, DeliveryStatus.DELIVERED),
        aged(make_delivery("gone-2", booking_id=None), old, old, DeliveryStatus.FAILED),
        aged(make_delivery("pending", booking_id=None), old, old, DeliveryStatus.PENDING),
        aged(make_delivery("retried", booking_id=None), old, recent, DeliveryStatus.FAILED),
        aged(make_delivery("new", booking_id=None), recent, recent, DeliveryStatus.DELIVERED),
    ]
    await store.enqueue_deliveries(deliveries)
    operations = [
        aged(make_operation("op-gone-1", booking_id=None), old, old, OperationStatus.SUCCEEDED),
        aged(make_operation("op-gone-2", booking_id=None), old, old, OperationStatus.FAILED),
        aged(make_operation("op-pending", booking_id=None), old, old, OperationStatus.PENDING),
        aged(make_operation("op-new", booking_id=None), recent, recent, OperationStatus.FAILED),
    ]
    for operation in operations:
        await store.add_operation(operation)

    assert await store.purge_finished(cutoff) == 4
    assert ids(await store.list_deliveries(None, 10)) == ["new", "retried", "pending"]
    for gone in ("gone-1", "gone-2"):
        assert await store.get_delivery(gone) is None
    for operation in operations:
        kept = await store.get_operation(operation.id)
        assert (kept is None) == operation.id.startswith("op-gone")
    assert await store.purge_finished(cutoff) == 0
    assert await store.pending_counts() == (1, 1)


async def test_outbox_list_by_caller(store: Store) -> None:
    # Mostly crm's, with billing's few spread among them (more than one page of the index).
    deliveries = [
        attrs.evolve(
            make_delivery(f"d{i:03d}", booking_id=None), caller="billing" if i % 50 == 0 else "crm"
        )
        for i in range(230)
    ]
    await store.enqueue_deliveries(deliveries)
    assert ids(await store.list_deliveries(None, 10, "billing")) == [
        "d200",
        "d150",
        "d100",
        "d050",
        "d000",
    ]
    assert ids(await store.list_deliveries(None, 2, "billing")) == ["d200", "d150"]
    assert len(await store.list_deliveries(DeliveryStatus.PENDING, 500, "crm")) == 225
    assert await store.list_deliveries(None, 10, "nobody") == []
    stored = await store.get_delivery("d050")
    assert stored is not None and stored.caller == "billing"


async def test_outbox_list_by_status_newest_first(store: Store) -> None:
    deliveries = [make_delivery(f"d{i}", booking_id=None) for i in range(4)]
    await store.enqueue_deliveries(deliveries)
    await store.update_delivery(delivered(deliveries[1]))
    failed = attrs.evolve(deliveries[2], status=DeliveryStatus.FAILED, last_error="HTTP 500")
    await store.update_delivery(failed)

    assert ids(await store.list_deliveries(None, 10)) == ["d3", "d2", "d1", "d0"]
    assert ids(await store.list_deliveries(None, 2)) == ["d3", "d2"]
    assert ids(await store.list_deliveries(DeliveryStatus.PENDING, 10)) == ["d3", "d0"]
    assert await store.list_deliveries(DeliveryStatus.FAILED, 10) == [failed]
    assert ids(await store.list_deliveries(DeliveryStatus.DELIVERED, 10)) == ["d1"]


# -- subscriptions --------------------------------------------------------------------------


async def test_subscriptions_add_list_delete(store: Store) -> None:
    first = Subscription(
        id="s1", url=URL_A, events=("booking.confirmed",), caller="crm", created_at=T0
    )
    second = Subscription(
        id="s2",
        url=URL_B,
        events=("booking.requested", "booking.cancelled"),
        caller="billing",
        created_at=at(1),
    )
    assert await store.list_subscriptions() == []
    await store.add_subscription(first)
    await store.add_subscription(second)
    assert await store.list_subscriptions() == [first, second]
    assert await store.delete_subscription("s1")
    assert not await store.delete_subscription("s1")
    assert await store.list_subscriptions() == [second]


# -- operations -----------------------------------------------------------------------------


async def test_operations_add_get_update(store: Store) -> None:
    operation = make_operation("op1", booking_id=None, type=OperationType.CREATE)
    await store.add_operation(operation)
    assert await store.get_operation("op1") == operation
    assert await store.get_operation("nope") is None

    [claimed] = await store.claim_operations(T0, 10, "w1", lease=300)
    assert claimed == operation
    succeeded = attrs.evolve(
        claimed,
        status=OperationStatus.SUCCEEDED,
        booking_id="ev1",
        attempts=1,
        maybe_sent=True,
        updated_at=at(1),
    )
    await store.update_operation(succeeded)
    stored = await store.get_operation("op1")
    assert stored == succeeded
    assert stored is not None
    for moment in (stored.next_attempt_at, stored.created_at, stored.updated_at):
        assert_utc(moment)
    assert await store.claim_operations(at(60), 10, "w1", lease=30) == []


async def test_an_operations_failure_and_its_webhooks_are_written_together(
    store: Store,
) -> None:
    operation = make_operation("op1", booking_id="ev1")
    await store.add_operation(operation)
    [claimed] = await store.claim_operations(T0, 10, "w1", lease=300)
    failed = attrs.evolve(claimed, status=OperationStatus.FAILED, last_error="409", attempts=1)
    notes = [make_delivery("n1", booking_id="ev1"), make_delivery("n2", url=URL_B)]
    await store.update_operation(failed, notes)
    assert await store.get_operation("op1") == failed
    assert sorted(ids(await store.list_deliveries(DeliveryStatus.PENDING, 10))) == ["n1", "n2"]
    # Written again (as after a crash before the caller learnt it was done): nothing new.
    await store.update_operation(failed, notes)
    assert len(await store.list_deliveries(None, 10)) == 2
    assert ids(await store.claim_deliveries(at(1), 10, "w1", lease=30)) == ["n1", "n2"]


async def test_operations_claim_due_only_with_lease(store: Store) -> None:
    await store.add_operation(make_operation("op1", booking_id="ev1", due=at(0)))
    await store.add_operation(make_operation("op2", booking_id="ev2", due=at(5)))
    assert ids(await store.claim_operations(at(-1), 10, "w1", lease=60)) == []
    assert ids(await store.claim_operations(at(0), 10, "w1", lease=60)) == ["op1"]
    # Still leased at +30 s; the lease lapses at +60 s.
    assert ids(await store.claim_operations(at(0.5), 10, "w2", lease=60)) == []
    assert ids(await store.claim_operations(at(1), 10, "w2", lease=60)) == ["op1"]
    assert ids(await store.claim_operations(at(5), 10, "w2", lease=60)) == ["op1", "op2"]


async def test_operations_keep_order_per_booking(store: Store) -> None:
    confirm = make_operation("op1", booking_id="ev1", type=OperationType.CONFIRM)
    cancel_op = make_operation("op2", booking_id="ev1", type=OperationType.CANCEL)
    other = make_operation("op3", booking_id="ev2")
    create_a = make_operation("op4", booking_id=None, type=OperationType.CREATE)
    create_b = make_operation("op5", booking_id=None, type=OperationType.CREATE)
    for operation in (confirm, cancel_op, other, create_a, create_b):
        await store.add_operation(operation)

    claimed = await store.claim_operations(T0, 10, "w1", lease=600)
    assert ids(claimed) == ["op1", "op3", "op4", "op5"]
    assert await store.claim_operations(at(1), 10, "w1", lease=600) == []

    retry = attrs.evolve(confirm, attempts=1, next_attempt_at=at(5), last_error="HTTP 503")
    await store.update_operation(retry)
    assert ids(await store.claim_operations(at(2), 10, "w1", lease=600)) == []
    assert ids(await store.claim_operations(at(5), 10, "w1", lease=600)) == ["op1"]

    failed = attrs.evolve(retry, status=OperationStatus.FAILED, attempts=2)
    await store.update_operation(failed)
    assert ids(await store.claim_operations(at(5), 10, "w1", lease=600)) == ["op2"]


# -- lifecycle ------------------------------------------------------------------------------


async def test_data_survives_a_restart(open_store: Callable[[], Awaitable[Store]]) -> None:
    store = await open_store()
    booking = make_booking()
    delivery = make_delivery("d1")
    operation = make_operation("op1")
    subscription = Subscription(
        id="s1", url=URL_A, events=("booking.confirmed",), caller="crm", created_at=T0
    )
    response = StoredResponse(status=201, body="{}")
    assert await store.put_booking(booking, expected_version=None, deliveries=[delivery])
    await store.add_operation(operation)
    await store.add_subscription(subscription)
    assert await store.begin_idempotent("crm", "k1", "fp1", lease=60) is None
    await store.finish_idempotent("crm", "k1", response, ttl=3600)
    assert await store.acquire_hold(OTHER_ORGANIZER, at(0), at(60), "h1", ttl=3600)
    await store.close()

    reopened = await open_store()
    assert await reopened.get_booking(booking.id) == booking
    assert await reopened.get_delivery("d1") == delivery
    assert await reopened.get_operation("op1") == operation
    assert await reopened.list_subscriptions() == [subscription]
    record = await reopened.begin_idempotent("crm", "k1", "fp1", lease=60)
    assert record is not None
    assert record.response == response
    assert not await reopened.acquire_hold(OTHER_ORGANIZER, at(0), at(60), "h2", ttl=60)
    # Order and claims carry on where they were.
    assert ids(await reopened.claim_deliveries(T0, 10, "w1", lease=30)) == ["d1"]


async def test_ping(store: Store) -> None:
    await store.ping()


async def test_closed_store_is_unavailable(store: Store) -> None:
    await store.close()
    with pytest.raises(StoreUnavailable):
        await store.ping()
    with pytest.raises(StoreUnavailable):
        await store.get_booking("ev1")
    with pytest.raises(StoreUnavailable):
        await store.put_booking(make_booking(), expected_version=None)
    await store.close()


async def test_cancelled_write_leaves_the_store_usable(store: Store) -> None:
    tasks = [
        asyncio.create_task(store.acquire_hold(ORGANIZER, at(i), at(i + 60), f"h{i}", ttl=60))
        for i in range(10)
    ]
    await asyncio.sleep(0)
    for task in tasks[::2]:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert await store.put_booking(make_booking("ev9", 600, 660), expected_version=None)
    assert await store.acquire_hold(ORGANIZER, at(700), at(760), "later", ttl=60)


# -- SQLite specifics -----------------------------------------------------------------------


async def test_sqlite_creates_missing_directories(tmp_path: Path) -> None:
    path = tmp_path / "not" / "there" / "yet.sqlite3"
    store = await SQLiteStore.open(f"sqlite:///{path}")
    try:
        await store.ping()
    finally:
        await store.close()
    assert path.is_file()


async def test_sqlite_relative_path_is_relative_to_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    store = await SQLiteStore.open("sqlite:///./data/booking-gateway.sqlite3")
    await store.close()
    assert (tmp_path / "data" / "booking-gateway.sqlite3").is_file()


@pytest.mark.parametrize("url", ["sqlite://x.db", "sqlite:///", "redis://localhost/0", ""])
async def test_sqlite_rejects_other_urls(url: str) -> None:
    with pytest.raises(ValueError, match="sqlite"):
        await SQLiteStore.open(url)


async def test_sqlite_schema_is_versioned_and_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    for _ in range(2):  # the second open finds the schema current and leaves it
        store = await SQLiteStore.open(f"sqlite:///{path}")
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    db.close()


async def test_sqlite_migrates_a_first_version_file_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    old = make_delivery("d-old")
    with sqlite3.connect(path) as db:
        for statement in MIGRATIONS[0]:
            db.execute(statement)
        db.execute("PRAGMA user_version = 1")
        db.execute(
            "INSERT INTO deliveries (id, event_type, url, payload, booking_id, status, attempts,"
            " next_attempt_us, last_error, created_us, updated_us)"
            " VALUES (?, ?, ?, ?, ?, 'pending', 0, 0, NULL, 0, 0)",
            (old.id, old.event_type, old.url, old.payload, old.booking_id),
        )
    db.close()
    store = await SQLiteStore.open(f"sqlite:///{path}")
    try:
        kept = await store.get_delivery("d-old")
        assert kept is not None
        assert (kept.payload, kept.request_id) == (old.payload, None)
        await store.enqueue_deliveries([make_delivery("d-new")])
        new = await store.get_delivery("d-new")
        assert new is not None and new.request_id == "req-d-new"
    finally:
        await store.close()
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (len(MIGRATIONS),)
    db.close()


async def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    with pytest.raises(StoreUnavailable, match="schema version"):
        await SQLiteStore.open(f"sqlite:///{path}")


async def test_sqlite_unreadable_file_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    path.write_bytes(b"this is not a database, just some bytes" * 100)
    with pytest.raises(StoreUnavailable):
        await SQLiteStore.open(f"sqlite:///{path}")


async def test_sqlite_unusable_database_surfaces_as_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "store.sqlite3"
    store = await SQLiteStore.open(f"sqlite:///{path}", busy_timeout=0.1)
    try:
        # Another process holding the write lock longer than the busy timeout.
        with sqlite3.connect(path, isolation_level=None) as other:
            other.execute("BEGIN EXCLUSIVE")
            with pytest.raises(StoreUnavailable):
                await asyncio.wait_for(store.release_hold("h1"), timeout=30)
            other.execute("ROLLBACK")
        other.close()
        await store.ping()
    finally:
        await store.close()

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
from service.store import codec
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
    SubscriptionLimitReached,
    UnresolvedCreate,
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
    caller: str | None = "crm",
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
        caller=caller,
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
        trace_context=f"00-{delivery_id.encode().hex():0>32}-00f067aa0ba902b7-01",
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
        trace_context=f"00-{operation_id.encode().hex():0>32}-b7ad6b7169203331-01",
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


async def test_booking_marks_change_with_every_write_of_that_organizer(store: Store) -> None:
    assert await store.booking_marks([ORGANIZER, OTHER_ORGANIZER]) == ("", "")
    seen: set[str] = set()

    async def marks_after(write: Awaitable[bool]) -> tuple[str, str]:
        assert await write
        mine, theirs = await store.booking_marks([ORGANIZER, OTHER_ORGANIZER])
        assert mine not in seen, "a mark came back"
        seen.add(mine)
        return mine, theirs

    booking = make_booking("ev1", 0, 60)
    created, theirs = await marks_after(store.put_booking(booking, expected_version=None))
    assert created != "" and theirs == ""
    confirmed = booking.changed(T0, status=BookingStatus.CONFIRMED)
    await marks_after(store.put_booking(confirmed, expected_version=booking.version))
    moved = confirmed.changed(T0, start=at(120), end=at(180))
    await marks_after(store.put_booking(moved, expected_version=confirmed.version))
    cancelled = moved.changed(T0, status=BookingStatus.CANCELLED)
    _, theirs = await marks_after(store.put_booking(cancelled, expected_version=moved.version))
    assert theirs == "", "another organizer's bookings did not change"
    # Asked in any order, with repeats: each answer is that organizer's mark.
    mine = await store.booking_marks([ORGANIZER])
    assert await store.booking_marks([OTHER_ORGANIZER, ORGANIZER, ORGANIZER]) == ("", *mine * 2)
    assert await store.booking_marks([]) == ()


async def test_booking_marks_change_for_a_found_create_and_both_organizers_of_a_move(
    store: Store, open_store: Callable[[], Awaitable[Store]]
) -> None:
    assert await store.add_unresolved(make_unresolved())
    booking = make_booking("ev1", 0, 60)
    assert await store.finish_unresolved("u1", booking=booking)
    (found,) = await store.booking_marks([ORGANIZER])
    assert found != ""
    handed_over = booking.changed(T0, organizer=OTHER_ORGANIZER)
    assert await store.put_booking(handed_over, expected_version=booking.version)
    mine, theirs = await store.booking_marks([ORGANIZER, OTHER_ORGANIZER])
    assert mine not in ("", found) and theirs not in ("", found)
    # Reopened (a restart), a write still gives a mark never seen before.
    reopened = await open_store()
    cancelled = handed_over.changed(T0, status=BookingStatus.CANCELLED)
    assert await reopened.put_booking(cancelled, expected_version=handed_over.version)
    (after,) = await reopened.booking_marks([OTHER_ORGANIZER])
    assert after not in ("", found, mine, theirs)


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


async def test_a_reschedule_hold_ignores_only_its_own_booking(store: Store) -> None:
    moving = make_booking("ev1", 0, 60)
    other = make_booking("ev2", 120, 180)
    for booking in (moving, other):
        assert await store.put_booking(booking, expected_version=None)
    # 10:00-11:00 moves to 10:30-11:30: its own time is free for it, and for it alone.
    assert not await store.acquire_hold(ORGANIZER, at(30), at(90), "r1", ttl=60)
    assert await store.acquire_hold(ORGANIZER, at(30), at(90), "r1", ttl=60, ignore_booking="ev1")
    # Another booking's time is not, nor a hold already taken.
    assert not await store.acquire_hold(
        ORGANIZER, at(100), at(130), "r2", ttl=60, ignore_booking="ev1"
    )
    assert not await store.acquire_hold(
        ORGANIZER, at(80), at(100), "r3", ttl=60, ignore_booking="ev1"
    )
    assert not await store.acquire_hold(ORGANIZER, at(85), at(95), "c1", ttl=60)
    # Written with its hold released, the old time is free at once; the new one is taken.
    moved = moving.changed(T0, start=at(30), end=at(90))
    assert await store.put_booking(moved, expected_version=1, release_hold="r1")
    assert await store.acquire_hold(ORGANIZER, at(0), at(30), "c2", ttl=60)
    assert not await store.acquire_hold(ORGANIZER, at(60), at(90), "c3", ttl=60)


async def test_concurrent_reschedules_and_a_create_into_one_slot_one_wins(store: Store) -> None:
    for i, start in enumerate((0, 120, 240)):
        assert await store.put_booking(
            make_booking(f"ev{i}", start, start + 60), expected_version=None
        )
    attempts = [
        store.acquire_hold(ORGANIZER, at(60), at(120), "m0", ttl=60, ignore_booking="ev0"),
        store.acquire_hold(ORGANIZER, at(61), at(121), "m1", ttl=60, ignore_booking="ev1"),
        store.acquire_hold(ORGANIZER, at(90), at(100), "create", ttl=60),
    ]
    assert (await asyncio.gather(*attempts)).count(True) == 1


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


def make_subscription(
    sub_id: str,
    *,
    caller: str = "crm",
    url: str = URL_A,
    events: tuple[str, ...] = ("booking.confirmed",),
) -> Subscription:
    return Subscription(id=sub_id, url=url, events=events, caller=caller, created_at=T0)


async def test_subscriptions_list_per_caller_in_order(store: Store) -> None:
    mine = [make_subscription("s1"), make_subscription("s3", url=URL_B)]
    theirs = make_subscription("s2", caller="billing")
    for sub in (mine[0], theirs, mine[1]):
        assert await store.add_subscription(sub) == (sub, True)
    assert await store.list_subscriptions("crm") == mine
    assert await store.list_subscriptions("billing") == [theirs]
    assert await store.list_subscriptions("nobody") == []
    assert await store.list_subscriptions() == [mine[0], theirs, mine[1]]
    assert await store.delete_subscription("s1")
    assert await store.list_subscriptions("crm") == [mine[1]]


async def test_an_identical_subscription_answers_the_existing_one(store: Store) -> None:
    first = make_subscription("s1", events=("booking.confirmed", "booking.cancelled"))
    assert await store.add_subscription(first, limit=5) == (first, True)
    # Same caller, URL and events (in another order, repeated): the stored one comes back.
    again = make_subscription(
        "s2", events=("booking.cancelled", "booking.confirmed", "booking.cancelled")
    )
    assert await store.add_subscription(again, limit=5) == (first, False)
    # Another caller, URL or set of events is a subscription of its own.
    others = [
        make_subscription("s3", caller="billing", events=first.events),
        make_subscription("s4", url=URL_B, events=first.events),
        make_subscription("s5", events=("booking.confirmed",)),
    ]
    for sub in others:
        assert await store.add_subscription(sub, limit=5) == (sub, True)
    assert [sub.id for sub in await store.list_subscriptions()] == ["s1", "s3", "s4", "s5"]
    # Once deleted, the same one can be added again.
    assert await store.delete_subscription("s1")
    assert await store.add_subscription(again, limit=5) == (again, True)


async def test_subscription_limit_is_per_caller(store: Store) -> None:
    for i in range(3):
        await store.add_subscription(make_subscription(f"s{i}", url=f"{URL_A}/{i}"), limit=3)
    with pytest.raises(SubscriptionLimitReached):
        await store.add_subscription(make_subscription("s9", url=f"{URL_A}/9"), limit=3)
    # At the limit an identical one still answers the existing one; others' are not counted.
    existing = make_subscription("s0", url=f"{URL_A}/0")
    assert await store.add_subscription(make_subscription("sx", url=f"{URL_A}/0"), limit=3) == (
        existing,
        False,
    )
    other = make_subscription("b1", caller="billing")
    assert await store.add_subscription(other, limit=3) == (other, True)
    # Freeing one makes room again.
    assert await store.delete_subscription("s1")
    assert (await store.add_subscription(make_subscription("s9", url=f"{URL_A}/9"), limit=3))[1]
    assert len(await store.list_subscriptions("crm")) == 3


async def test_concurrent_subscription_adds_never_pass_the_limit(store: Store) -> None:
    adds = [
        store.add_subscription(make_subscription(f"s{i}", url=f"{URL_A}/{i}"), limit=4)
        for i in range(12)
    ]
    duplicates = [
        store.add_subscription(make_subscription(f"d{i}", caller="billing"), limit=100)
        for i in range(6)
    ]
    results = await asyncio.gather(*adds, *duplicates, return_exceptions=True)
    added = [r for r in results[:12] if isinstance(r, tuple)]
    assert len(added) == 4
    assert sum(isinstance(r, SubscriptionLimitReached) for r in results[:12]) == 8
    assert len(await store.list_subscriptions("crm")) == 4
    # Of the identical ones exactly one was stored; the others answered it.
    (kept,) = await store.list_subscriptions("billing")
    assert sorted(r[1] for r in results[12:] if isinstance(r, tuple)) == [False] * 5 + [True]
    assert all(r[0] == kept for r in results[12:] if isinstance(r, tuple))


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


# -- listing --------------------------------------------------------------------------------


async def walk(store: Store, limit: int, **filters: Any) -> list[Booking]:
    """Every booking a paged listing hands out, page after page, checking each page."""
    seen: list[Booking] = []
    after: tuple[datetime, str] | None = None
    for _ in range(1000):
        page = await store.list_bookings(after=after, limit=limit, **filters)
        assert len(page.bookings) <= limit
        keys = [(b.start, b.id) for b in page.bookings]
        assert keys == sorted(keys)
        if after is not None:
            assert all(key > after for key in keys)
        seen += page.bookings
        if page.next_after is None:
            return seen
        assert page.next_after >= max(keys, default=page.next_after)
        after = page.next_after
    raise AssertionError("the listing never ended")


def listing_ids(bookings: list[Booking]) -> list[str]:
    return [booking.id for booking in bookings]


async def put_all(store: Store, *bookings: Booking) -> None:
    for booking in bookings:
        assert await store.put_booking(booking, expected_version=None)


async def test_listing_is_ordered_by_start_then_id_in_keyset_pages(store: Store) -> None:
    # Ties on start are ordered by id; ids given out of order.
    starts = {"ev5": 60, "ev1": 60, "ev3": 0, "ev2": 120, "ev4": 60, "ev0": -30}
    await put_all(store, *(make_booking(i, s, s + 30) for i, s in starts.items()))
    expected = sorted(starts, key=lambda i: (starts[i], i))
    assert expected == ["ev0", "ev3", "ev1", "ev4", "ev5", "ev2"]
    for limit in (1, 2, 4, 6, 50):
        assert listing_ids(await walk(store, limit, caller=None)) == expected
    first = await store.list_bookings(caller=None, limit=2)
    assert listing_ids(first.bookings) == ["ev0", "ev3"]
    assert first.next_after == (at(0), "ev3")
    # A page that ends exactly at the last booking says so.
    whole = await store.list_bookings(caller=None, limit=6)
    assert len(whole.bookings) == 6 and whole.next_after is None
    # The listing is of whole records, owner included.
    assert whole.bookings[0] == make_booking("ev0", -30, 0)


async def test_listing_shows_a_caller_its_own_and_admins_everything(store: Store) -> None:
    await put_all(
        store,
        make_booking("a1", 0, 30, caller="crm"),
        make_booking("b1", 10, 40, caller="billing", organizer=OTHER_ORGANIZER),
        make_booking("u1", 20, 50, caller=None, organizer=OTHER_ORGANIZER),
        make_booking("a2", 30, 60, caller="crm", organizer=OTHER_ORGANIZER),
    )
    assert listing_ids(await walk(store, 10, caller="crm")) == ["a1", "a2"]
    assert listing_ids(await walk(store, 10, caller="billing")) == ["b1"]
    assert listing_ids(await walk(store, 10, caller="nobody")) == []
    # Unowned (adopted) bookings are for admins only.
    assert listing_ids(await walk(store, 10, caller=None)) == ["a1", "b1", "u1", "a2"]
    unowned = await store.get_booking("u1")
    assert unowned is not None and unowned.caller is None
    owned = await store.get_booking("b1")
    assert owned is not None and owned.caller == "billing"


async def test_listing_filters_by_organizer_status_and_start_range(store: Store) -> None:
    jane = "Jane.Doe@Example.com"
    await put_all(
        store,
        make_booking("e1", 0, 30),
        make_booking("e2", 30, 60, organizer=jane),
        make_booking("e3", 60, 90, organizer=jane, status=BookingStatus.CONFIRMED),
        make_booking("e4", 90, 120, status=BookingStatus.CANCELLED),
        make_booking("e5", 120, 150, organizer=jane, status=BookingStatus.CANCELLED),
    )
    for spelling in (jane, jane.lower(), jane.upper()):
        assert listing_ids(await walk(store, 2, caller="crm", organizer=spelling)) == [
            "e2",
            "e3",
            "e5",
        ]
    active = [BookingStatus.REQUESTED, BookingStatus.CONFIRMED]
    assert listing_ids(await walk(store, 2, caller="crm", statuses=active)) == ["e1", "e2", "e3"]
    cancelled = [BookingStatus.CANCELLED]
    assert listing_ids(await walk(store, 1, caller=None, statuses=cancelled)) == ["e4", "e5"]
    assert listing_ids(
        await walk(store, 2, caller="crm", organizer=jane, statuses=[BookingStatus.CANCELLED])
    ) == ["e5"]
    assert listing_ids(await walk(store, 2, caller="crm", statuses=[])) == [
        "e1",
        "e2",
        "e3",
        "e4",
        "e5",
    ]
    # from <= start < to
    assert listing_ids(await walk(store, 2, caller="crm", start_from=at(30), start_to=at(90))) == [
        "e2",
        "e3",
    ]
    assert listing_ids(await walk(store, 2, caller="crm", start_from=at(31))) == ["e3", "e4", "e5"]
    assert listing_ids(await walk(store, 2, caller="crm", start_to=at(30))) == ["e1"]
    assert listing_ids(await walk(store, 2, caller="crm", start_from=at(90), start_to=at(90))) == []
    # Every filter at once.
    assert listing_ids(
        await walk(
            store,
            1,
            caller="crm",
            organizer=jane,
            statuses=active,
            start_from=at(30),
            start_to=at(61),
        )
    ) == ["e2", "e3"]


async def test_listing_follows_status_changes_owners_and_reschedules(store: Store) -> None:
    first, second = make_booking("e1", 0, 30), make_booking("e2", 60, 90)
    await put_all(store, first, second)
    await cancel(store, first)
    cancelled = [BookingStatus.CANCELLED]
    assert listing_ids(await walk(store, 5, caller="crm", statuses=cancelled)) == ["e1"]
    requested = [BookingStatus.REQUESTED]
    assert listing_ids(await walk(store, 5, caller="crm", statuses=requested)) == ["e2"]
    # Moved earlier: listed at its new start, once.
    moved = second.changed(T0, start=at(-60), end=at(-30))
    assert await store.put_booking(moved, expected_version=1)
    assert listing_ids(await walk(store, 1, caller="crm")) == ["e2", "e1"]
    assert listing_ids(await walk(store, 5, caller="crm", start_from=at(0))) == ["e1"]
    # Another organizer's: it leaves the first organizer's listing.
    handed = moved.changed(T0, organizer=OTHER_ORGANIZER)
    assert await store.put_booking(handed, expected_version=2)
    assert listing_ids(await walk(store, 5, caller="crm", organizer=ORGANIZER)) == ["e1"]
    assert listing_ids(await walk(store, 5, caller="crm", organizer=OTHER_ORGANIZER)) == ["e2"]


async def test_listing_pages_stay_stable_while_bookings_are_written(store: Store) -> None:
    existing = [make_booking(f"ev{i:02d}", i * 10, i * 10 + 5) for i in range(12)]
    await put_all(store, *existing)
    seen: list[Booking] = []
    after: tuple[datetime, str] | None = None
    for round_ in range(100):
        page = await store.list_bookings(caller="crm", after=after, limit=3)
        seen += page.bookings
        # Between pages: new bookings before and after the cursor, at the same start as
        # existing ones, and status changes of existing ones.
        await put_all(
            store,
            make_booking(f"new-a{round_}", -100 + round_, 0),
            make_booking(f"new-b{round_}", round_ * 10 + 1, 200),
            make_booking(f"ev{round_:02d}x", round_ * 10, round_ * 10 + 5),
        )
        if round_ < len(existing):
            changed = existing[round_].changed(T0, status=BookingStatus.CONFIRMED)
            assert await store.put_booking(changed, expected_version=1)
        if page.next_after is None:
            break
        after = page.next_after
    listed = listing_ids(seen)
    assert len(listed) == len(set(listed))
    for booking in existing:
        assert listed.count(booking.id) == 1
    keys = [(b.start, b.id) for b in seen]
    assert keys == sorted(keys)


async def test_listing_with_no_room_lists_nothing(store: Store) -> None:
    await put_all(store, make_booking("e1"))
    page = await store.list_bookings(caller=None, limit=0)
    assert page.bookings == []


# -- resync ---------------------------------------------------------------------------------


async def test_resync_hands_each_active_booking_out_once_per_interval(store: Store) -> None:
    now = at(0)
    await put_all(
        store,
        make_booking("live1", 30, 90),
        make_booking("live2", -30, 30, status=BookingStatus.CONFIRMED),  # under way
        make_booking("live3", 600, 660),
        make_booking("gone", 60, 120, status=BookingStatus.CANCELLED),
        make_booking("ended", -120, -60),
        make_booking("ending", -60, 0),  # ends right now: over
    )
    handed = await store.claim_resync(now, 10, "r1", interval=300)
    assert sorted(listing_ids(handed)) == ["live1", "live2", "live3"]
    assert handed[0] == await store.get_booking(handed[0].id)
    # Not again within the interval, to anyone.
    assert await store.claim_resync(now, 10, "r1", interval=300) == []
    assert await store.claim_resync(now + timedelta(seconds=299), 10, "r2", interval=300) == []
    later = now + timedelta(seconds=300)
    assert sorted(listing_ids(await store.claim_resync(later, 10, "r2", interval=300))) == [
        "live1",
        "live2",
        "live3",
    ]
    # Once it ended, a booking is no longer re-read.
    much_later = at(100)
    assert listing_ids(await store.claim_resync(much_later, 10, "r1", interval=300)) == ["live3"]


async def test_resync_spreads_by_limit_least_recently_handed_first(store: Store) -> None:
    await put_all(store, *(make_booking(f"ev{i}", 60 + i, 120 + i) for i in range(5)))
    now = at(0)
    first = await store.claim_resync(now, 2, "r1", interval=60)
    second = await store.claim_resync(now + timedelta(seconds=1), 2, "r2", interval=60)
    third = await store.claim_resync(now + timedelta(seconds=2), 2, "r1", interval=60)
    assert [len(first), len(second), len(third)] == [2, 2, 1]
    assert sorted(listing_ids(first + second + third)) == [f"ev{i}" for i in range(5)]
    # After the interval the ones handed out first come first.
    again = await store.claim_resync(now + timedelta(seconds=61), 2, "r2", interval=60)
    assert listing_ids(again) == listing_ids(first)
    assert await store.claim_resync(now + timedelta(seconds=61), 0, "r2", interval=60) == []


async def test_concurrent_resync_claims_hand_each_booking_to_one(store: Store) -> None:
    await put_all(store, *(make_booking(f"ev{i}", 60 + i, 120 + i) for i in range(20)))
    claims = await asyncio.gather(
        *(store.claim_resync(at(0), 3, f"r{i}", interval=300) for i in range(10))
    )
    handed = [booking.id for batch in claims for booking in batch]
    assert sorted(handed) == sorted(f"ev{i}" for i in range(20))


async def test_resync_picks_up_a_booking_moved_into_the_future(store: Store) -> None:
    old = make_booking("ev1", -120, -60)
    await put_all(store, old)
    assert await store.claim_resync(at(0), 10, "r1", interval=300) == []
    moved = old.changed(T0, start=at(60), end=at(120))
    assert await store.put_booking(moved, expected_version=1)
    assert await store.claim_resync(at(0), 10, "r1", interval=300) == [moved]


async def test_resync_interval_must_be_positive(store: Store) -> None:
    with pytest.raises(ValueError, match="interval"):
        await store.claim_resync(at(0), 10, "r1", interval=0)


# -- unresolved creates -----------------------------------------------------------------------


def make_unresolved(
    record_id: str = "u1",
    *,
    hold_id: str = "hold-u1",
    start: float = 0,
    end: float = 60,
    key: str | None = "key-1",
    due: datetime = T0,
) -> UnresolvedCreate:
    return UnresolvedCreate(
        id=record_id,
        caller="crm",
        command='{"title":"Meeting with Quentin Tarantino"}',
        idempotency_key=key,
        hold_id=hold_id,
        organizer=ORGANIZER,
        start=at(start),
        end=at(end),
        deadline=T0 + timedelta(minutes=10),
        next_check_at=due,
        attempts=0,
        last_error=None,
        created_at=T0 - timedelta(seconds=1),
        updated_at=T0 - timedelta(seconds=1),
        request_id=f"req-{record_id}",
        trace_context="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )


async def test_unresolved_create_is_kept_with_its_hold_tied_to_it(store: Store) -> None:
    record = make_unresolved()
    assert await store.acquire_hold(ORGANIZER, at(0), at(60), record.hold_id, ttl=SHORT)
    assert await store.add_unresolved(record)
    assert await store.get_unresolved("u1") == record
    assert await store.get_unresolved("nope") is None
    await asyncio.sleep(WAIT)
    # Past the hold's own ttl the time is still held, and taking it again under its own id
    # (a retry) does not start it lapsing.
    assert not await store.acquire_hold(ORGANIZER, at(30), at(40), "other", ttl=60)
    assert await store.acquire_hold(ORGANIZER, at(0), at(60), record.hold_id, ttl=SHORT)
    await asyncio.sleep(WAIT)
    assert not await store.acquire_hold(ORGANIZER, at(30), at(40), "other", ttl=60)
    # Adding it again changes nothing.
    assert await store.add_unresolved(attrs.evolve(record, attempts=5))
    assert await store.get_unresolved("u1") == record


async def test_unresolved_create_takes_its_lapsed_hold_back_when_free(store: Store) -> None:
    lapsed = make_unresolved("u1", hold_id="h1", start=0, end=60)
    assert await store.acquire_hold(ORGANIZER, at(0), at(60), "h1", ttl=SHORT)
    await asyncio.sleep(WAIT)
    assert await store.add_unresolved(lapsed)
    assert not await store.acquire_hold(ORGANIZER, at(0), at(60), "other", ttl=60)
    # Lost meanwhile to another hold: recorded all the same, but not held.
    assert await store.acquire_hold(ORGANIZER, at(120), at(180), "winner", ttl=60)
    lost = make_unresolved("u2", hold_id="h2", start=150, end=210)
    assert not await store.add_unresolved(lost)
    assert await store.get_unresolved("u2") == lost
    # It holds nothing: the rest of its time is anyone's.
    assert await store.acquire_hold(ORGANIZER, at(190), at(200), "third", ttl=60)


async def test_unresolved_creates_are_claimed_by_one_reconciler_at_a_time(store: Store) -> None:
    for record in (
        make_unresolved("u1", hold_id="h1", start=0, end=60),
        make_unresolved("u2", hold_id="h2", start=60, end=120, due=at(5)),
        make_unresolved("u3", hold_id="h3", start=120, end=180),
    ):
        await store.add_unresolved(record)
    claimed = await store.claim_unresolved(T0, 10, "r1", lease=60)
    assert [r.id for r in claimed] == ["u1", "u3"]
    assert await store.claim_unresolved(T0, 10, "r2", lease=60) == []
    # A look that decided nothing: saved, claim dropped, due again later.
    seconds = [T0 + timedelta(seconds=n) for n in range(100)]
    looked = attrs.evolve(
        claimed[0], attempts=1, next_check_at=seconds[10], last_error="not yet", updated_at=T0
    )
    await store.update_unresolved(looked)
    assert await store.get_unresolved("u1") == looked
    assert await store.claim_unresolved(seconds[5], 10, "r2", lease=60) == []
    assert [r.id for r in await store.claim_unresolved(seconds[10], 10, "r2", lease=60)] == ["u1"]
    assert await store.claim_unresolved(seconds[30], 10, "r3", lease=60) == []
    # A lapsed lease lets another reconciler take it over.
    assert [r.id for r in await store.claim_unresolved(seconds[61], 10, "r3", lease=60)] == ["u3"]
    due = await store.claim_unresolved(at(5), 10, "r3", lease=60)
    assert [r.id for r in due] == ["u1", "u2", "u3"]


async def test_concurrent_unresolved_claims_hand_each_record_to_one(store: Store) -> None:
    for i in range(12):
        await store.add_unresolved(
            make_unresolved(f"u{i}", hold_id=f"h{i}", start=i * 60, end=i * 60 + 60)
        )
    claims = await asyncio.gather(
        *(store.claim_unresolved(T0, 2, f"r{i}", lease=60) for i in range(8))
    )
    handed = [r.id for batch in claims for r in batch]
    assert sorted(handed) == sorted(f"u{i}" for i in range(12))


async def test_finishing_a_found_create_writes_the_booking_in_one_step(store: Store) -> None:
    record = make_unresolved(key="key-1")
    assert await store.begin_idempotent("crm", "key-1", "fp", lease=600) is None
    assert await store.add_unresolved(record)
    booking = make_booking("ev1", 0, 60)
    delivery = make_delivery("d1")
    response = StoredResponse(status=201, body='{"id":"ev1"}')
    assert await store.finish_unresolved(
        "u1", booking=booking, deliveries=[delivery], response=response
    )
    assert await store.get_unresolved("u1") is None
    assert await store.get_booking("ev1") == booking
    assert await store.get_delivery("d1") == delivery
    kept = await store.begin_idempotent("crm", "key-1", "fp", lease=600)
    assert kept is not None and kept.state == IdempotencyState.DONE and kept.response == response
    # The hold is gone; the booking itself now keeps the time.
    assert not await store.acquire_hold(ORGANIZER, at(0), at(60), "other", ttl=60)
    await cancel(store, booking)
    assert await store.acquire_hold(ORGANIZER, at(0), at(60), "other", ttl=60)
    assert not await store.finish_unresolved("u1")


async def test_finishing_an_absent_create_lets_its_time_go(store: Store) -> None:
    assert await store.add_unresolved(make_unresolved())
    assert not await store.acquire_hold(ORGANIZER, at(0), at(60), "other", ttl=60)
    assert await store.finish_unresolved("u1")
    assert await store.get_unresolved("u1") is None
    assert await store.claim_unresolved(T0, 10, "r1", lease=60) == []
    assert await store.acquire_hold(ORGANIZER, at(0), at(60), "other", ttl=60)
    assert not await store.finish_unresolved("u1")


async def test_finishing_with_a_stale_version_changes_nothing(store: Store) -> None:
    assert await store.add_unresolved(make_unresolved())
    adopted = make_booking("ev1", 0, 60, caller=None)
    await put_all(store, adopted)
    mine = attrs.evolve(adopted.changed(T0), caller="crm")
    assert not await store.finish_unresolved("u1", booking=mine, expected_version=None)
    assert await store.get_unresolved("u1") is not None
    assert await store.get_booking("ev1") == adopted
    assert await store.finish_unresolved("u1", booking=mine, expected_version=1)
    assert await store.get_booking("ev1") == mine


async def test_unresolved_creates_survive_a_restart(
    open_store: Callable[[], Awaitable[Store]],
) -> None:
    store = await open_store()
    record = make_unresolved()
    assert await store.add_unresolved(record)
    await store.close()
    reopened = await open_store()
    assert await reopened.get_unresolved("u1") == record
    assert not await reopened.acquire_hold(ORGANIZER, at(0), at(60), "other", ttl=60)
    assert [r.id for r in await reopened.claim_unresolved(T0, 10, "r1", lease=60)] == ["u1"]


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


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store.sqlite3"


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


async def test_sqlite_migrates_a_second_version_file_to_owners_and_listing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "store.sqlite3"
    owned, unowned = make_booking("ev1", 0, 60), make_booking("ev2", 30, 90, caller=None)
    subscription = Subscription(
        id="s1", url=URL_A, events=("booking.confirmed",), caller="crm", created_at=T0
    )
    with sqlite3.connect(path) as db:
        for statement in MIGRATIONS[0] + MIGRATIONS[1]:
            db.execute(statement)
        db.execute("PRAGMA user_version = 2")
        for booking in (owned, unowned):
            db.execute(
                "INSERT INTO bookings (id, organizer, start_us, end_us, status, version, record)"
                " VALUES (?, ?, ?, ?, 'requested', 1, ?)",
                (
                    booking.id,
                    booking.organizer.upper(),
                    codec.to_us(booking.start),
                    codec.to_us(booking.end),
                    codec.dumps(booking),
                ),
            )
        db.execute(
            "INSERT INTO subscriptions (id, url, events, caller, created_us)"
            " VALUES ('s1', ?, '[\"booking.confirmed\"]', 'crm', ?)",
            (URL_A, codec.to_us(T0)),
        )
        db.execute(
            "INSERT INTO operations (id, type, status, caller, booking_id, request, attempts,"
            " maybe_sent, next_attempt_us, created_us, updated_us)"
            " VALUES ('op1', 'confirm', 'pending', 'crm', 'ev1', '{}', 0, 0, 0, 0, 0)"
        )
    db.close()
    store = await SQLiteStore.open(f"sqlite:///{path}")
    try:
        # Owners come from the records; the one without is for admins only.
        assert listing_ids(await walk(store, 1, caller="crm")) == ["ev1"]
        assert listing_ids(await walk(store, 1, caller=None)) == ["ev1", "ev2"]
        assert listing_ids(await walk(store, 1, caller=None, organizer=ORGANIZER)) == [
            "ev1",
            "ev2",
        ]
        # Both are due for a resync; what was there keeps working.
        handed = await store.claim_resync(at(0), 10, "r1", interval=300)
        assert sorted(listing_ids(handed)) == ["ev1", "ev2"]
        assert await store.list_subscriptions("crm") == [subscription]
        assert await store.add_subscription(attrs.evolve(subscription, id="s2")) == (
            subscription,
            False,
        )
        operation = await store.get_operation("op1")
        assert operation is not None and operation.trace_context is None
    finally:
        await store.close()


async def test_sqlite_listing_and_resync_read_through_indexes(store_path: Path) -> None:
    store = await SQLiteStore.open(f"sqlite:///{store_path}")
    statements: list[str] = []
    try:
        await put_all(store, *(make_booking(f"ev{i}", i, i + 30) for i in range(20)))
        assert store._db is not None
        await store._db.set_trace_callback(statements.append)
        after = (at(3), "ev3")
        requested = [BookingStatus.REQUESTED]
        await store.list_bookings(caller="crm", statuses=requested, start_from=at(1), limit=5)
        await store.list_bookings(caller="crm", after=after, start_to=at(10), limit=5)
        await store.list_bookings(caller=None, organizer="Jane@Example.com", limit=5)
        await store.list_bookings(caller=None, after=after, limit=5)
        await store.claim_resync(at(0), 5, "r1", interval=60)
        await store._db.set_trace_callback(None)
    finally:
        await store.close()
    reads = [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert len(reads) >= 5
    with sqlite3.connect(store_path) as db:
        for statement in reads:
            plan = " / ".join(row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {statement}"))
            assert "USING INDEX" in plan or "USING COVERING INDEX" in plan, (statement, plan)
            assert "TEMP B-TREE" not in plan, (statement, plan)
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

"""AvailabilityService reuses a whole answer only while it is still the answer: the same
booking marks, every participant's free time still cached, and no start it offers (or would
offer) now inside `notice` or past."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, cast

import pytest

from service import availability
from service.availability import AvailabilityService
from service.commands import AvailabilityQuery
from service.domain.booking import Booking
from service.domain.participant import Participant
from service.store.base import Store
from service.vyte import errors as vyte_errors
from service.vyte.client import VyteClient
from tests.dates import in_days

TTL = 30.0
DAY = in_days(3)
MIDNIGHT = datetime.combine(DAY, time(0), UTC)


class WholeDays:
    """Every participant is free all of every asked day (UTC); `down` ones are unavailable."""

    def __init__(self) -> None:
        self.calls = 0
        self.down: set[str] = set()

    async def slot_windows(self, *, first: date, last: date, **who: str) -> list[tuple[str, str]]:
        self.calls += 1
        if set(who.values()) & self.down:
            raise vyte_errors.VyteUnavailable("Vyte is down", retry_after=None)
        start = datetime.combine(first, time(0), UTC)
        end = datetime.combine(last + timedelta(days=1), time(0), UTC)
        return [(start.isoformat(), end.isoformat())]


class MarkedStore:
    """No bookings; a mark per organizer that a test can change, and the reads: a count, and
    whose bookings over which days each read asked for."""

    def __init__(self) -> None:
        self.marks: dict[str, str] = {}
        self.reads = 0
        self.asked: list[tuple[set[str], date, date]] = []

    async def booking_marks(self, organizers: Sequence[str]) -> tuple[str, ...]:
        return tuple(self.marks.get(o, "") for o in organizers)

    async def active_bookings(
        self, organizers: Collection[str], start: datetime, end: datetime
    ) -> list[Booking]:
        self.reads += 1
        self.asked.append((set(organizers), start.date(), end.date()))
        return []


class World:
    def __init__(self) -> None:
        self.vyte = WholeDays()
        self.store = MarkedStore()
        self.clock = 1000.0
        # Just over an hour before the day's first start: with notice=60 it is offered.
        self.now = MIDNIGHT - timedelta(minutes=60, seconds=10)
        self.service = AvailabilityService(
            cast(VyteClient, self.vyte),
            cast(Store, self.store),
            cache_ttl=TTL,
            clock=lambda: self.clock,
            now=lambda: self.now,
        )

    async def ask(self, *people: str, **options: Any) -> Any:
        q = AvailabilityQuery(
            participants=tuple(Participant(p) for p in people or ("ann@example.com",)),
            duration=30,
            first=options.pop("first", DAY),
            last=options.pop("last", DAY),
            timezone="UTC",
            step=30,
            required=1,
            partial=options.pop("partial", False),
            notice=options.pop("notice", 60),
            **options,
        )
        return await self.service.query(q)


@pytest.fixture
def world() -> World:
    return World()


async def test_the_same_query_gets_the_same_answer_without_any_read(world: World) -> None:
    first = await world.ask()
    assert first.slots[0].start == int(MIDNIGHT.timestamp())
    assert await world.ask() is first
    assert (world.vyte.calls, world.store.reads) == (1, 1)
    # Another query (another duration, notice, order) is computed, from the cached free time
    # and the own bookings read under the same marks.
    other = await world.ask(notice=0, order="best")
    assert other is not first and (world.vyte.calls, world.store.reads) == (1, 1)


async def test_an_answer_ends_when_now_plus_notice_passes_its_first_start(world: World) -> None:
    first = await world.ask()
    world.now += timedelta(seconds=10)  # now + notice is the first start: still offered
    assert await world.ask() is first
    world.now += timedelta(seconds=1)
    later = await world.ask()
    assert later is not first and world.store.reads == 1
    assert later.slots[0].start == int(MIDNIGHT.timestamp()) + 1800
    assert later.slots == first.slots[1:]


async def test_an_answer_with_no_start_left_lasts_until_the_free_time_expires(
    world: World,
) -> None:
    world.now = MIDNIGHT + timedelta(days=2)  # the whole day is past
    empty = await world.ask()
    assert empty.slots == []
    world.now += timedelta(days=1)
    assert await world.ask() is empty
    world.clock += TTL
    assert await world.ask() is not empty and world.vyte.calls == 2


async def test_a_changed_mark_or_an_expired_participant_recomputes(world: World) -> None:
    both = ("ann@example.com", "bob@example.com")
    first = await world.ask(*both)
    world.clock += 10
    world.store.marks["bob@example.com"] = "a booking of bob's was written"
    second = await world.ask(*both)
    assert second is not first and world.store.reads == 2 and world.vyte.calls == 3
    assert await world.ask(*both) is second
    # ann's free time, cached with the first answer, expires first: the answer goes with it.
    world.clock += TTL - 10.5
    assert await world.ask(*both) is second
    world.clock += 1
    assert await world.ask(*both) is not second
    assert world.vyte.calls == 4, "only ann's expired entry is asked again"


async def test_a_booking_written_asks_vyte_again_for_its_organizer_only(world: World) -> None:
    both = ("ann@example.com", "bob@example.com")
    first = await world.ask(*both)
    world.store.marks["ann@example.com"] = "ann's event was just moved in Vyte"
    assert await world.ask(*both) is not first
    assert world.vyte.calls == 3, "ann is asked again, bob's cached view is still good"


async def test_own_bookings_are_read_again_for_a_changed_mark_or_more_days_only(
    world: World,
) -> None:
    ann, bob = "ann@example.com", "bob@example.com"
    later = DAY + timedelta(days=2)
    await world.ask(ann, bob, last=later)
    await world.ask(ann, bob, last=later, notice=0)
    read_days = (DAY - timedelta(days=2), later + timedelta(days=3))
    assert world.store.asked == [({ann, bob}, *read_days)]
    world.store.marks[bob] = "a booking of bob's was written"
    await world.ask(ann, bob, last=later, notice=1)
    assert world.store.asked[1:] == [({bob}, *read_days)]
    # Days inside those read are answered from the read; one more day is read again.
    await world.ask(ann, first=DAY + timedelta(days=1), last=DAY + timedelta(days=1))
    assert len(world.store.asked) == 2
    await world.ask(ann, last=later + timedelta(days=1))
    assert world.store.asked[2:] == [({ann}, read_days[0], read_days[1] + timedelta(days=1))]


async def test_kept_own_bookings_stay_within_their_bound(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(availability, "OWN_ENTRIES", 2)
    for n, who in enumerate(("ann@example.com", "bob@example.com", "cy@example.com")):
        await world.ask(who, notice=n)
    assert list(world.service._own) == ["bob@example.com", "cy@example.com"]
    await world.ask("ann@example.com", notice=9)
    assert world.store.reads == 4 and list(world.service._own)[-1] == "ann@example.com"


async def test_an_incomplete_answer_is_never_reused(world: World) -> None:
    world.vyte.down.add("bob@example.com")
    partial = await world.ask("ann@example.com", "bob@example.com", partial=True)
    assert not partial.complete and partial.slots
    again = await world.ask("ann@example.com", "bob@example.com", partial=True)
    assert again is not partial and world.store.reads == 1
    assert world.vyte.calls == 3  # ann once (cached), bob twice


async def test_kept_answers_stay_within_both_bounds(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(availability, "ANSWER_ENTRIES", 2)
    answers = [await world.ask(notice=n) for n in (60, 61, 62)]
    kept = world.service._answers
    assert len(kept) == 2 and answers[0].query not in kept
    assert world.service._answer_slots == sum(len(a.slots) for a in answers[1:])
    # One day of 30-minute steps is 48 slots: a bound of 60 keeps one answer.
    monkeypatch.setattr(availability, "ANSWER_SLOTS", 60)
    newest = await world.ask(notice=63)
    assert list(kept) == [newest.query] and world.service._answer_slots == len(newest.slots)
    assert await world.ask(notice=63) is newest


async def test_a_query_that_goes_away_leaves_the_fetches_it_shares_to_the_others(
    world: World,
) -> None:
    gate = asyncio.Event()
    answer = world.vyte.slot_windows

    async def held(**kwargs: Any) -> list[tuple[str, str]]:
        await gate.wait()
        return await answer(**kwargs)

    world.vyte.slot_windows = held  # type: ignore[method-assign]
    first = asyncio.ensure_future(world.ask("ann@example.com", "bob@example.com"))
    for _ in range(5):  # until both of its fetches wait on Vyte
        await asyncio.sleep(0)
    second = asyncio.ensure_future(world.ask("bob@example.com"))
    await asyncio.sleep(0)
    first.cancel()
    await asyncio.sleep(0)
    gate.set()
    answered = await second
    assert answered.slots and answered.slots[0].start == int(MIDNIGHT.timestamp())
    with pytest.raises(asyncio.CancelledError):
        await first
    # Bob's fetch ran once, for both queries, and outlived the one that started it.
    assert world.vyte.calls == 2

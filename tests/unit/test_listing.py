"""The listing use case fills a page from a store that hands back short pages, within a
bound, and the cursor codec refuses what it did not issue."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any

import pytest

from service.commands import BookingQuery
from service.domain.booking import Booking, BookingStatus, Invitee
from service.errors import ValidationFailed
from service.http import cursors
from service.listing import MAX_ROUNDS, BookingListing
from service.store.base import BookingPage
from tests.dates import in_days

FIRST = datetime.combine(in_days(2), time(8), UTC)


def booking(i: int) -> Booking:
    start = FIRST + timedelta(minutes=i)
    return Booking(
        id=f"{i:024x}",
        status=BookingStatus.REQUESTED,
        title="t",
        organizer="a@example.com",
        start=start,
        end=start + timedelta(minutes=30),
        timezone="UTC",
        invitees=(Invitee(email="a@example.com"),),
        place=None,
        message=None,
        callback_url=None,
        caller="alpha",
        version=1,
        created_at=FIRST,
        updated_at=FIRST,
    )


class ShortPages:
    """A store that gives at most one booking per call, as a Redis page cut short would."""

    def __init__(self, count: int) -> None:
        self.bookings = [booking(i) for i in range(count)]
        self.calls: list[dict[str, Any]] = []

    async def list_bookings(self, **kwargs: Any) -> BookingPage:
        self.calls.append(kwargs)
        after = kwargs["after"]
        rest = [b for b in self.bookings if after is None or (b.start, b.id) > after]
        page = rest[:1]
        more = len(rest) > 1
        return BookingPage(page, (page[-1].start, page[-1].id) if more else None)


QUERY = BookingQuery(None, frozenset(), None, None, 5)


async def test_short_pages_are_joined_until_the_page_is_full() -> None:
    store = ShortPages(12)
    listing = BookingListing(store, frozenset())  # type: ignore[arg-type]
    page = await listing.page("alpha", QUERY)
    assert [b.id for b in page.bookings] == [b.id for b in store.bookings[:5]]
    assert page.next_after == (store.bookings[4].start, store.bookings[4].id)
    assert [c["limit"] for c in store.calls] == [5, 4, 3, 2, 1]
    assert {c["caller"] for c in store.calls} == {"alpha"}


async def test_the_listing_ends_when_the_store_says_so_and_admins_list_all() -> None:
    store = ShortPages(3)
    page = await BookingListing(store, frozenset({"root"})).page("root", QUERY)  # type: ignore[arg-type]
    assert len(page.bookings) == 3 and page.next_after is None
    assert {c["caller"] for c in store.calls} == {None}


async def test_the_rounds_are_bounded_and_the_position_kept() -> None:
    store = ShortPages(500)
    big = BookingQuery(None, frozenset(), None, None, 200)
    page = await BookingListing(store, frozenset()).page("alpha", big)  # type: ignore[arg-type]
    assert len(store.calls) == MAX_ROUNDS == len(page.bookings)
    assert page.next_after == (page.bookings[-1].start, page.bookings[-1].id)


def test_cursors_round_trip_and_bind_caller_and_filters() -> None:
    key = b"k" * 32
    query = BookingQuery("a@example.com", frozenset({BookingStatus.CONFIRMED}), FIRST, None, 50)
    position = (FIRST + timedelta(microseconds=7), "ab" * 12)
    cursor = cursors.issue(key, "alpha", query, position)
    assert cursors.read(key, "alpha", query, cursor) == position
    assert "alpha" not in cursor and "example" not in cursor  # opaque to a glance
    changed = [
        (b"x" * 32, "alpha", query),
        (key, "beta", query),
        (key, "alpha", BookingQuery("a@example.com", frozenset(), FIRST, None, 50)),
        (key, "alpha", BookingQuery("a@example.com", query.statuses, None, None, 50)),
    ]
    for other_key, caller, other in changed:
        with pytest.raises(ValidationFailed) as refused:
            cursors.read(other_key, caller, other, cursor)
        assert refused.value.errors[0].field == "cursor"
    # The page size is not a filter.
    bigger = BookingQuery(query.organizer, query.statuses, FIRST, None, 200)
    assert cursors.read(key, "alpha", bigger, cursor) == position

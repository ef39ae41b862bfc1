"""Listing bookings: a caller's own (an admin's: all), one keyset page at a time."""

from __future__ import annotations

from service.commands import BookingQuery
from service.domain.booking import Booking
from service.store.base import BookingPage, Store

# Store pages asked for at most to fill one page: a backend may hand back a short page
# (it stops after a bounded number of records that did not match) and still go on.
MAX_ROUNDS = 20


class BookingListing:
    """GET /v1/bookings: the caller's bookings by (start, id)."""

    def __init__(self, store: Store, admins: frozenset[str]) -> None:
        self._store = store
        self._admins = admins

    async def page(self, caller: str, query: BookingQuery) -> BookingPage:
        """Up to `query.limit` bookings after `query.after`, and where the next page starts
        (None: nothing follows). A page may be short yet have a next one, when the store
        kept stopping early; the walk stays exact either way."""
        owner = None if caller in self._admins else caller
        found: list[Booking] = []
        after = query.after
        for _ in range(MAX_ROUNDS):
            page = await self._store.list_bookings(
                caller=owner,
                organizer=query.organizer,
                statuses=query.statuses or None,
                start_from=query.start_from,
                start_to=query.start_to,
                after=after,
                limit=query.limit - len(found),
            )
            found += page.bookings
            after = page.next_after
            if after is None or len(found) >= query.limit:
                break
        return BookingPage(found, after)

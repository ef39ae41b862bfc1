"""Listing: one page of ``GET /v1/bookings`` over 1k, 10k and 100k bookings of one caller.

In process, through what the handler calls: the listing use case on the store's index, and the
signed cursor read and issued for each page. Each size gets a fresh store filled with bookings
of one caller, one organizer, a minute apart; then the first page and a page from the middle
(by cursor) are read `rounds` times each, interleaved. The baseline is the smallest size in the
same run: keyset paging should not grow with the number of bookings.

SQLite rows are written by the store's own row routine in transactions of 1,000 (one
`put_booking` each would spend 1.3 ms apiece on its commit, minutes for 100k); Redis bookings
go through `put_booking` itself, 200 at a time (about 1 ms each, so 100k only with `--full`).
Redis is skipped when redis-server is absent.

``python -m bench.listing [--quick | --full]``
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench import harness
from bench.harness import percentile
from bench.replicas import redis_server
from service.commands import BookingQuery
from service.domain.booking import Booking, BookingStatus, Invitee
from service.http import cursors
from service.listing import BookingListing
from service.store import open_store
from service.store.base import Store
from service.store.sqlite.bookings import write_booking
from service.store.sqlite.store import SQLiteStore

CALLER = "bench"
KEY = b"bench-cursor-key"
FIRST = harness.midnight(harness.monday_in(160)) + timedelta(hours=8)
PAGE = 50


def _booking(i: int, now: datetime) -> Booking:
    start = FIRST + timedelta(minutes=i)
    return Booking(
        id=f"{i:024x}",
        status=BookingStatus.CONFIRMED if i % 3 == 0 else BookingStatus.REQUESTED,
        title=f"Listed {i}",
        organizer="5f3feb7821046c3bb9327e6a",
        start=start,
        end=start + timedelta(minutes=30),
        timezone="Europe/Paris",
        invitees=(Invitee(email="quentin.tarantino@hollywood.com", full_name="Quentin"),),
        place=None,
        message=None,
        callback_url=None,
        caller=CALLER,
        version=1,
        created_at=now,
        updated_at=now,
    )


def _chunks(count: int, size: int) -> list[range]:
    return [range(i, min(i + size, count)) for i in range(0, count, size)]


async def _fill(store: Store, count: int) -> None:
    now = datetime.now(UTC)
    if isinstance(store, SQLiteStore):
        for batch in _chunks(count, 1000):
            async with store._writing() as db:  # the bench's bulk load
                for i in batch:
                    await write_booking(db, _booking(i, now), None, ())
        return
    for batch in _chunks(count, 200):
        await asyncio.gather(
            *(store.put_booking(_booking(i, now), expected_version=None) for i in batch)
        )


async def _page(listing: BookingListing, cursor: str | None) -> str | None:
    """One page as the handler serves it: read the cursor, list, issue the next one."""
    query = BookingQuery(None, frozenset(), None, None, PAGE)
    if cursor is not None:
        query = BookingQuery(
            None, frozenset(), None, None, PAGE, cursors.read(KEY, CALLER, query, cursor)
        )
    page = await listing.page(CALLER, query)
    assert len(page.bookings) == PAGE
    return None if page.next_after is None else cursors.issue(KEY, CALLER, query, page.next_after)


async def _measure(stores: Sequence[tuple[int, Store]], rounds: int) -> list[tuple[float, float]]:
    """Per store, p50 seconds of the first page and of a page halfway through; the sizes
    take turns within each round, so a busy moment of the machine hits them all alike."""
    query = BookingQuery(None, frozenset(), None, None, PAGE)
    plans = []
    for count, store in stores:
        middle = _booking(count // 2, datetime.now(UTC))
        halfway = cursors.issue(KEY, CALLER, query, (middle.start, middle.id))
        plans.append((BookingListing(store, frozenset()), halfway, [], []))
    times: list[float]
    for _ in range(rounds):
        for listing, halfway, firsts, middles in plans:
            for cursor, times in ((None, firsts), (halfway, middles)):
                began = time.perf_counter()
                await _page(listing, cursor)
                times.append(time.perf_counter() - began)
    return [(percentile(f, 50), percentile(m, 50)) for _, _, f, m in plans]


async def _run_store(
    urls: Sequence[tuple[int, str]], rounds: int
) -> list[tuple[int, float, float, float]]:
    stores: list[tuple[int, Store]] = []
    fills = []
    try:
        for size, url in urls:
            store = await open_store(url)
            stores.append((size, store))
            began = time.perf_counter()
            await _fill(store, size)
            fills.append(time.perf_counter() - began)
        measured = await _measure(stores, rounds)
    finally:
        for _, store in stores:
            await store.close()
    return [
        (size, first, middle, filled)
        for (size, _), (first, middle), filled in zip(stores, measured, fills, strict=True)
    ]


def _report(name: str, rows: list[tuple[int, float, float, float]]) -> None:
    base_first, base_middle = rows[0][1], rows[0][2]
    print(f"\n{name}: one page of {PAGE} (p50), ratio against {rows[0][0]:,} bookings")
    print("| bookings | first page | ratio | page halfway (cursor) | ratio | fill |")
    print("|---:|---:|---:|---:|---:|---:|")
    for size, first, middle, filled in rows:
        print(
            f"| {size:,} | {first * 1e3:.2f} ms | {first / base_first:.2f} "
            f"| {middle * 1e3:.2f} ms | {middle / base_middle:.2f} | {filled:.1f} s |"
        )


async def _main(quick: bool, full: bool) -> None:
    sizes = (1_000, 10_000) if quick else (1_000, 10_000, 100_000)
    redis_sizes = sizes if full else (1_000, 10_000)
    rounds = 50 if quick else 200
    with harness.workdir() as tmp:
        sqlite = await _run_store(
            [(size, f"sqlite:///{Path(tmp)}/listing-{size}.sqlite3") for size in sizes], rounds
        )
        _report("SQLite", sqlite)
        with redis_server(Path(tmp)) as redis_url:
            if redis_url is None:
                print("\nredis-server is not installed: Redis skipped.")
                return
            urls = [(size, f"{redis_url}/{db}") for db, size in enumerate(redis_sizes, start=1)]
            _report("Redis", await _run_store(urls, rounds))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.listing", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="1k and 10k only, fewer rounds")
    parser.add_argument("--full", action="store_true", help="Redis up to 100k too (minutes)")
    args = parser.parse_args(argv)
    asyncio.run(_main(args.quick, args.full))


if __name__ == "__main__":
    main()

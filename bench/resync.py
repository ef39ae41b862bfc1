"""Resync: do re-reads of 1,000 active bookings slow availability queries down?

One gateway (SQLite store, RESYNC_INTERVAL=60, so one claim of up to 100 bookings per 3 s tick)
holds 1,000 requested bookings; Vyte answers every call in 50 ms. Availability queries (5
people, one day, no slot cache) are sent open loop at a fixed rate twice: while the resync is
idle between two passes (the baseline), and while its second pass re-reads the bookings.
Measured: query latency (p50, p90, p99) and the resync's reads per second in each window,
from the sandbox's request counter.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import aiohttp

from bench import harness
from bench.harness import AUTH, Call, LoadResult, Server, median, ms, percentile

BOOKINGS = 1000
ORGANIZERS = 20
INTERVAL = 60.0
LATENCY = 0.05
RATE = 10.0  # availability queries per second
PER_QUERY = 5
READS = "GET /v2/events/{id}"


async def _reads(session: aiohttp.ClientSession, sandbox: Server) -> int:
    async with session.get(sandbox.url + "/_sandbox/stats") as resp:
        stats = await resp.json()
    return int(stats["requests"].get(READS, 0))


async def _book(session: aiohttp.ClientSession, gateway: Server, count: int) -> None:
    """`count` requested bookings: quarter hours of ORGANIZERS people, from a week ahead."""
    first = datetime.combine(datetime.now(UTC).date() + timedelta(days=7), datetime.min.time(), UTC)
    pending = iter(range(count))

    async def worker() -> None:
        for n in pending:
            start = first + timedelta(minutes=15 * (n // ORGANIZERS))
            body = {
                "organizer": harness.user_id(n % ORGANIZERS),
                "title": f"Resync bench {n}",
                "start": start.isoformat(),
                "end": (start + timedelta(minutes=15)).isoformat(),
                "timezone": "UTC",
                "invitees": [{"full_name": "Guest", "email": "guest@example.com"}],
                "check_availability": False,
            }
            call = Call("POST", gateway.url + "/v1/bookings", AUTH, body)
            answer = await harness.send(session, call, want_json=True)
            if answer.status != 201:
                raise RuntimeError(f"create answered {answer.status}: {answer.data}")

    await asyncio.gather(*(worker() for _ in range(10)))


async def _queries(
    session: aiohttp.ClientSession, gateway: Server, seconds: float, offset: int
) -> LoadResult:
    day = (datetime.now(UTC).date() + timedelta(days=30)).isoformat()

    def call(index: int) -> Call:
        # Different people each time: every query goes to Vyte (no slot cache anyway).
        people = [harness.participant((offset + index + k) % ORGANIZERS) for k in range(PER_QUERY)]
        query = {"participants": ",".join(people), "duration": "30", "from": day, "to": day}
        return Call("GET", f"{gateway.url}/v1/availability?{urlencode(query)}", AUTH)

    return await harness.open_loop(session, call, rate=RATE, seconds=seconds)


async def _wait_for_reads(
    session: aiohttp.ClientSession, sandbox: Server, at_least: int, within: float
) -> int:
    deadline = time.monotonic() + within
    while (seen := await _reads(session, sandbox)) < at_least:
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {seen} of {at_least} resync reads")
        await asyncio.sleep(0.2)
    return seen


async def _measure(sandbox: Server, gateway: Server, seconds: float) -> dict[str, object]:
    async with harness.client(connections=50) as session:
        began = time.monotonic()
        await _book(session, gateway, BOOKINGS)
        booked = time.monotonic() - began
        # The first pass reads each booking as it becomes due (at once, as new).
        await _wait_for_reads(session, sandbox, BOOKINGS, INTERVAL)
        first_pass_done = time.monotonic() - began
        await harness.admin(
            session, sandbox, "/_sandbox/faults", {"latency": LATENCY, "path": "/v2/"}
        )
        await asyncio.sleep(1)
        before = await _reads(session, sandbox)
        idle = await _queries(session, gateway, seconds, 0)
        idle_reads = await _reads(session, sandbox) - before
        # The second pass starts an interval after the first claims.
        start = await _wait_for_reads(session, sandbox, BOOKINGS + 1, INTERVAL + 10)
        busy = await _queries(session, gateway, seconds, 7)
        busy_reads = await _reads(session, sandbox) - start
    return {
        "booked_s": booked,
        "first_pass_s": first_pass_done,
        "idle": idle,
        "idle_reads": idle_reads,
        "busy": busy,
        "busy_reads": busy_reads,
    }


def run(quick: bool) -> dict[str, float]:
    print("## 10. Resync of 1,000 active bookings under availability load\n")
    seconds = 5.0 if quick else 15.0
    env = {
        "RESYNC_INTERVAL": str(INTERVAL),
        "SLOT_CACHE_TTL": "0",
        "LOG_LEVEL": "warning",
    }
    with harness.stack(generated_users=ORGANIZERS, gateway_env=env) as stack:
        found = asyncio.run(_measure(stack.sandbox, stack.gateway, seconds))
    idle, busy = found["idle"], found["busy"]
    assert isinstance(idle, LoadResult) and isinstance(busy, LoadResult)
    rows = []
    for label, result, reads in (
        ("resync idle (baseline)", idle, found["idle_reads"]),
        ("resync re-reading", busy, found["busy_reads"]),
    ):
        assert isinstance(reads, int)
        rows.append(
            (
                label,
                len(result.latencies),
                ms(median(result.latencies)),
                ms(percentile(result.latencies, 90)),
                ms(percentile(result.latencies, 99)),
                f"{reads / result.seconds:.1f}",
                ", ".join(f"{k}: {v}" for k, v in sorted(result.statuses.items())),
            )
        )
    print(
        harness.table(
            ("window", "queries", "p50 ms", "p90 ms", "p99 ms", "resync reads/s", "statuses"),
            rows,
            "lrrrrrl",
        )
    )
    headline = {
        "p50_ratio": median(busy.latencies) / median(idle.latencies),
        "p90_ratio": percentile(busy.latencies, 90) / percentile(idle.latencies, 90),
        "p99_ratio": percentile(busy.latencies, 99) / percentile(idle.latencies, 99),
    }
    print(
        f"\n{BOOKINGS} bookings of {ORGANIZERS} organizers created in {found['booked_s']:.0f} s;"
        f" {RATE:.0f} queries/s of {PER_QUERY} people for {seconds:.0f} s per window;"
        f" {LATENCY * 1000:.0f} ms per Vyte call. Re-reading / idle: p50"
        f" **{headline['p50_ratio']:.2f}**, p90 {headline['p90_ratio']:.2f},"
        f" p99 {headline['p99_ratio']:.2f}.\n"
    )
    return headline


def main(argv: Sequence[str] | None = None) -> None:
    harness.quick_cli(run, __doc__, argv)


if __name__ == "__main__":
    main()

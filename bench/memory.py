"""Memory: resident size of one gateway process over a long mix of requests.

The mix is what a busy gateway sees: cached and uncached availability (both grouping modes),
bookings created, confirmed and read, and the usual mistakes (a bad query, an unknown booking,
a missing token). RSS and its peak (VmHWM) are read from /proc after a warm-up and then every
10,000 requests up to 100,000 (issue 19: flat after 100k mixed requests, at most 80 MiB), to
show whether memory levels off.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from collections.abc import Sequence
from datetime import date, timedelta
from urllib.parse import urlencode

from bench import harness
from bench.harness import AUTH, Call, Server

HEADLINE_REQUESTS = 10_000
GOAL_MIB = 80.0
CONCURRENCY = 8
ORGANIZER = "5f3feb7821046c3bb9327e6a"
SEED = 20_261_124


class Mix:
    """The next request: a fixed, repeatable cycle of 20 kinds."""

    def __init__(self, gateway: Server, bookings: Sequence[str]) -> None:
        self.url = gateway.url
        self.bookings = bookings
        self.rng = random.Random(SEED)
        self.created = 0
        self.sent = 0
        people = [harness.participant(i) for i in range(50)]
        self.warm = [
            self._availability(people[i : i + size], harness.monday_in(9), 5)
            for size in (1, 2, 5, 10)
            for i in range(0, 25, 5)
        ]
        self.people = people

    def _availability(self, people: Sequence[str], first: date, days: int, **extra: str) -> str:
        query = {
            "participants": ",".join(people),
            "duration": "30",
            "from": first.isoformat(),
            "to": (first + timedelta(days=days - 1)).isoformat(),
            "timezone": "Europe/Paris",
            **extra,
        }
        return f"{self.url}/v1/availability?{urlencode(query)}"

    def __call__(self, _index: int) -> Call:
        kind = self.sent % 20
        self.sent += 1
        rng = self.rng
        if kind <= 10:
            return Call("GET", rng.choice(self.warm), AUTH)
        if kind <= 12:  # mostly cache misses: random people and dates over a year
            first = harness.monday_in(harness.SEED_FIRST_WEEK) + timedelta(days=rng.randrange(365))
            return Call("GET", self._availability(rng.sample(self.people, 3), first, 3), AUTH)
        if kind == 13:
            self.created += 1
            start = harness.midnight(harness.monday_in(60)) + timedelta(hours=self.created)
            body = {
                "organizer": ORGANIZER,
                "title": f"Memory bench {self.created}",
                "start": start.isoformat(),
                "duration": 60,
                "timezone": "Europe/Paris",
                "invitees": [{"email": f"guest{self.created}@bench.example"}],
                "message": "x" * rng.randrange(0, 2000),
            }
            return Call("POST", self.url + "/v1/bookings", AUTH, body)
        if kind == 14:
            booking = rng.choice(self.bookings)
            return Call("POST", f"{self.url}/v1/bookings/{booking}/confirm", AUTH)
        if kind == 15:
            return Call("GET", f"{self.url}/v1/bookings/{rng.choice(self.bookings)}", AUTH)
        if kind == 16:
            first = harness.monday_in(14) + timedelta(days=rng.randrange(5))
            url = self._availability(self.people[:4], first, 3, group="day")
            return Call("GET", url, AUTH)
        if kind == 17:
            return Call("GET", f"{self.url}/v1/availability?participants=x&duration=1", AUTH)
        if kind == 18:
            missing = f"{rng.getrandbits(96):024x}"
            return Call("GET", f"{self.url}/v1/bookings/{missing}", AUTH)
        return Call("GET", self.warm[0])


async def _create_pool(gateway: Server, count: int) -> list[str]:
    """Bookings for the confirm and read requests of the mix."""
    ids = []
    async with harness.client(4) as session:
        for index in range(count):
            start = harness.midnight(harness.monday_in(110)) + timedelta(hours=index)
            body = {
                "organizer": ORGANIZER,
                "title": f"Pool {index}",
                "start": start.isoformat(),
                "duration": 60,
                "invitees": [{"email": "pool@bench.example"}],
            }
            answer = await harness.send(
                session, Call("POST", gateway.url + "/v1/bookings", AUTH, body), want_json=True
            )
            if answer.status != 201:
                raise RuntimeError(f"pool booking answered {answer.status}")
            ids.append(str(answer.data["id"]))
    return ids


async def measure(checkpoints: Sequence[int], seconds: float) -> dict[str, float]:
    rows = []
    statuses: dict[int, int] = {}
    with harness.stack(generated_users=50) as running:
        gateway = running.gateway
        mix = Mix(gateway, await _create_pool(gateway, 50))
        started = time.monotonic()
        done = 0
        async with harness.client(CONCURRENCY) as session:
            for target in (500, *checkpoints):
                left = seconds - (time.monotonic() - started)
                if left <= 0:
                    break
                result = await harness.closed_loop(
                    session,
                    mix,
                    concurrency=CONCURRENCY,
                    seconds=left,
                    max_requests=target - done,
                )
                done += result.count
                for status, count in result.statuses.items():
                    statuses[status] = statuses.get(status, 0) + count
                memory = gateway.memory_kib()
                rows.append(
                    (
                        f"{done:,}",
                        f"{time.monotonic() - started:.0f}",
                        f"{memory['VmRSS'] / 1024:.1f}",
                        f"{memory['VmHWM'] / 1024:.1f}",
                    )
                )
    print(harness.table(("requests", "seconds", "RSS MiB", "peak RSS MiB"), rows))
    print()
    errors = sum(n for s, n in statuses.items() if s == 0 or s >= 500)
    print(
        f"Statuses: {dict(sorted(statuses.items()))}; errors (no answer or 5xx): {errors}."
        f" {CONCURRENCY} connections, closed loop."
    )
    rss = [float(row[2]) for row in rows]
    at_headline = next(
        (float(row[3]) for row in rows if int(row[0].replace(",", "")) >= HEADLINE_REQUESTS),
        float("nan"),
    )
    headline = {
        "memory_peak_mib_after_10k": at_headline,
        "memory_rss_first_mib": rss[0],
        "memory_rss_last_mib": rss[-1],
        "memory_requests": float(done),
        "memory_errors": float(errors),
    }
    if len(rows) >= 3:
        middle = len(rows) // 2
        print(
            f"RSS at {rows[middle][0]} requests: {rss[middle]:.1f} MiB; at {rows[-1][0]}:"
            f" {rss[-1]:.1f} MiB ({rss[-1] - rss[middle]:+.1f} MiB over the second half)."
        )
        headline["memory_second_half_growth_mib"] = rss[-1] - rss[middle]
    peak = max(float(row[3]) for row in rows)
    verdict = "met" if peak <= GOAL_MIB else "NOT met"
    print(f"Goal peak RSS <= {GOAL_MIB:g} MiB after {done:,} requests: {verdict} ({peak:.1f} MiB).")
    headline["memory_peak_mib"] = peak
    return headline


def run(quick: bool = False) -> dict[str, float]:
    print("## 5. Memory (one process, mixed requests)\n")
    if quick:
        return asyncio.run(measure((2_000, 4_000), 20.0))
    # 100k requests take about 4-5 minutes here (the sandbox slows as bookings accumulate).
    steps = (2_500, 5_000, *range(10_000, 100_001, 10_000))
    return asyncio.run(measure(steps, 900.0))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seconds", type=float, help="a longer soak: run this long ...")
    parser.add_argument("--requests", type=int, default=500_000, help="... or this many")
    args = parser.parse_args(argv)
    if args.seconds is None:
        run(args.quick)
        return
    print("## 5b. Memory soak\n")
    step = max(2_500, args.requests // 40)
    asyncio.run(measure(range(step, args.requests + 1, step), args.seconds))


if __name__ == "__main__":
    main()

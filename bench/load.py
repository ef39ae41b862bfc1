"""Load: a fixed request rate for 60 s against one gateway process, then a rising rate.

Open loop: requests are sent on schedule whatever the answers do, and latency is counted from
the moment each request was due, so a gateway that falls behind pays for its queue. The traffic
is availability for 1 to 5 participants over a working week, from 20 distinct queries, with the
default SLOT_CACHE_TTL (30 s): answers mostly come from the cache and each query is re-read
from the sandbox as its entry expires. The ramp then raises the rate in short steps until p99
passes 100 ms or a request fails; the last rate that passed is what one process sustains.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from urllib.parse import urlencode

import aiohttp

from bench import harness
from bench.harness import AUTH, Call, LoadResult, Server, ms, percentile

FIXED_RATE = 300.0
FIXED_SECONDS = 60.0
RAMP = (100, 200, 300, 400, 500, 600, 800, 1000, 1200, 1500, 2000)
RAMP_SECONDS = 5.0
P99_LIMIT = 0.100


def queries(gateway: Server) -> list[Call]:
    calls = []
    for index in range(20):
        people = [harness.participant((index * 3 + k) % 50) for k in range(1 + index % 5)]
        first = harness.monday_in(9) + timedelta(days=7 * (index % 4))
        query = {
            "participants": ",".join(people),
            "duration": "30",
            "from": first.isoformat(),
            "to": (first + timedelta(days=4)).isoformat(),
            "timezone": "Europe/Paris",
        }
        calls.append(Call("GET", f"{gateway.url}/v1/availability?{urlencode(query)}", AUTH))
    return calls


def _row(rate: float, result: LoadResult) -> tuple[object, ...]:
    lat = result.latencies
    return (
        f"{rate:g}",
        f"{result.rate:,.0f}",
        result.count,
        result.errors,
        ms(percentile(lat, 50)),
        ms(percentile(lat, 90)),
        ms(percentile(lat, 99)),
        ms(max(lat, default=float("nan"))),
        result.late_starts,
    )


HEADER = (
    "target req/s",
    "achieved req/s",
    "requests",
    "errors",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "max ms",
    "late sends",
)


async def _open(
    session: aiohttp.ClientSession, calls: list[Call], rate: float, seconds: float
) -> LoadResult:
    return await harness.open_loop(
        session, lambda i: calls[i % len(calls)], rate=rate, seconds=seconds
    )


async def measure(fixed_seconds: float, ramp_seconds: float) -> dict[str, float]:
    headline: dict[str, float] = {}
    with harness.stack(generated_users=50) as running:
        calls = queries(running.gateway)
        async with harness.client(500) as session:
            for call in calls:  # prime the cache and open a few connections
                await harness.send(session, call)
            fixed = await _open(session, calls, FIXED_RATE, fixed_seconds)
            print(f"Fixed rate, {fixed_seconds:g} s:\n")
            print(harness.table(HEADER, [_row(FIXED_RATE, fixed)]))
            print()
            headline["load_fixed_errors"] = float(fixed.errors)
            headline["load_fixed_p99_ms"] = percentile(fixed.latencies, 99) * 1e3
            rows = []
            sustained = 0.0
            for rate in RAMP:
                result = await _open(session, calls, rate, ramp_seconds)
                rows.append(_row(rate, result))
                passed = (
                    result.errors == 0
                    and set(result.statuses) == {200}
                    and percentile(result.latencies, 99) <= P99_LIMIT
                )
                if not passed:
                    break
                sustained = rate
                await asyncio.sleep(0.5)  # let the previous step's stragglers finish
    print(f"Rising rate, {ramp_seconds:g} s a step, until p99 > {P99_LIMIT * 1e3:.0f} ms:\n")
    print(harness.table(HEADER, rows))
    print()
    print(
        f"Highest rate sustained with p99 <= {P99_LIMIT * 1e3:.0f} ms and no errors:"
        f" **{sustained:g} req/s**"
        + (" (the top of the ramp: the load generator's limit)" if sustained == RAMP[-1] else "")
        + ". 'late sends' counts requests the generator sent more than 5 ms after their time"
        " (it shares the two cores)."
    )
    headline["load_sustained_rps"] = sustained
    return headline


def run(quick: bool = False) -> dict[str, float]:
    print("## 6. Load (open loop, one process)\n")
    if quick:
        return asyncio.run(measure(10.0, 2.0))
    return asyncio.run(measure(FIXED_SECONDS, RAMP_SECONDS))


def main(argv: Sequence[str] | None = None) -> None:
    harness.quick_cli(run, __doc__, argv)


if __name__ == "__main__":
    main()

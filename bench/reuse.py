"""Reused availability answers: a cached 5-person week against the same gateway's /livez, on
an empty SQLite store, on one holding 300 active bookings of other organizers, and on Redis.

Issue 19's goals: the week at >= 0.5x /livez, >= 0.4x with the 300 bookings, >= 0.3x on the
Redis store. Three gateways on one sandbox (SLOT_CACHE_TTL=3600, so every participant stays
cached), one load generator in its own process, 32 requests in flight; each round measures
every target once, interleaved, and ratios are taken within a round. Server CPU per request
(all of a gateway's threads, from /proc) is the steadier number on a shared machine.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import UTC, datetime, time, timedelta
from urllib.parse import urlencode

import aiohttp

from bench import harness, replicas, warm
from bench.harness import AUTH, Server

CONCURRENCY = 32
OTHER_BOOKINGS = 300
WEEK = "5 participants, 7 days"


async def _book_others(gateway: Server, count: int) -> None:
    """`count` active bookings of generated people 10-49 (none of them in the week's query),
    an hour each, on the week's days and the weeks after it."""
    first = datetime.now(UTC).date() + timedelta(days=7)
    async with aiohttp.ClientSession() as session:
        for n in range(count):
            organizer = harness.participant(10 + n % 40)
            day = first + timedelta(days=(n // 40) * 2 % 21)
            start = datetime.combine(day, time(8 + (n // 40) % 8), UTC)
            body = {
                "organizer": organizer,
                "title": f"Other meeting {n}",
                "start": start.isoformat(),
                "end": (start + timedelta(hours=1)).isoformat(),
                "timezone": "UTC",
                "invitees": [{"email": f"guest{n}@example.com"}],
                "check_availability": False,
            }
            async with session.post(f"{gateway.url}/v1/bookings", json=body, headers=AUTH) as resp:
                if resp.status != 201:
                    raise RuntimeError(f"booking {n}: {resp.status} {await resp.text()}")


def measure(rounds: int, seconds: float) -> dict[str, float]:
    week = urlencode(warm.cases()[WEEK])
    targets: dict[str, tuple[Server, str, dict[str, str], str | None]] = {}
    with (
        harness.stack(generated_users=50, gateway_env={"SLOT_CACHE_TTL": "3600"}) as running,
        replicas.redis_server(running.workdir) as redis_url,
        contextlib.ExitStack() as others,
    ):
        gateways = [("SQLite", running.gateway)]
        booked = harness.another_gateway(
            running,
            "gateway-booked",
            store_url=f"sqlite:///{running.workdir}/booked.sqlite3",
            slot_cache_ttl="3600",
        )
        others.callback(booked.stop)
        asyncio.run(_book_others(booked, OTHER_BOOKINGS))
        gateways.append((f"SQLite, {OTHER_BOOKINGS} other bookings", booked))
        if redis_url is not None:
            on_redis = harness.another_gateway(
                running, "gateway-redis", store_url=f"{redis_url}/0", slot_cache_ttl="3600"
            )
            others.callback(on_redis.stop)
            gateways.append(("Redis", on_redis))
        for label, gateway in gateways:
            livez = f"{label}: /livez"
            targets[livez] = (gateway, gateway.url + "/livez", {}, None)
            targets[f"{label}: cached 5 participants x 7 days"] = (
                gateway,
                f"{gateway.url}/v1/availability?{week}",
                AUTH,
                livez,
            )
        asyncio.run(warm._prime([url for _, url, _, _ in targets.values()]))
        rates, cpus = harness.interleaved_load(
            {name: target[:3] for name, target in targets.items()},
            rounds=rounds,
            seconds=seconds,
            concurrency=CONCURRENCY,
        )
    rows: list[list[object]] = []
    headline: dict[str, float] = {}
    for index, (name, (_, _, _, base)) in enumerate(targets.items()):
        rate, cpu = harness.median(rates[name]), harness.median(cpus[name])
        ratio = cpu_ratio = 1.0
        if base is not None:
            ratio = harness.median([r / b for r, b in zip(rates[name], rates[base], strict=True)])
            cpu_ratio = harness.median(cpus[base]) / cpu
        rows.append(
            [
                name,
                f"{rate:,.0f}",
                " / ".join(f"{r:,.0f}" for r in rates[name]),
                "" if base is None else f"**{ratio:.2f}**",
                f"{cpu * 1e3:.3f}",
                "" if base is None else f"**{cpu_ratio:.2f}**",
            ]
        )
        headline[f"reuse_{index}_rps_ratio"] = ratio
        headline[f"reuse_{index}_cpu_ratio"] = cpu_ratio
    header = (
        "path",
        "req/s (median)",
        "req/s per round",
        "req/s of /livez",
        "server CPU ms/req",
        "CPU ratio to /livez",
    )
    print(harness.table(header, rows, "l"))
    print(
        f"\n{rounds} rounds x {seconds:g} s per target, {CONCURRENCY} in flight, one load "
        "generator process; ratios are medians of per-round ratios (CPU: /livez's / the week's)."
    )
    return headline


def run(quick: bool = False) -> dict[str, float]:
    print("## Reused availability answers (issue 19): SQLite, 300 other bookings, Redis\n")
    return measure(rounds=1 if quick else 3, seconds=0.5 if quick else 2.0)


def main() -> None:
    harness.quick_cli(run, __doc__, None)


if __name__ == "__main__":
    main()

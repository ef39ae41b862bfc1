"""Warm path: cached availability queries on one gateway process, against the framework's ceiling.

Each query is answered from the slot cache (primed first, SLOT_CACHE_TTL=3600), so what is
measured is the gateway's own per-request work. The same client load is sent to a trivial
aiohttp handler (``{"ok": true}``) in its own process, and the ratio of the two is the share of
the framework's ceiling the gateway reaches. Server CPU per request is read from /proc, so it
does not depend on how fast the load generator (which shares the two cores) is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import aiohttp

from bench import harness
from bench.harness import AUTH, Call, Server, ms, percentile

CONCURRENCY = 16


def cases() -> dict[str, dict[str, str]]:
    """Query parameters of each warm case, from a small answer to a large one.

    Days count from today (past slots are never offered, so fixed dates would empty the
    answers as they pass); the 3 and 5 participant weeks are issue 19's table.
    """
    people = [harness.participant(i) for i in range(50)]
    start = datetime.now(UTC).date() + timedelta(days=7)

    def days(count: int) -> dict[str, str]:
        return {"from": str(start), "to": str(start + timedelta(days=count - 1))}

    return {
        "1 participant, 1 day": {
            "participants": people[0],
            "duration": "30",
            **days(1),
            "timezone": "Europe/Paris",
        },
        "3 participants, 7 days": {
            "participants": ",".join(people[:3]),
            "duration": "30",
            **days(7),
            "timezone": "Europe/Paris",
        },
        "5 participants, 5 days": {
            "participants": ",".join(people[:5]),
            "duration": "30",
            **days(5),
            "timezone": "Europe/Paris",
        },
        "5 participants, 7 days": {
            "participants": ",".join(people[:5]),
            "duration": "30",
            **days(7),
            "timezone": "Europe/Paris",
        },
        "50 participants, 31 days, step 15, required 1 (large answer)": {
            "participants": ",".join(people),
            "duration": "30",
            "step": "15",
            "required": "1",
            **days(31),
            "timezone": "Europe/Paris",
        },
    }


async def _load(
    session: aiohttp.ClientSession,
    server: Server,
    call: Call,
    *,
    concurrency: int,
    seconds: float,
) -> tuple[harness.LoadResult, float, float]:
    """Closed-loop load; also the server's and this client's CPU seconds per request."""
    server_cpu, client_cpu = server.cpu_seconds(), time.process_time()
    result = await harness.closed_loop(
        session,
        lambda _: call,
        concurrency=concurrency,
        seconds=seconds,
        max_requests=200_000,
    )
    if result.errors or set(result.statuses) != {200}:
        raise RuntimeError(f"{call.url}: unexpected answers {result.statuses}")
    count = max(1, result.count)
    return (
        result,
        (server.cpu_seconds() - server_cpu) / count,
        (time.process_time() - client_cpu) / count,
    )


async def _measure_one(
    session: aiohttp.ClientSession, server: Server, call: Call, seconds: float
) -> list[object]:
    answer = await harness.send(session, call, want_json=True)
    if answer.status != 200:
        raise RuntimeError(f"{call.url} answered {answer.status}")
    async with session.get(call.url, headers=call.headers) as resp:
        size = len(await resp.read())
    # Warm-up, then one connection (latency), then CONCURRENCY connections (throughput).
    await _load(session, server, call, concurrency=CONCURRENCY, seconds=min(1.0, seconds / 3))
    single, _, _ = await _load(session, server, call, concurrency=1, seconds=seconds)
    loaded, server_cpu, client_cpu = await _load(
        session, server, call, concurrency=CONCURRENCY, seconds=seconds
    )
    return [
        f"{size:,}",
        ms(percentile(single.latencies, 50)),
        ms(percentile(single.latencies, 99)),
        f"{loaded.rate:,.0f}",
        ms(percentile(loaded.latencies, 50)),
        ms(percentile(loaded.latencies, 99)),
        f"{server_cpu * 1e3:.2f}",
        f"{client_cpu * 1e3:.2f}",
    ]


async def _ceiling(seconds: float) -> list[object]:
    with harness.trivial_server() as trivial:
        async with harness.client(CONCURRENCY) as session:
            call = Call("GET", trivial.url + "/")
            return await _measure_one(session, trivial, call, seconds)


async def measure(quick: bool) -> dict[str, float]:
    seconds = 1.0 if quick else 3.0
    # The ceiling is measured before and after the gateway rows and the better run is kept:
    # on a shared machine a single run can land in a noisy moment.
    ceilings = [await _ceiling(seconds)]
    gateway_rows: list[tuple[str, list[object]]] = []
    with harness.stack(generated_users=50, gateway_env={"SLOT_CACHE_TTL": "3600"}) as running:
        gateway = running.gateway
        async with harness.client(CONCURRENCY) as session:
            # The whole middleware stack around the cheapest handler.
            livez = Call("GET", f"{gateway.url}/livez")
            gateway_rows.append(("/livez", await _measure_one(session, gateway, livez, seconds)))
            for name, params in cases().items():
                url = f"{gateway.url}/v1/availability?{urlencode(params)}"
                call = Call("GET", url, AUTH)
                gateway_rows.append((name, await _measure_one(session, gateway, call, seconds)))
    ceilings.append(await _ceiling(seconds))
    trivial_row = max(ceilings, key=lambda row: _number(row[3]))
    trivial_rps, trivial_cpu = _number(trivial_row[3]), _number(trivial_row[6])
    livez_rps, livez_cpu = _number(gateway_rows[0][1][3]), _number(gateway_rows[0][1][6])
    rows: list[list[object]] = [
        ["trivial aiohttp handler (ceiling)", *trivial_row, "1", "1", "", ""]
    ]
    headline = {"trivial_rps": trivial_rps}
    for index, (name, row) in enumerate(gateway_rows):
        rps, cpu = _number(row[3]), _number(row[6])
        rows.append(
            [
                name,
                *row,
                f"{rps / trivial_rps:.3f}",
                f"{cpu / trivial_cpu:.1f}",
                f"{rps / livez_rps:.3f}",
                f"{cpu / livez_cpu:.1f}",
            ]
        )
        headline[f"warm_{index}_rps"] = rps
        headline[f"warm_{index}_vs_trivial"] = rps / trivial_rps
        headline[f"warm_{index}_cpu_ms"] = cpu
        headline[f"warm_{index}_p99_ms"] = _number(row[5])
    print(
        harness.table(
            (
                "endpoint",
                "answer bytes",
                "p50 ms (1 conn)",
                "p99 ms (1 conn)",
                f"req/s ({CONCURRENCY} conns)",
                f"p50 ms ({CONCURRENCY} conns)",
                f"p99 ms ({CONCURRENCY} conns)",
                "server CPU ms/req",
                "client CPU ms/req",
                "req/s vs trivial",
                "CPU/req vs trivial",
                "req/s vs /livez",
                "CPU/req vs /livez",
            ),
            rows,
            "l",
        )
    )
    print()
    print(
        f"Ceiling runs: {', '.join(str(row[3]) for row in ceilings)} req/s (best kept). "
        f"Closed loop, {seconds:g} s per row, aiohttp client in the benchmark process "
        "(it shares the two cores with the server, so req/s is a floor; CPU ms/req is not)."
    )
    return headline


def _number(cell: object) -> float:
    return float(str(cell).replace(",", ""))


def run(quick: bool = False) -> dict[str, float]:
    print("## 2. Warm path (cached availability vs a trivial aiohttp handler)\n")
    return asyncio.run(measure(quick))


def main(argv: Sequence[str] | None = None) -> None:
    harness.quick_cli(run, __doc__, argv)


if __name__ == "__main__":
    main()

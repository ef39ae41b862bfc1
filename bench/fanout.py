"""Fan-out: cold-cache availability for 1, 5, 20 and 50 participants, 100 ms upstream latency.

The gateway's time is divided by three baselines measured in the same run against the same
sandbox: one upstream call, the same calls made one after another (a sequential per-participant
loop), and the same calls made concurrently by the benchmark client itself (so what is left
over is the gateway's own work: parsing, intersection, serialization, its store reads).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from urllib.parse import urlencode

import aiohttp

from bench import harness
from bench.harness import AUTH, VYTE_AUTH, Server, Stack, median, ms

SIZES = (1, 5, 20, 50)
LATENCY = 0.1
QUERY = {"duration": "30", "from": "2027-03-01", "to": "2027-03-05", "timezone": "Europe/Paris"}
GOAL_AT_20 = 1.2


def gateway_url(gateway: Server, size: int) -> str:
    people = ",".join(harness.participant(i) for i in range(size))
    return f"{gateway.url}/v1/availability?{urlencode({'participants': people, **QUERY})}"


def upstream_url(sandbox: Server, index: int) -> str:
    who = harness.participant(index)
    key = "emails" if "@" in who else "users"
    return f"{sandbox.url}/v2/slots?{urlencode({**QUERY, key: who})}"


async def _timed(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> float:
    answer = await harness.get(session, url, headers)
    if answer.status != 200:
        raise RuntimeError(f"{url} answered {answer.status}")
    return answer.seconds


async def _sequential(session: aiohttp.ClientSession, sandbox: Server, size: int) -> float:
    started = time.perf_counter()
    for index in range(size):
        await _timed(session, upstream_url(sandbox, index), VYTE_AUTH)
    return time.perf_counter() - started


async def _concurrent(session: aiohttp.ClientSession, sandbox: Server, size: int) -> float:
    started = time.perf_counter()
    await asyncio.gather(
        *(_timed(session, upstream_url(sandbox, i), VYTE_AUTH) for i in range(size))
    )
    return time.perf_counter() - started


async def _upstream_calls(session: aiohttp.ClientSession, sandbox: Server) -> int:
    async with session.get(sandbox.url + "/_sandbox/stats") as resp:
        stats = await resp.json()
    return int(stats["requests"].get("GET /v2/slots", 0))


async def measure(stack: Stack, repeat: int, sequential_repeat: int) -> dict[str, float]:
    sandbox, gateway = stack.sandbox, stack.gateway
    headline: dict[str, float] = {}
    rows = []
    async with harness.client(connections=200) as session:
        await harness.admin(
            session, sandbox, "/_sandbox/faults", {"latency": LATENCY, "path": "/v2/slots"}
        )
        # Open every connection once (both pools) so no row pays for TCP set-up.
        await _concurrent(session, sandbox, max(SIZES))
        await _timed(session, gateway_url(gateway, max(SIZES)), AUTH)
        one_call = [
            await _timed(session, upstream_url(sandbox, 0), VYTE_AUTH) for _ in range(repeat)
        ]
        one = median(one_call)
        for size in SIZES:
            through: list[float] = []
            concurrent: list[float] = []
            cpu = 0.0
            calls = 0
            # Interleaved, so a noisy moment on the shared machine hits both alike.
            for _ in range(repeat):
                calls -= await _upstream_calls(session, sandbox)
                cpu -= gateway.cpu_seconds()
                through.append(await _timed(session, gateway_url(gateway, size), AUTH))
                cpu += gateway.cpu_seconds()
                calls += await _upstream_calls(session, sandbox)
                concurrent.append(await _concurrent(session, sandbox, size))
            sequential = [
                await _sequential(session, sandbox, size) for _ in range(sequential_repeat)
            ]
            gw, seq, conc = median(through), median(sequential), median(concurrent)
            rows.append(
                (
                    size,
                    f"{calls / repeat:g}",
                    ms(gw),
                    ms(max(through)),
                    f"{cpu / repeat * 1e3:.1f}",
                    ms(one),
                    ms(conc),
                    ms(seq),
                    f"**{gw / one:.2f}**",
                    f"{gw / conc:.2f}",
                    f"{gw / seq:.3f}",
                )
            )
            headline[f"fanout_{size}_vs_one_call"] = gw / one
            headline[f"fanout_{size}_vs_sequential"] = gw / seq
            headline[f"fanout_{size}_ms"] = gw * 1e3
            headline[f"fanout_{size}_cpu_ms"] = cpu / repeat * 1e3
    print(
        harness.table(
            (
                "participants",
                "upstream calls / query",
                "gateway p50 ms",
                "gateway max ms",
                "gateway CPU ms/query",
                "one upstream call ms",
                "client's own concurrent fan-out ms",
                "sequential loop ms",
                "gateway / one call",
                "gateway / client fan-out",
                "gateway / sequential",
            ),
            rows,
        )
    )
    print()
    ratio = headline["fanout_20_vs_one_call"]
    verdict = "met" if ratio <= GOAL_AT_20 else "NOT met"
    print(
        f"Goal gateway / one call <= {GOAL_AT_20} at 20 participants: {verdict} ({ratio:.2f})."
        f" Medians of {repeat} queries ({sequential_repeat} sequential loops);"
        f" {LATENCY * 1e3:.0f} ms injected on every /v2/slots answer; SLOT_CACHE_TTL=0."
    )
    return headline


def run(quick: bool = False) -> dict[str, float]:
    print("## 1. Fan-out (cold cache, 100 ms upstream latency)\n")
    repeat, sequential_repeat = (3, 1) if quick else (10, 3)
    with harness.stack(generated_users=max(SIZES), gateway_env={"SLOT_CACHE_TTL": "0"}) as running:
        return asyncio.run(measure(running, repeat, sequential_repeat))


def main(argv: Sequence[str] | None = None) -> None:
    harness.quick_cli(run, __doc__, argv)


if __name__ == "__main__":
    main()

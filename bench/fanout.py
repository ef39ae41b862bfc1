"""Fan-out: cold-cache availability for 1, 5, 20 and 50 participants, 100 ms upstream latency.

The gateway's time is divided by three baselines measured in the same run against the same
sandbox: one upstream call, the same calls made one after another (a sequential per-participant
loop), and the same calls made concurrently by a bare aiohttp client (so what is left over is
the gateway's own work: parsing, intersection, serialization, its store reads). Issue 19's
goals are against the bare concurrent client: at most 1.05x at 20 participants and 1.08x at 50,
medians of 7 interleaved queries.

The sandbox stands in for Vyte, which runs on machines of its own: it gets a core of its own,
the gateways and the bench the others (`--shared-cores` lets the kernel place them all).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlencode

import aiohttp

from bench import harness
from bench.harness import AUTH, VYTE_AUTH, Server, Stack, median, ms

SIZES = (1, 5, 20, 50)
LATENCY = 0.1
QUERY = harness.workweek_query()
# Seconds every timed fan-out waits first, so the sandbox has finished what the previous one
# left it (access log lines, garbage) whoever comes next.
SETTLE = 0.1
# Gateway / bare concurrent client (issue 19), by participants.
GOALS = {20: 1.05, 50: 1.08}


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


async def measure(
    stack: Stack, repeat: int, sequential_repeat: int, before: Server | None = None
) -> dict[str, float]:
    sandbox = stack.sandbox
    gateways = [("", stack.gateway)] + ([("before: ", before)] if before is not None else [])
    headline: dict[str, float] = {}
    spreads: dict[tuple[str, int], str] = {}
    rows = []
    async with harness.client(connections=200) as session:
        await harness.admin(
            session, sandbox, "/_sandbox/faults", {"latency": LATENCY, "path": "/v2/slots"}
        )
        one_call = [
            await _timed(session, upstream_url(sandbox, 0), VYTE_AUTH) for _ in range(repeat)
        ]
        one = median(one_call)
        timings: dict[int, tuple[dict[str, list[float]], dict[str, float], list[float]]] = {}
        for size in SIZES:
            # Every pool holds the connections this size needs before the clock starts.
            await _concurrent(session, sandbox, size)
            for _, gateway in gateways:
                await _timed(session, gateway_url(gateway, size), AUTH)
            through: dict[str, list[float]] = {label: [] for label, _ in gateways}
            cpu = dict.fromkeys(through, 0.0)
            concurrent: list[float] = []
            calls = 0
            # Interleaved, so a noisy moment on the shared machine hits all alike, and the
            # gateways take turns going first.
            for round_ in range(repeat):
                turn = round_ % len(gateways)
                for label, gateway in gateways[turn:] + gateways[:turn]:
                    calls -= await _upstream_calls(session, sandbox)
                    await asyncio.sleep(SETTLE)
                    cpu[label] -= gateway.cpu_seconds()
                    through[label].append(await _timed(session, gateway_url(gateway, size), AUTH))
                    cpu[label] += gateway.cpu_seconds()
                    calls += await _upstream_calls(session, sandbox)
                await asyncio.sleep(SETTLE)
                concurrent.append(await _concurrent(session, sandbox, size))
            if calls != size * repeat * len(gateways):
                raise RuntimeError(f"{size} participants: {calls} upstream calls, not one each")
            timings[size] = (through, cpu, concurrent)
        # The sequential loops last: their seconds of idle pools would not let the rows above
        # start from open connections.
        sequential: dict[int, float] = {}
        for size in SIZES:
            loops = [await _sequential(session, sandbox, size) for _ in range(sequential_repeat)]
            sequential[size] = median(loops)
    for size in SIZES:
        through, cpu, concurrent = timings[size]
        conc, seq = median(concurrent), sequential[size]
        for label, _ in gateways:
            gw = median(through[label])
            rows.append(
                (
                    f"{label}{size}",
                    ms(gw),
                    ms(max(through[label])),
                    f"{cpu[label] / repeat * 1e3:.1f}",
                    ms(one),
                    ms(conc),
                    ms(seq),
                    f"{gw / one:.2f}",
                    f"**{gw / conc:.3f}**",
                    f"{gw / seq:.3f}",
                )
            )
            paired = sorted(g / c for g, c in zip(through[label], concurrent, strict=True))
            spreads[label, size] = f"{paired[0]:.2f}-{paired[-1]:.2f}"
            key = f"fanout_{'before_' if label else ''}{size}"
            headline[f"{key}_vs_one_call"] = gw / one
            headline[f"{key}_vs_sequential"] = gw / seq
            headline[f"{key}_vs_client"] = gw / conc
            headline[f"{key}_ms"] = gw * 1e3
            headline[f"{key}_cpu_ms"] = cpu[label] / repeat * 1e3
    print(
        harness.table(
            (
                "participants",
                "gateway p50 ms",
                "gateway max ms",
                "gateway CPU ms/query",
                "one upstream call ms",
                "bare concurrent client ms",
                "sequential loop ms",
                "gateway / one call",
                "gateway / bare concurrent client",
                "gateway / sequential",
            ),
            rows,
        )
    )
    print()
    for label, _ in gateways:
        for size, goal in GOALS.items():
            key = f"fanout_{'before_' if label else ''}{size}_vs_client"
            ratio = headline[key]
            verdict = "met" if ratio <= goal else "NOT met"
            print(
                f"{label}Goal gateway / bare concurrent client <= {goal} at {size} participants:"
                f" {verdict} ({ratio:.3f}; per query {spreads[label, size]})."
            )
    print(
        f"Medians of {repeat} queries, each followed by the bare client's same calls"
        f" (one upstream call per participant and query, checked;"
        f" {sequential_repeat} sequential loops);"
        f" {LATENCY * 1e3:.0f} ms injected on every /v2/slots answer; SLOT_CACHE_TTL=0."
    )
    return headline


def run(
    quick: bool = False, before: Path | None = None, shared_cores: bool = False
) -> dict[str, float]:
    print("## 1. Fan-out (cold cache, 100 ms upstream latency)\n")
    repeat, sequential_repeat = (3, 1) if quick else (7, 3)
    with (
        harness.stack(generated_users=max(SIZES), gateway_env={"SLOT_CACHE_TTL": "0"}) as running,
        contextlib.ExitStack() as others,
    ):
        old = None
        if before is not None:
            old = _second_gateway(running, before)
            others.callback(old.stop)
        apart = not shared_cores and others.enter_context(
            harness.upstream_apart(running.sandbox, running.gateway, *([old] if old else []))
        )
        print(
            "The sandbox on a core of its own, the gateways and the bench on the others.\n"
            if apart
            else "All processes on every core, as the kernel places them.\n"
        )
        return asyncio.run(measure(running, repeat, sequential_repeat, old))


def _second_gateway(running: Stack, code: Path) -> Server:
    """A gateway from another checkout, on the same sandbox, with its own store."""
    return harness.another_gateway(
        running,
        "gateway-before",
        store_url=f"sqlite:///{running.workdir}/before.sqlite3",
        slot_cache_ttl="0",
        code=code,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fanout", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run, for a smoke test")
    parser.add_argument(
        "--before", type=Path, help="a checkout whose gateway runs alongside, on the same sandbox"
    )
    parser.add_argument(
        "--shared-cores",
        action="store_true",
        help="do not give the sandbox a core of its own (the kernel places every process)",
    )
    args = parser.parse_args(argv)
    run(args.quick, args.before, args.shared_cores)


if __name__ == "__main__":
    main()

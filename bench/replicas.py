"""Shared slot cache: does sharing answers through Redis pay, with three replicas?

Three gateway processes on one Redis (SLOT_CACHE_TTL=300) answer the same workload twice over,
round robin: overlapping 5-participant queries drawn from 15 people, Vyte answering each slot
query in 100 ms. Once with each replica caching only for itself (SLOT_CACHE_SHARED=false), the
baseline, and once sharing answers through Redis. Measured: upstream slot calls (from the
sandbox's counter) and query latency, cold (first pass) and warm (second pass).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.parse import urlencode

import aiohttp

from bench import harness
from bench.harness import AUTH, Server, median, ms

REPLICAS = 3
POOL = 15
PER_QUERY = 5
LATENCY = 0.1
QUERY = harness.workweek_query()


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str | None]:
    """A redis-server on a free loopback port, no persistence; None when not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    port = harness.free_port()
    proc = subprocess.Popen(
        [
            binary,
            "--bind",
            harness.LOOPBACK,
            "--port",
            str(port),
            "--save",
            "",
            "--dir",
            str(workdir),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                with socket.create_connection((harness.LOOPBACK, port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.05)
        yield f"redis://{harness.LOOPBACK}:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def workload(queries: int) -> list[str]:
    rng = random.Random(20_261_130)
    people = [harness.participant(i) for i in range(POOL)]
    return [",".join(rng.sample(people, PER_QUERY)) for _ in range(queries)]


async def _upstream_calls(session: aiohttp.ClientSession, sandbox: Server) -> int:
    async with session.get(sandbox.url + "/_sandbox/stats") as resp:
        stats = await resp.json()
    return int(stats["requests"].get("GET /v2/slots", 0))


async def _pass(
    session: aiohttp.ClientSession, gateways: Sequence[Server], queries: Sequence[str]
) -> list[float]:
    seconds = []
    for n, people in enumerate(queries):
        url = f"{gateways[n % len(gateways)].url}/v1/availability?"
        answer = await harness.get(
            session, url + urlencode({"participants": people, **QUERY}), AUTH
        )
        if answer.status != 200:
            raise RuntimeError(f"availability answered {answer.status}")
        seconds.append(answer.seconds)
    return seconds


async def _measure_mode(
    sandbox: Server, gateways: Sequence[Server], queries: Sequence[str]
) -> tuple[int, list[float], int, list[float]]:
    async with harness.client(connections=50) as session:
        before = await _upstream_calls(session, sandbox)
        cold = await _pass(session, gateways, queries)
        middle = await _upstream_calls(session, sandbox)
        warm = await _pass(session, gateways, queries)
        after = await _upstream_calls(session, sandbox)
    return middle - before, cold, after - middle, warm


def run(quick: bool) -> dict[str, float]:
    print("## 7. Shared slot cache (three replicas on one Redis)\n")
    queries = workload(15 if quick else 60)
    results: dict[str, tuple[int, list[float], int, list[float]]] = {}
    with harness.workdir() as tmp, redis_server(tmp) as redis_url:
        if redis_url is None:
            print("redis-server is not installed: skipped.\n")
            return {}
        seed = tmp / "seed.json"
        harness.write_seed(seed, POOL)
        sandbox_args = ["-m", "service", "sandbox", "--host", harness.LOOPBACK, "--port", "{port}"]
        sandbox = harness.start_server(
            "sandbox", [*sandbox_args, "--seed", str(seed)], tmp, ready_path="/_sandbox/stats"
        )
        try:
            asyncio.run(_set_latency(sandbox))
            for db, shared in ((1, "false"), (2, "true")):
                env = {
                    "VYTE_BASE_URL": sandbox.url,
                    "VYTE_API_KEY": harness.SANDBOX_API_KEY,
                    "API_TOKENS": f"bench:{harness.TOKEN}",
                    "STORE_URL": f"{redis_url}/{db}",
                    "SLOT_CACHE_TTL": "300",
                    "SLOT_CACHE_SHARED": shared,
                    "LOG_LEVEL": "warning",
                    "SHUTDOWN_TIMEOUT": "5",
                }
                gateways: list[Server] = []
                try:
                    for i in range(REPLICAS):
                        gateways.append(
                            harness.start_server(
                                f"gateway-{shared}-{i}", ["-m", "service", "serve"], tmp, env=env
                            )
                        )
                    results[shared] = asyncio.run(_measure_mode(sandbox, gateways, queries))
                finally:
                    for gateway in gateways:
                        gateway.stop()
        finally:
            sandbox.stop()

    rows = []
    for shared, label in (
        ("false", "each replica alone (baseline)"),
        ("true", "shared through Redis"),
    ):
        cold_calls, cold, warm_calls, warm = results[shared]
        rows.append(
            (
                label,
                cold_calls,
                f"{cold_calls / len(queries):.2f}",
                ms(median(cold)),
                ms(harness.percentile(cold, 90)),
                warm_calls,
                ms(median(warm)),
            )
        )
    print(
        harness.table(
            (
                "slot cache",
                "upstream calls, pass 1",
                "per query",
                "p50 ms, pass 1",
                "p90 ms, pass 1",
                "upstream calls, pass 2",
                "p50 ms, pass 2",
            ),
            rows,
            "lrrrrrr",
        )
    )
    base_calls, base_cold, _, base_warm = results["false"]
    shared_calls, shared_cold, _, shared_warm = results["true"]
    headline = {
        "calls_ratio": shared_calls / base_calls,
        "cold_p50_ratio": median(shared_cold) / median(base_cold),
        "warm_p50_ratio": median(shared_warm) / median(base_warm),
    }
    print(
        f"\n{len(queries)} queries of {PER_QUERY} people from {POOL}, round robin over {REPLICAS}"
        f" replicas, {LATENCY * 1000:.0f} ms per upstream slot query. Shared / baseline:"
        f" upstream calls **{headline['calls_ratio']:.2f}**, first-pass p50"
        f" {headline['cold_p50_ratio']:.2f}, second-pass p50 {headline['warm_p50_ratio']:.2f}.\n"
    )
    return headline


async def _set_latency(sandbox: Server) -> None:
    async with harness.client(connections=2) as session:
        await harness.admin(
            session, sandbox, "/_sandbox/faults", {"latency": LATENCY, "path": "/v2/slots"}
        )


def main(argv: Sequence[str] | None = None) -> None:
    harness.quick_cli(run, __doc__, argv)


if __name__ == "__main__":
    main()

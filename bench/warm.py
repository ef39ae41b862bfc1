"""Warm path: cached availability queries on one gateway process, against the framework's ceiling.

Each query is answered from the slot cache (primed first, SLOT_CACHE_TTL=3600), so what is
measured is the gateway's own per-request work. The same client load is sent to a trivial
aiohttp handler (``{"ok": true}``) in its own process, and the ratio of the two is the share of
the framework's ceiling the gateway reaches. Server CPU per request is read from /proc, so it
does not depend on how fast the load generator (which shares the two cores) is.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
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


EDGE_CONCURRENCY = 32


def edge_cases() -> dict[str, dict[str, str]]:
    """Issue 19's cached availability cases: 3 and 5 participants over 7 days (from `cases`)."""
    weeks = cases()
    return {
        f"cached availability, {n} participants x 7 days": weeks[f"{n} participants, 7 days"]
        for n in (3, 5)
    }


def measure_edge(rounds: int, seconds: float, before: Path | None = None) -> dict[str, float]:
    """The edge side by side: a bare aiohttp handler, /livez, cached availability.

    One load generator in its own process, EDGE_CONCURRENCY requests in flight; each round
    measures every target once (interleaved, so a noisy moment hits all of them alike) and
    the table gives medians over the rounds, with ratios taken within each round. With
    ``before`` (another checkout of the repository) its gateway runs beside this one, on the
    same sandbox, and gets the same rows.
    """
    # name -> (server, url, headers, the row its ratio is taken against)
    targets: dict[str, tuple[Server, str, dict[str, str], str | None]] = {}
    bare = "bare aiohttp, one trivial handler"
    with (
        harness.trivial_server() as trivial,
        harness.stack(generated_users=50, gateway_env={"SLOT_CACHE_TTL": "3600"}) as running,
        contextlib.ExitStack() as others,
    ):
        gateways = [("", running.gateway)]
        if before is not None:
            old = before_gateway(running, before)
            others.callback(old.stop)
            gateways.append(("before: ", old))
        targets[bare] = (trivial, trivial.url + "/", {}, None)
        for label, gateway in gateways:
            livez = f"{label}gateway /livez"
            targets[livez] = (gateway, gateway.url + "/livez", {}, bare)
            for name, params in edge_cases().items():
                url = f"{gateway.url}/v1/availability?{urlencode(params)}"
                targets[label + name] = (gateway, url, AUTH, livez)
        asyncio.run(_prime([url for _, url, _, _ in targets.values()]))
        rates, cpus = harness.interleaved_load(
            {name: target[:3] for name, target in targets.items()},
            rounds=rounds,
            seconds=seconds,
            concurrency=EDGE_CONCURRENCY,
        )
    names = list(targets)
    bases = {name: base for name, (_, _, _, base) in targets.items()}
    ratios = {
        name: [r / b for r, b in zip(rates[name], rates[base], strict=True)]
        for name, base in bases.items()
        if base is not None
    }
    rows: list[list[object]] = []
    headline: dict[str, float] = {}
    for index, name in enumerate(names):
        rate, cpu = harness.median(rates[name]), harness.median(cpus[name])
        ratio = harness.median(ratios[name]) if name in ratios else 1.0
        base = bases[name]
        against = "" if base is None else ("of bare" if base == bare else "of /livez")
        # The same ratio from server CPU per request, which the load generator's share of
        # the two cores does not move: baseline CPU / this path's CPU.
        cpu_ratio = harness.median(cpus[base]) / cpu if base is not None else 1.0
        rows.append(
            [
                name,
                f"{rate:,.0f}",
                " / ".join(f"{r:,.0f}" for r in rates[name]),
                f"**{ratio:.2f}** {against}".strip(),
                f"{cpu * 1e3:.3f}",
                f"**{cpu_ratio:.2f}** {against}".strip(),
            ]
        )
        headline[f"edge_{index}_cpu_ratio"] = cpu_ratio
        headline[f"edge_{index}_rps"] = rate
        headline[f"edge_{index}_ratio"] = ratio
    print(
        harness.table(
            (
                "path",
                "req/s (median)",
                "req/s per round",
                "req/s ratio (median)",
                "server CPU ms/req",
                "CPU ratio",
            ),
            rows,
            "l",
        )
    )
    print(
        f"\n{rounds} rounds x {seconds:g} s per target, {EDGE_CONCURRENCY} in flight, one load "
        "generator process (python -m bench.harness load); ratios are medians of per-round ratios."
    )
    return headline


def before_gateway(running: harness.Stack, code: Path) -> Server:
    """A gateway from another checkout, on the same sandbox, with its own store."""
    return harness.another_gateway(
        running,
        "gateway-before",
        store_url=f"sqlite:///{running.workdir}/before.sqlite3",
        slot_cache_ttl="3600",
        code=code,
    )


async def _prime(urls: Sequence[str]) -> None:
    async with harness.client(4) as session:
        for url in urls:
            answer = await harness.send(session, Call("GET", url, AUTH if "/v1/" in url else {}))
            if answer.status != 200:
                raise RuntimeError(f"{url} answered {answer.status}")


def _number(cell: object) -> float:
    return float(str(cell).replace(",", ""))


def run(quick: bool = False) -> dict[str, float]:
    print("## 2. Warm path (cached availability vs a trivial aiohttp handler)\n")
    return asyncio.run(measure(quick))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.warm", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a short run, for a smoke test")
    parser.add_argument(
        "--edge", action="store_true", help="issue 19's side-by-side: bare, /livez, availability"
    )
    parser.add_argument("--rounds", type=int, default=3, help="with --edge: rounds (medians)")
    parser.add_argument("--seconds", type=float, default=2.0, help="with --edge: per target")
    parser.add_argument(
        "--before", type=Path, help="with --edge: a checkout whose gateway runs alongside"
    )
    args = parser.parse_args(argv)
    if args.edge:
        print("## 2b. The edge (issue 19): bare aiohttp, /livez, cached availability\n")
        measure_edge(args.rounds, args.seconds, args.before)
    else:
        run(args.quick)


if __name__ == "__main__":
    main()

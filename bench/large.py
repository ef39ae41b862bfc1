"""The large answer (issue 19): server CPU of 50 people x 31 days, 15-minute steps, required 1.

Every participant's Vyte answer is cached (SLOT_CACHE_TTL=3600), so what is measured is the
gateway's own work on a 1 MB answer. Two ways the gateway meets that query warm:
- **repeated**: the same query again, so the whole answer (and its body) is reused;
- **recomputed**: the same people and days but a ``notice`` not asked before (it changes no
  slot here, the days being a week away), so the kernel, the answer's shape and its JSON are
  all done again from the cached free time, as after any booking of one of the 50.
Baselines in the same run, measured in turns with them: a bare aiohttp handler sending the
same 1 MB body (what writing such an answer costs at all), and the gateway's ``/livez``.
Server CPU per request is read from /proc (all the process's threads); the load comes from one
generator process (``python -m bench.large load``), so its CPU is not the server's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlencode

from aiohttp import web

from bench import harness, warm
from bench.harness import AUTH, Call, Server

LARGE = "50 participants, 31 days, step 15, required 1 (large answer)"
GOAL_MS = 8.0
CONCURRENCY = 4
# Distinct notices, each a query the gateway has not answered (and so not kept) before.
VARIANTS = 4_000


def large_query() -> dict[str, str]:
    return warm.cases()[LARGE]


def _url(server: Server, **extra: str) -> str:
    return f"{server.url}/v1/availability?{urlencode({**large_query(), **extra})}"


def _serve_body(port: int, path: Path) -> None:
    """A bare aiohttp app answering every GET with the bytes in ``path``."""
    body = path.read_bytes()

    async def answer(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json", charset="utf-8")

    app = web.Application()
    app.router.add_get("/", answer)
    web.run_app(app, host=harness.LOOPBACK, port=port, access_log=None, print=None)


def _load(
    urls: Sequence[str], headers: dict[str, str], *, seconds: float, offset: int = 0
) -> tuple[int, dict[int, int]]:
    """Closed-loop load from its own process, cycling over ``urls`` from ``offset``."""
    command = [sys.executable, "-m", "bench.large", "load", "--for", str(seconds)]
    command += ["--concurrency", str(CONCURRENCY), "--offset", str(offset)]
    for key, value in headers.items():
        command += ["--header", f"{key}: {value}"]
    done = subprocess.run(
        command,
        input="\n".join(harness.loopback_only(url) for url in urls),
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + harness.REQUEST_TIMEOUT + 30,
        env={**os.environ, "PYTHONPATH": str(harness.REPO)},
    )
    answer = json.loads(done.stdout)
    statuses = {int(status): n for status, n in answer["statuses"].items()}
    return int(answer["sent"]), statuses


async def _load_main(
    urls: Sequence[str], headers: dict[str, str], concurrency: int, seconds: float, offset: int
) -> None:
    async with harness.client(concurrency) as session:
        result = await harness.closed_loop(
            session,
            lambda index: Call("GET", urls[(offset + index) % len(urls)], headers),
            concurrency=concurrency,
            seconds=seconds,
            max_requests=len(urls) if len(urls) > 1 else 10**6,
        )
    print(json.dumps({"sent": result.count, "statuses": result.statuses}))


def measure(rounds: int, seconds: float, before: Path | None) -> dict[str, float]:
    """Every target once per round, in turns; medians over the rounds."""
    cpus: dict[str, list[float]] = {}
    with (
        harness.stack(generated_users=50, gateway_env={"SLOT_CACHE_TTL": "3600"}) as running,
        contextlib.ExitStack() as others,
    ):
        gateways = [("", running.gateway)]
        if before is not None:
            old = warm.before_gateway(running, before)
            others.callback(old.stop)
            gateways.insert(0, ("before: ", old))
        body = _fetch(_url(running.gateway))
        body_file = running.workdir / "large.json"
        body_file.write_bytes(body)
        bare = harness.start_server(
            "bare-large",
            ["-m", "bench.large", "bare", "--port", "{port}", "--body", str(body_file)],
            running.workdir,
            ready_path="/",
        )
        others.callback(bare.stop)
        # name -> (server, urls, headers); every recomputed round takes fresh notices.
        targets: dict[str, tuple[Server, list[str], dict[str, str]]] = {
            "bare aiohttp, the same 1 MB body": (bare, [bare.url + "/"], {}),
        }
        for label, gateway in gateways:
            targets[f"{label}gateway /livez"] = (gateway, [gateway.url + "/livez"], {})
            targets[f"{label}large answer, repeated (answer reused)"] = (
                gateway,
                [_url(gateway)],
                AUTH,
            )
            notices = [_url(gateway, notice=str(n)) for n in range(1, VARIANTS + 1)]
            targets[f"{label}large answer, recomputed (free time cached)"] = (
                gateway,
                notices,
                AUTH,
            )
        # Prime: every gateway has every participant's free time cached.
        for _, gateway in gateways:
            _load([_url(gateway)], AUTH, seconds=0.5)
        used = dict.fromkeys(targets, 0)
        counts: dict[str, int] = {}
        for _ in range(rounds):
            for name, (server, urls, headers) in targets.items():
                cpu = server.cpu_seconds()
                sent, statuses = _load(urls, headers, seconds=seconds, offset=used[name])
                if set(statuses) != {200}:
                    raise RuntimeError(f"{name}: unexpected answers {statuses}")
                if len(urls) > 1:
                    used[name] += sent
                    if used[name] >= len(urls):
                        raise RuntimeError(f"{name}: ran out of fresh queries")
                counts[name] = counts.get(name, 0) + sent
                cpus.setdefault(name, []).append((server.cpu_seconds() - cpu) / max(1, sent))
    return _report(cpus, counts, rounds, seconds, len(body))


def _report(
    cpus: dict[str, list[float]], counts: dict[str, int], rounds: int, seconds: float, size: int
) -> dict[str, float]:
    bare = next(iter(cpus))
    bare_cpu = harness.median(cpus[bare])
    rows = []
    headline: dict[str, float] = {}
    for index, (name, values) in enumerate(cpus.items()):
        cpu = harness.median(values)
        rows.append(
            (
                name,
                f"{counts[name]:,}",
                f"**{cpu * 1e3:.2f}**",
                f"{min(values) * 1e3:.2f}-{max(values) * 1e3:.2f}",
                f"{cpu / bare_cpu:.1f}",
                f"{cpu * 1e3 / GOAL_MS:.2f}" if "large" in name else "",
            )
        )
        headline[f"large_{index}_cpu_ms"] = cpu * 1e3
    print(
        harness.table(
            (
                "target",
                "requests",
                "server CPU ms/req (median)",
                "spread over rounds",
                "CPU vs bare 1 MB",
                f"CPU vs the {GOAL_MS:g} ms goal",
            ),
            rows,
            "l",
        )
    )
    print(
        f"\nAnswer: {size:,} bytes. {rounds} rounds x {seconds:g} s per target, in turns,"
        f" {CONCURRENCY} in flight from one load-generator process; CPU from /proc."
    )
    return headline


def _fetch(url: str) -> bytes:
    """One answer's body (it also primes the gateway's cache)."""
    request = urllib.request.Request(harness.loopback_only(url), headers=AUTH)  # noqa: S310
    with urllib.request.urlopen(request, timeout=60) as resp:  # noqa: S310
        body: bytes = resp.read()
    return body


def run(quick: bool = False) -> dict[str, float]:
    print("## The large answer (issue 19)\n")
    return measure(2 if quick else 5, 1.0 if quick else 3.0, None)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.large", description=__doc__)
    commands = parser.add_subparsers(dest="command")
    bare = commands.add_parser("bare", help="serve one body from a file (the baseline)")
    bare.add_argument("--port", type=int, required=True)
    bare.add_argument("--body", type=Path, required=True)
    loader = commands.add_parser("load", help="closed-loop GETs of the URLs on stdin")
    loader.add_argument("--header", action="append", default=[], help="'Name: value'")
    loader.add_argument("--concurrency", type=int, default=CONCURRENCY)
    loader.add_argument("--for", dest="duration", type=float, default=2.0, help="seconds")
    loader.add_argument("--offset", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a short run, for a smoke test")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="per target and round")
    parser.add_argument("--before", type=Path, help="a checkout whose gateway runs alongside")
    args = parser.parse_args(argv)
    if args.command == "bare":
        _serve_body(args.port, args.body)
    elif args.command == "load":
        urls = [line for line in sys.stdin.read().splitlines() if line]
        headers = dict(h.split(": ", 1) for h in args.header)
        asyncio.run(_load_main(urls, headers, args.concurrency, args.duration, args.offset))
    elif args.quick:
        run(quick=True)
    else:
        print("## The large answer (issue 19)\n")
        started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        measure(args.rounds, args.seconds, args.before)
        print(f"Run at {started}.")


if __name__ == "__main__":
    main()

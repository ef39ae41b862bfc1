"""Shared benchmark plumbing: real processes on loopback, a bounded load generator, statistics.

Every process is started on a free 127.0.0.1 port and stopped in a ``finally``; every request
loop is bounded in count and in time, and only ever talks to 127.0.0.1.

``python -m bench.harness trivial --port N`` serves the trivial aiohttp handler that the warm
path is compared with (the framework's ceiling on this machine).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from service.sandbox.config import DEFAULT_SEED_PATH, SANDBOX_API_KEY

REPO = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
TOKEN = "bench-token"  # noqa: S105 - the benchmark gateway's own throwaway token
AUTH = {"Authorization": f"Bearer {TOKEN}"}
VYTE_AUTH = {"Authorization": SANDBOX_API_KEY}
#: no single request in a benchmark may take longer than this
REQUEST_TIMEOUT = 30.0
START_TIMEOUT = 30.0
#: the first generated user's id; generated users are ``BASE_ID + i`` in hex
_BASE_ID = 0xBE0C_0000_0000_0000_0000_0000
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")


# -- processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """One process started by the benchmark, answering on ``url``."""

    name: str
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def memory_kib(self) -> dict[str, int]:
        """VmRSS (resident now) and VmHWM (peak resident) from /proc, in KiB."""
        found: dict[str, int] = {}
        with open(f"/proc/{self.pid}/status", encoding="ascii") as status:
            for line in status:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    found[key] = int(value.split()[0])
        return found

    def cpu_seconds(self) -> float:
        """CPU time all the process's threads have used so far (nanosecond schedstat)."""
        total = 0
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            with contextlib.suppress(OSError):  # a thread may end while being read
                total += int((task / "schedstat").read_text(encoding="ascii").split()[0])
        return total / 1e9

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def pin(pid: int, cpus: set[int]) -> None:
    """Keep every thread of process `pid` on `cpus` (threads it starts later inherit it)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(ProcessLookupError):  # a thread may end meanwhile
            os.sched_setaffinity(int(task.name), cpus)


@contextlib.contextmanager
def upstream_apart(upstream: Server, *others: Server) -> Iterator[bool]:
    """The upstream on a core of its own; `others` and this process on the rest. Yields
    whether that was possible (two cores or more), and gives this process its cores back.

    Vyte runs on other machines: a gateway's work never slows its answers. On one small
    machine the kernel tends to wake the process an answer is for on the core of the process
    that sent it, so each millisecond of a client's CPU delays the sandbox's next answers, and
    a client that does more per answer is measured slower than it is."""
    mine = os.sched_getaffinity(0)
    cores = sorted(mine)
    if len(cores) < 2:
        yield False
        return
    rest = set(cores[1:])
    pin(upstream.pid, {cores[0]})
    for server in others:
        pin(server.pid, rest)
    pin(os.getpid(), rest)
    try:
        yield True
    finally:
        pin(os.getpid(), mine)


def start_server(
    name: str,
    args: Sequence[str],
    workdir: Path,
    *,
    env: dict[str, str] | None = None,
    ready_path: str = "/livez",
    port: int | None = None,
    prefix: Sequence[str] = (),
) -> Server:
    """Start ``python <args>`` with PORT set to a free loopback port; wait until it answers.

    A literal ``{port}`` in ``args`` is replaced by that port; ``prefix`` is a command that
    runs python (valgrind's, say).
    """
    port = port or free_port()
    full_env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(workdir),
        "PYTHONPATH": str(REPO),
        "HOST": LOOPBACK,
        "PORT": str(port),
        "LOG_FORMAT": "json",
        **(env or {}),
    }
    log = workdir / f"{name}-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*prefix, sys.executable, *(a.replace("{port}", str(port)) for a in args)],
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    server = Server(name, proc, f"http://{LOOPBACK}:{port}", log)
    try:
        _wait_until_up(server, ready_path)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_until_up(server: Server, ready_path: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(
                f"{server.name} exited with {server.proc.returncode}:\n{server.log.read_text()}"
            )
        try:
            with urllib.request.urlopen(server.url + ready_path, timeout=1):  # noqa: S310
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{server.name} did not come up:\n{server.log.read_text()}")


@dataclass
class Stack:
    """A sandbox (the upstream) and a gateway in front of it, both real processes."""

    sandbox: Server
    gateway: Server
    workdir: Path


@contextlib.contextmanager
def workdir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="booking-gateway-bench-") as path:
        yield Path(path)


@contextlib.contextmanager
def stack(
    *,
    generated_users: int = 0,
    gateway_env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """Start ``sandbox`` (seeded with the demo users plus ``generated_users``) and ``serve``.

    Both are stopped on the way out, whatever happens.
    """
    with workdir() as tmp:
        sandbox_args = ["-m", "service", "sandbox", "--host", LOOPBACK, "--port", "{port}"]
        if generated_users:
            seed = tmp / "seed.json"
            write_seed(seed, generated_users)
            sandbox_args += ["--seed", str(seed)]
        sandbox = start_server("sandbox", sandbox_args, tmp, ready_path="/_sandbox/stats")
        try:
            env = {
                "VYTE_BASE_URL": sandbox.url,
                "VYTE_API_KEY": SANDBOX_API_KEY,
                "API_TOKENS": f"bench:{TOKEN}",
                "STORE_URL": f"sqlite:///{tmp}/gateway.sqlite3",
                "LOG_LEVEL": "info",
                "SHUTDOWN_TIMEOUT": "5",
                **(gateway_env or {}),
            }
            gateway = start_server("gateway", ["-m", "service", "serve"], tmp, env=env)
            try:
                profiler = _profile(gateway)
                try:
                    yield Stack(sandbox, gateway, tmp)
                finally:
                    if profiler is not None:
                        _stop_profiler(profiler)
            finally:
                gateway.stop()
        finally:
            sandbox.stop()


def another_gateway(
    running: Stack,
    name: str,
    *,
    store_url: str,
    slot_cache_ttl: str,
    code: Path | None = None,
) -> Server:
    """One more gateway on `running`'s sandbox, with its own store; from another checkout of
    the repository when `code` is given (a before/after in one run)."""
    env = {
        "VYTE_BASE_URL": running.sandbox.url,
        "VYTE_API_KEY": VYTE_AUTH["Authorization"],
        "API_TOKENS": f"bench:{TOKEN}",
        "STORE_URL": store_url,
        "LOG_LEVEL": "info",
        "SHUTDOWN_TIMEOUT": "5",
        "SLOT_CACHE_TTL": slot_cache_ttl,
    }
    if code is not None:
        env["PYTHONPATH"] = str(code.resolve())
    return start_server(name, ["-m", "service", "serve"], running.workdir, env=env)


def interleaved_load(
    targets: dict[str, tuple[Server, str, dict[str, str]]],
    *,
    rounds: int,
    seconds: float,
    concurrency: int,
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Closed-loop load on every target once per round, in order (a noisy moment hits all of
    them alike): per target, req/s and its server's CPU seconds per request in each round.
    Any answer but 200 stops the run."""
    rates: dict[str, list[float]] = {name: [] for name in targets}
    cpus: dict[str, list[float]] = {name: [] for name in targets}
    for _ in range(rounds):
        for name, (server, url, headers) in targets.items():
            cpu = server.cpu_seconds()
            result = load_process(url, headers, concurrency=concurrency, seconds=seconds)
            if result.errors or set(result.statuses) != {200}:
                raise RuntimeError(f"{url}: unexpected answers {result.statuses}")
            rates[name].append(result.rate)
            # The CPU includes the loader's 0.2 s warm-up; per request it is still fair.
            cpus[name].append((server.cpu_seconds() - cpu) / result.count)
    return rates, cpus


def _profile(gateway: Server) -> subprocess.Popen[bytes] | None:
    """With BENCH_PY_SPY=/path/to/py-spy, record the gateway while it runs (collapsed stacks,
    one file per gateway, in BENCH_PROFILE_DIR or the current directory; BENCH_PY_SPY_RATE
    samples a second, 250 by default). Off by default: the
    suite needs nothing beyond the project's own environment."""
    py_spy = os.environ.get("BENCH_PY_SPY")
    if not py_spy:
        return None
    folder = Path(os.environ.get("BENCH_PROFILE_DIR", "."))
    folder.mkdir(parents=True, exist_ok=True)
    output = folder / f"gateway-{time.strftime('%H%M%S')}-{gateway.pid}.txt"
    print(f"(profiling the gateway into {output})", file=sys.stderr)
    rate = os.environ.get("BENCH_PY_SPY_RATE", "250")
    command = [py_spy, "record", "--pid", str(gateway.pid), "--rate", rate]
    command += ["--threads", "--format", "raw", "--nonblocking", "--output", str(output)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL)


def _stop_profiler(profiler: subprocess.Popen[bytes]) -> None:
    profiler.send_signal(signal.SIGINT)  # py-spy writes its output on Ctrl-C
    try:
        profiler.wait(30)
    except subprocess.TimeoutExpired:
        profiler.kill()
        profiler.wait()


@contextlib.contextmanager
def trivial_server() -> Iterator[Server]:
    """The trivial aiohttp handler (``python -m bench.harness trivial``), stopped on exit."""
    with workdir() as tmp:
        server = start_server(
            "trivial", ["-m", "bench.harness", "trivial", "--port", "{port}"], tmp, ready_path="/"
        )
        try:
            yield server
        finally:
            server.stop()


# -- seed data ---------------------------------------------------------------------------


def user_id(index: int) -> str:
    return f"{_BASE_ID + index:024x}"


def user_email(index: int) -> str:
    return f"user{index}@bench.example"


def participant(index: int) -> str:
    """Generated participant ``index`` as the gateway is asked for it: ids and emails mixed."""
    return user_id(index) if index % 2 == 0 else user_email(index)


def monday_in(weeks: int) -> date:
    """The Monday ``weeks`` weeks after this week's. Benches ask about days counted from the
    day they run, since the gateway refuses the past."""
    today = datetime.now(UTC).date()
    return today + timedelta(days=7 * weeks - today.weekday())


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def workweek_query(weeks: int = 9) -> dict[str, str]:
    """30-minute slots, Monday to Friday of the week `weeks` after this one, in Paris: the
    fan-out and replica benches' query."""
    monday = monday_in(weeks)
    return {
        "duration": "30",
        "from": monday.isoformat(),
        "to": (monday + timedelta(days=4)).isoformat(),
        "timezone": "Europe/Paris",
    }


SEED_FIRST_WEEK = 1
"""The generated users' meetings cover the 365 days from ``monday_in(SEED_FIRST_WEEK)``."""


def write_seed(path: Path, count: int, *, rng_seed: int = 20_261_123) -> None:
    """The demo seed plus ``count`` generated users in European time zones (08:00-18:00 on
    weekdays, one or two meetings a day for a year from next week, so shared free time exists
    but is cut up)."""
    seed = json.loads(DEFAULT_SEED_PATH.read_text(encoding="utf-8"))
    rng = random.Random(rng_seed)
    zones = ("Europe/Paris", "Europe/Berlin", "Europe/London", "Europe/Madrid")
    first = monday_in(SEED_FIRST_WEEK)
    for index in range(count):
        busy = []
        for offset in range(365):
            day = first + timedelta(days=offset)
            if day.weekday() >= 5:
                continue
            for _ in range(rng.randrange(1, 3)):
                start = datetime(day.year, day.month, day.day, 7, tzinfo=UTC) + timedelta(
                    minutes=30 * rng.randrange(0, 20)
                )
                end = start + timedelta(minutes=30 * rng.randrange(1, 4))
                busy.append({"start": start.isoformat(), "end": end.isoformat()})
        seed["users"].append(
            {
                "_id": user_id(index),
                "full_name": f"Bench User {index}",
                "emails": [user_email(index)],
                "timezone": zones[index % len(zones)],
                "working_hours": {day: [["08:00", "18:00"]] for day in _WEEKDAYS},
                "busy": busy,
            }
        )
    path.write_text(json.dumps(seed), encoding="utf-8")


# -- HTTP clients ------------------------------------------------------------------------


def loopback_only(url: str) -> str:
    if urlsplit(url).hostname != LOOPBACK:
        raise ValueError(f"benchmarks only send traffic to {LOOPBACK}, not {url}")
    return url


@contextlib.asynccontextmanager
async def client(connections: int = 100) -> AsyncIterator[aiohttp.ClientSession]:
    connector = aiohttp.TCPConnector(limit=connections, force_close=False)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        yield session


@dataclass(frozen=True)
class Call:
    """One request to send: method, loopback URL, headers, optional JSON body."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None


@dataclass(frozen=True)
class Answer:
    status: int
    seconds: float
    data: Any = None


async def send(session: aiohttp.ClientSession, call: Call, *, want_json: bool = False) -> Answer:
    """Send ``call``; status 0 means no answer (connection error or timeout)."""
    started = time.perf_counter()
    try:
        async with session.request(
            call.method, loopback_only(call.url), headers=call.headers, json=call.body
        ) as resp:
            raw = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError):
        return Answer(0, time.perf_counter() - started)
    elapsed = time.perf_counter() - started
    return Answer(status, elapsed, json.loads(raw) if want_json and raw else None)


async def get(session: aiohttp.ClientSession, url: str, headers: dict[str, str]) -> Answer:
    return await send(session, Call("GET", url, headers))


async def admin(session: aiohttp.ClientSession, sandbox: Server, path: str, body: Any) -> None:
    """POST to the sandbox's ``/_sandbox/...`` admin API (faults, reset)."""
    answer = await send(session, Call("POST", sandbox.url + path, {}, body))
    if answer.status >= 300:
        raise RuntimeError(f"sandbox {path} answered {answer.status}")


@dataclass
class LoadResult:
    """What a load run measured: latencies of answered requests, by status."""

    seconds: float
    latencies: list[float]
    statuses: dict[int, int]
    late_starts: int = 0

    @property
    def count(self) -> int:
        return sum(self.statuses.values())

    @property
    def errors(self) -> int:
        """Requests that got no answer or a 5xx."""
        return sum(n for status, n in self.statuses.items() if status == 0 or status >= 500)

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds else 0.0


async def closed_loop(
    session: aiohttp.ClientSession,
    calls: Callable[[int], Call],
    *,
    concurrency: int,
    seconds: float,
    max_requests: int,
) -> LoadResult:
    """``concurrency`` workers send back-to-back until ``seconds`` or ``max_requests``."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    counter = iter(range(max_requests))
    started = time.perf_counter()
    deadline = started + seconds

    async def worker() -> None:
        for index in counter:
            if time.perf_counter() >= deadline:
                return
            answer = await send(session, calls(index))
            statuses[answer.status] = statuses.get(answer.status, 0) + 1
            latencies.append(answer.seconds)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return LoadResult(time.perf_counter() - started, latencies, statuses)


async def open_loop(
    session: aiohttp.ClientSession,
    calls: Callable[[int], Call],
    *,
    rate: float,
    seconds: float,
) -> LoadResult:
    """Send at a fixed ``rate`` for ``seconds``, whatever the answers do (open loop).

    Latency is counted from the moment a request was due, not when it was sent, so a server
    that falls behind is charged for the queue it causes (no coordinated omission).
    """
    total = int(rate * seconds)
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    late = 0
    started = time.perf_counter()

    async def one(index: int, due: float) -> None:
        answer = await send(session, calls(index))
        finished = time.perf_counter()
        statuses[answer.status] = statuses.get(answer.status, 0) + 1
        latencies.append(finished - due)

    tasks: list[asyncio.Task[None]] = []
    for index in range(total):
        due = started + index / rate
        wait = due - time.perf_counter()
        if wait > 0.001:
            await asyncio.sleep(wait)
        elif wait < -0.005:
            late += 1
        tasks.append(asyncio.create_task(one(index, due)))
    if tasks:
        await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT + 5)
    for task in tasks:
        task.cancel()
    sent_for = max(time.perf_counter() - started, seconds)
    return LoadResult(sent_for, latencies, statuses, late)


def load_process(
    url: str, headers: dict[str, str], *, concurrency: int, seconds: float
) -> LoadResult:
    """Closed-loop load from its own process (``python -m bench.harness load``), so the load
    generator's CPU is not the event loop of whoever measures; latencies are not kept."""
    command = [sys.executable, "-m", "bench.harness", "load", "--url", loopback_only(url)]
    command += ["--concurrency", str(concurrency), "--seconds", str(seconds)]
    for key, value in headers.items():
        command += ["--header", f"{key}: {value}"]
    done = subprocess.run(
        command,
        capture_output=True,
        check=True,
        timeout=seconds + REQUEST_TIMEOUT,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    answer = json.loads(done.stdout)
    statuses = {int(status): n for status, n in answer["statuses"].items()}
    return LoadResult(answer["seconds"], [], statuses)


async def _load_main(url: str, headers: dict[str, str], concurrency: int, seconds: float) -> None:
    call = Call("GET", url, headers)
    async with client(concurrency) as session:
        # A short warm-up opens the connections before the clock starts.
        await closed_loop(
            session, lambda _: call, concurrency=concurrency, seconds=0.2, max_requests=10_000
        )
        result = await closed_loop(
            session, lambda _: call, concurrency=concurrency, seconds=seconds, max_requests=10**6
        )
    print(json.dumps({"seconds": result.seconds, "statuses": result.statuses}))


# -- statistics and reporting ------------------------------------------------------------


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile (``pct`` in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.1f}"


def table(header: Sequence[str], rows: Sequence[Sequence[object]], align: str = "") -> str:
    """A Markdown table; ``align`` has one letter per column (l or r), right by default."""
    marks = [":---" if (align[i : i + 1] or "r") == "l" else "---:" for i in range(len(header))]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(marks) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    model = "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "unknown"
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpus": str(os.cpu_count()),
        "cpu": model,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "aiohttp": aiohttp.__version__,
        "load average at start": load,
    }


# -- the trivial server ------------------------------------------------------------------


async def _trivial(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def _serve_trivial(port: int) -> None:
    app = web.Application()
    app.router.add_get("/", _trivial)
    web.run_app(app, host=LOOPBACK, port=port, access_log=None, print=None)


# -- profiles ----------------------------------------------------------------------------


def top(path: Path, count: int = 25) -> str:
    """The event-loop thread's busiest functions in a py-spy raw profile: self and inclusive
    share of its samples (a function counted once per sample, however deep it recurs)."""
    own: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in path.read_text(encoding="utf-8").splitlines():
        stack, _, samples = line.rpartition(" ")
        frames = stack.split(";")
        if "MainThread" not in frames[0]:
            continue
        weight = int(samples)
        total += weight
        names = [_frame_name(frame) for frame in frames[1:]] or ["<idle>"]
        own[names[-1]] = own.get(names[-1], 0) + weight
        for name in set(names):
            inclusive[name] = inclusive.get(name, 0) + weight
    lines = [f"{total} samples of the event-loop thread", "", "self:"]
    for title, counts in (("self", own), ("inclusive", inclusive)):
        if title == "inclusive":
            lines += ["", "inclusive:"]
        ranked = sorted(counts.items(), key=lambda item: -item[1])[:count]
        lines += [f"{100 * n / max(1, total):5.1f}%  {name}" for name, n in ranked]
    return "\n".join(lines)


def _frame_name(frame: str) -> str:
    """``func (/long/path/module.py:12)`` -> ``func (module path)``."""
    function, _, where = frame.strip().partition(" (")
    where = where.rstrip(")").rsplit(":", 1)[0]
    for prefix in (f"{REPO}/", "site-packages/"):
        where = where.split(prefix, 1)[-1]
    return f"{function} ({where})" if where else function


def quick_cli(
    run: Callable[[bool], object], description: str | None, argv: Sequence[str] | None
) -> None:
    """The command line of a part that only knows --quick."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a short run, for a smoke test")
    run(parser.parse_args(argv).quick)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.harness")
    commands = parser.add_subparsers(dest="command", required=True)
    trivial = commands.add_parser("trivial", help="serve the trivial aiohttp handler")
    trivial.add_argument("--port", type=int, required=True)
    loader = commands.add_parser("load", help="closed-loop GET load; prints a JSON summary")
    loader.add_argument("--url", required=True)
    loader.add_argument("--header", action="append", default=[], help="'Name: value'")
    loader.add_argument("--concurrency", type=int, default=32)
    loader.add_argument("--seconds", type=float, default=2.0)
    summary = commands.add_parser("top", help="summarise a BENCH_PY_SPY profile")
    summary.add_argument("profile", type=Path)
    summary.add_argument("--count", type=int, default=25)
    args = parser.parse_args(argv)
    if args.command == "trivial":
        _serve_trivial(args.port)
    elif args.command == "load":
        headers = dict(h.split(": ", 1) for h in args.header)
        asyncio.run(_load_main(loopback_only(args.url), headers, args.concurrency, args.seconds))
    else:
        print(top(args.profile, args.count))


if __name__ == "__main__":
    main()

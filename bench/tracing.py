"""Tracing cost on the warm path: the gateway untraced, traced with no exporter, and exporting.

Three gateways (each with its own sandbox) run side by side on loopback, with the same
cached availability queries as the warm part:

- **untraced**: the gateway with its tracing hooks replaced by no-ops (``python -m bench.tracing
  untraced serve``), the baseline;
- **no exporter**: the gateway as shipped with no OTEL_* variables: trace context flows
  (ids in logs, traceparent out), nothing is recorded;
- **exporter on**: OTEL_EXPORTER_OTLP_ENDPOINT names an OTLP/HTTP receiver this part starts on
  127.0.0.1 (``python -m bench.tracing receiver``, which counts what it is sent); every request
  is sampled and exported.

They are measured back to back in many short rounds, and each ratio is the median of the
rounds' paired ratios, so a noisy moment on the shared machine does not land on one
configuration only. Goals: no exporter loses at most
3 % of the untraced req/s, exporter on at most 15 %.

Three processes differ by more than their code: identical ones came out up to 6 % apart (an
A/A run, ``--same``). ``--one-process`` runs one gateway instead, exporting to the receiver,
and switches it between the three configurations before each measurement
(``python -m bench.tracing switchable serve``: on SIGUSR1 it reads the configuration from a
file and swaps its hooks and tracer), so every ratio compares one process with itself.

Even so, req/s on this shared machine resolves about 4 %. ``--instructions`` counts instead:
the switchable gateway runs under valgrind's callgrind, and each configuration serves the
same 1,024 requests, its instructions counted (export thread included: a switch exports
what the load queued before the count is read). An A/A run (``--instructions --same``)
agrees to 0.15 %. Instructions are not time (a cache miss costs more than an add), so this
is the req/s ratio the code would have at equal cycles per instruction.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from bench import harness, warm
from bench.harness import AUTH, LOOPBACK, TOKEN, Call, Server
from service.sandbox.config import SANDBOX_API_KEY

CONCURRENCY = 16
CONFIGS = ("untraced", "no exporter", "exporter on")
# The cheapest warm query (where tracing's share of the work is largest) and a mid-sized one.
CASES = ("1 participant, 1 day", "5 participants, 5 days")
#: rounds of a full run (each 0.3 s per gateway and query); more narrow the quartiles (an
#: A/A run, --same, shows how far apart identical gateways come out)
ROUNDS = 24


@contextlib.contextmanager
def _gateway(
    tmp: Path,
    name: str,
    vyte: str,
    extra: dict[str, str],
    kind: str = "service",
    prefix: Sequence[str] = (),
) -> Iterator[Server]:
    """A gateway: the service as shipped, or this module's `untraced` or `switchable` one."""
    args = ["-m", "service", "serve"]
    if kind != "service":
        args = ["-m", "bench.tracing", kind, "serve"]
    env = {
        "VYTE_BASE_URL": vyte,
        "VYTE_API_KEY": SANDBOX_API_KEY,
        "API_TOKENS": f"bench:{TOKEN}",
        "STORE_URL": f"sqlite:///{tmp}/{name.replace(' ', '-')}.sqlite3",
        "LOG_LEVEL": "info",
        "SLOT_CACHE_TTL": "3600",
        "SHUTDOWN_TIMEOUT": "5",
        **extra,
    }
    server = harness.start_server(
        f"gateway-{name.replace(' ', '-')}", args, tmp, env=env, prefix=prefix
    )
    try:
        yield server
    finally:
        server.stop()


def _sandbox_and_receiver(tmp: Path, stack: contextlib.ExitStack) -> tuple[Server, Server]:
    """The seeded sandbox the gateways ask and the OTLP receiver they export to."""
    seed = tmp / "seed.json"
    harness.write_seed(seed, 50)
    sandbox = harness.start_server(
        "sandbox",
        ["-m", "service", "sandbox", "--host", LOOPBACK, "--port", "{port}", "--seed", str(seed)],
        tmp,
        ready_path="/_sandbox/stats",
    )
    stack.callback(sandbox.stop)
    receiver = harness.start_server(
        "otlp-receiver",
        ["-m", "bench.tracing", "receiver", "--port", "{port}"],
        tmp,
        ready_path="/stats",
    )
    stack.callback(receiver.stop)
    return sandbox, receiver


def _exporting(receiver: Server) -> dict[str, str]:
    return {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_TRACES_SAMPLER": "always_on"}


def _queries() -> dict[str, dict[str, str]]:
    """The warm part's queries this part measures (CASES)."""
    return {name: params for name, params in warm.cases().items() if name in CASES}


class _Switch:
    """Switches a switchable gateway to a configuration, and waits until it has."""

    def __init__(self, tmp: Path) -> None:
        self.mode = tmp / "tracing-mode"
        self.ack = tmp / "tracing-mode.ack"
        self.count = 0
        self.mode.write_text("exporter on\n0", encoding="utf-8")

    def env(self) -> dict[str, str]:
        return {"BENCH_TRACING_MODE": str(self.mode)}

    def __call__(self, server: Server, config: str) -> None:
        # Between loads only: a request must leave through the hooks it entered by.
        self.count += 1
        self.mode.write_text(f"{config}\n{self.count}", encoding="utf-8")
        os.kill(server.pid, signal.SIGUSR1)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if self.ack.read_text(encoding="utf-8") == str(self.count):
                    return
            time.sleep(0.005)
        raise RuntimeError(f"{server.name} did not switch to {config!r}")


@contextlib.contextmanager
def _stacks(
    same: bool = False, one_process: bool = False
) -> Iterator[tuple[dict[str, Server], Server, Callable[[str], None]]]:
    """The receiver, one sandbox, and the three gateways in front of it (`same`: all three
    untraced, to see what the bench itself tells apart; `one_process`: one switchable
    gateway for all three), and what readies the gateway of a configuration."""
    with harness.workdir() as tmp, contextlib.ExitStack() as stack:
        sandbox, receiver = _sandbox_and_receiver(tmp, stack)
        extras = {"untraced": {}, "no exporter": {}, "exporter on": _exporting(receiver)}
        if one_process:
            switcher = _Switch(tmp)
            extra = {**extras["exporter on"], **switcher.env()}
            one = stack.enter_context(
                _gateway(tmp, "switchable", sandbox.url, extra, kind="switchable")
            )
            yield (
                dict.fromkeys(CONFIGS, one),
                receiver,
                lambda config: switcher(one, "untraced" if same else config),
            )
            return
        gateways = {
            name: stack.enter_context(
                _gateway(
                    tmp,
                    name,
                    sandbox.url,
                    {} if same else extras[name],
                    kind="untraced" if same or name == "untraced" else "service",
                )
            )
            for name in CONFIGS
        }
        yield gateways, receiver, lambda config: None


async def _load(
    session: aiohttp.ClientSession, server: Server, call: Call, seconds: float
) -> tuple[float, float]:
    """req/s over CONCURRENCY connections, and the server's CPU ms per request."""
    cpu = server.cpu_seconds()
    result = await harness.closed_loop(
        session, lambda _: call, concurrency=CONCURRENCY, seconds=seconds, max_requests=200_000
    )
    if result.errors or set(result.statuses) != {200}:
        raise RuntimeError(f"{call.url}: unexpected answers {result.statuses}")
    return result.rate, (server.cpu_seconds() - cpu) / max(1, result.count) * 1e3


def _quartiles(values: list[float]) -> str:
    ordered = sorted(values)
    return f"{harness.percentile(ordered, 25):.2f}-{harness.percentile(ordered, 75):.2f}"


def _stats(receiver: Server) -> dict[str, int]:
    with urllib.request.urlopen(receiver.url + "/stats", timeout=5) as resp:  # noqa: S310
        stats: dict[str, int] = json.loads(resp.read())
        return stats


async def measure(
    quick: bool, rounds: int = ROUNDS, same: bool = False, one_process: bool = False
) -> dict[str, float]:
    seconds, rounds = (0.3, 2) if quick else (0.3, rounds)
    queries = _queries()
    # Per (case, config): req/s and CPU ms/req of every round.
    runs: dict[tuple[str, str], list[tuple[float, float]]] = {}
    with _stacks(same, one_process) as (gateways, receiver, switch):
        async with harness.client(CONCURRENCY) as session:
            calls = {
                (case, config): Call(
                    "GET", f"{gateways[config].url}/v1/availability?{urlencode(params)}", AUTH
                )
                for case, params in queries.items()
                for config in CONFIGS
            }
            for (_case, config), call in calls.items():  # prime the caches, warm up
                switch(config)
                await _load(session, gateways[config], call, 0.5)
            for index in range(rounds):
                for case in queries:
                    # The three back to back, in an order that turns each round.
                    order = CONFIGS[index % 3 :] + CONFIGS[: index % 3]
                    for config in order:
                        switch(config)
                        measured = await _load(
                            session, gateways[config], calls[(case, config)], seconds
                        )
                        runs.setdefault((case, config), []).append(measured)
        exported = _stats(receiver)
    rows: list[list[object]] = []
    headline: dict[str, float] = {}
    for index, case in enumerate(queries):
        base = runs[(case, "untraced")]
        for config in CONFIGS:
            own = runs[(case, config)]
            # Each round's ratio against the untraced run next to it, then the median: the
            # machine is shared, and a paired ratio cancels most of what the others do.
            rate_ratios = [o[0] / b[0] for o, b in zip(own, base, strict=True)]
            cpu_ratios = [o[1] / b[1] for o, b in zip(own, base, strict=True)]
            rate_ratio, cpu_ratio = harness.median(rate_ratios), harness.median(cpu_ratios)
            rate = harness.median([o[0] for o in own])
            cpu = harness.median([o[1] for o in own])
            rows.append(
                [
                    case,
                    # An A/A run's gateways are all untraced: named by their slot only.
                    f"untraced, in the {config!r} slot" if same else config,
                    f"{rate:,.0f}",
                    f"{rate_ratio:.3f} ({_quartiles(rate_ratios)})",
                    f"{cpu:.3f}",
                    f"{cpu_ratio:.3f} ({_quartiles(cpu_ratios)})",
                ]
            )
            key = config.replace(" ", "_")
            headline[f"tracing_{index}_{key}_rps_ratio"] = rate_ratio
            headline[f"tracing_{index}_{key}_cpu_ratio"] = cpu_ratio
    print(
        harness.table(
            (
                "query",
                "gateway",
                f"req/s ({CONCURRENCY} conns), median",
                "req/s vs untraced: median of paired rounds (quartiles)",
                "server CPU ms/req, median",
                "CPU/req vs untraced: median (quartiles)",
            ),
            rows,
            "ll",
        )
    )
    print()
    three = "configurations of one gateway" if one_process else "gateways"
    exports = (
        ""
        if same
        else f" The receiver got {exported['posts']:,} OTLP/HTTP posts ({exported['bytes']:,} "
        "bytes) from the exporting gateway; server CPU includes its export thread."
    )
    print(
        f"{rounds} rounds of {seconds:g} s per gateway and query, the three {three} back to back "
        f"in each round.{exports}"
    )
    return headline


# -- instructions: what callgrind counts, the same in every run --------------------------------

#: requests per counted load: two full export batches, so no span waits for the delay
COUNTED_REQUESTS = 1024
COUNTED_ROUNDS = 3
#: a callgrind'd gateway runs some 50 times slower: the export delay is stretched with it,
#: so batches fill as they would at full speed (a switch flushes what is left)
_SLOW_DELAY_MS = "600000"


def _callgrind(pid: int, command: str, vgdb: Path) -> None:
    # valgrind names its control pipes by the gateway's $HOST (its listening address) and
    # user (none in its environment), which callgrind_control must name them by too
    env = {k: v for k, v in os.environ.items() if k not in ("USER", "LOGNAME")}
    env["HOST"] = LOOPBACK
    done = subprocess.run(
        ["callgrind_control", f"--vgdb-prefix={vgdb}", command, str(pid)],
        check=True,
        capture_output=True,
        text=True,
        env=env,
    )
    if "OK." not in done.stdout:
        raise RuntimeError(f"callgrind_control {command} {pid}: {done.stdout}{done.stderr}")


def _dump(pid: int, where: Path, vgdb: Path) -> int:
    """The instruction count ("totals:") since the last zeroing: the one dump in `where`."""
    for path in where.iterdir():
        path.unlink()
    _callgrind(pid, "--dump", vgdb)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for path in where.iterdir():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                if line.startswith("totals:"):
                    return int(line.split()[1])
        time.sleep(0.05)
    raise RuntimeError(f"no callgrind dump in {where}")


async def measure_instructions(
    rounds: int = COUNTED_ROUNDS, same: bool = False
) -> dict[str, float]:
    """Instructions per request of one switchable gateway running under callgrind, in each
    configuration: the process's own work, export thread included, counted rather than
    timed, so a busy machine changes nothing (the socket work in the kernel is not counted)."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("--instructions needs valgrind (apt-get install -y valgrind)")
    queries = _queries()
    runs: dict[tuple[str, str], list[float]] = {}
    with harness.workdir() as tmp, contextlib.ExitStack() as stack:
        sandbox, receiver = _sandbox_and_receiver(tmp, stack)
        switcher = _Switch(tmp)
        dumps, vgdb = tmp / "callgrind", tmp / "vgdb"
        dumps.mkdir()
        extra = {
            **_exporting(receiver),
            **switcher.env(),
            "BENCH_TRACING_FLUSH": "1",
            "OTEL_BSP_SCHEDULE_DELAY": _SLOW_DELAY_MS,
        }
        prefix = [
            "valgrind",
            "--tool=callgrind",
            "--instr-atstart=no",  # start-up and warm-up at a seventh of full speed, uncounted
            f"--callgrind-out-file={dumps}/callgrind.out",
            f"--vgdb-prefix={vgdb}",
        ]
        one = stack.enter_context(
            _gateway(tmp, "callgrind", sandbox.url, extra, kind="switchable", prefix=prefix)
        )

        def switch(config: str) -> None:
            switcher(one, "untraced" if same else config)

        async with harness.client(CONCURRENCY) as session:
            calls = {
                case: Call("GET", f"{one.url}/v1/availability?{urlencode(params)}", AUTH)
                for case, params in queries.items()
            }

            async def load(call: Call) -> None:
                result = await harness.closed_loop(
                    session,
                    lambda _: call,
                    concurrency=CONCURRENCY,
                    seconds=3600,
                    max_requests=COUNTED_REQUESTS,
                )
                if result.errors or set(result.statuses) != {200}:
                    raise RuntimeError(f"{call.url}: unexpected answers {result.statuses}")

            for call in calls.values():  # prime the caches, warm up, uncounted
                for config in CONFIGS:
                    switch(config)
                    await load(call)
            _callgrind(one.pid, "--instr=on", vgdb)
            for index in range(rounds):
                for case, call in calls.items():
                    for config in CONFIGS[index % 3 :] + CONFIGS[: index % 3]:
                        switch(config)
                        _callgrind(one.pid, "--zero", vgdb)
                        await load(call)
                        switch(config)  # exports what the load queued, counted with it
                        counted = _dump(one.pid, dumps, vgdb) / COUNTED_REQUESTS
                        runs.setdefault((case, config), []).append(counted)
        exported = _stats(receiver)
    rows: list[list[object]] = []
    headline: dict[str, float] = {}
    for index, case in enumerate(queries):
        base = harness.median(runs[(case, "untraced")])
        for config in CONFIGS:
            own = runs[(case, config)]
            ratios = [base / value for value in own]
            rows.append(
                [
                    case,
                    f"untraced, in the {config!r} slot" if same else config,
                    f"{harness.median(own) / 1000:,.1f}",
                    f"{min(own) / 1000:,.1f}-{max(own) / 1000:,.1f}",
                    f"{harness.median(ratios):.4f} ({min(ratios):.4f}-{max(ratios):.4f})",
                ]
            )
            headline[f"tracing_{index}_{config.replace(' ', '_')}_instructions_ratio"] = (
                harness.median(ratios)
            )
    print(
        harness.table(
            (
                "query",
                "gateway",
                "thousand instructions/request, median",
                "range",
                "untraced / this: the req/s ratio at equal cycles per instruction (range)",
            ),
            rows,
            "ll",
        )
    )
    print()
    print(
        f"{rounds} rounds of {COUNTED_REQUESTS:,} requests per configuration and query, one "
        f"gateway under callgrind. The receiver got {exported['posts']:,} posts "
        f"({exported['bytes']:,} bytes)."
    )
    return headline


def _hook_costs(count: int) -> dict[str, float]:
    """CPU microseconds the tracing hooks add to one warm request, measured in this process
    (steadier than req/s on a busy machine): the request span around a trivial handler and
    the trace ids of one log line; when exporting, the recorded span and its OTLP encoding
    (the gateway's exporter, service.otlp, and for comparison the SDK's span and encoder)."""
    from aiohttp.test_utils import make_mocked_request
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from service import tracing
    from service.http import tracing as http_tracing
    from service.otlp.export import BatchExporter, ExportSettings
    from service.otlp.spans import RecordingTracer, sampler

    class Encoding(SpanExporter):
        def export(self, spans: Any) -> SpanExportResult:
            encode_spans(spans).SerializeToString()
            return SpanExportResult.SUCCESS

    async def handler(request: web.Request) -> web.StreamResponse:
        return web.Response()

    async def per_request(hooked: bool) -> float:
        app = web.Application()
        app.router.add_get("/v1/availability", handler)
        request = make_mocked_request("GET", "/v1/availability", app=app)
        match = await app.router.resolve(request)
        match.add_app(app)
        request._match_info = match
        event: dict[str, Any] = {"event": "request"}
        started = time.process_time()
        for _ in range(count):
            if hooked:
                entered, _ = http_tracing.enter(request)
                await handler(request)
                tracing.add_trace_ids(None, "info", event)
                http_tracing.leave(entered, 200, None)
            else:
                await handler(request)
        return (time.process_time() - started) / count * 1e6

    async def exporting(tracer: Any, flush: Any) -> float:
        tracing.use_tracer(tracer)
        try:
            started = time.process_time()
            await per_request(True)
            flush()  # the export thread's encoding counts too
            return (time.process_time() - started) / count * 1e6
        finally:
            tracing.use_tracer(None)

    async def measure_all() -> dict[str, float]:
        bare = min([await per_request(False) for _ in range(3)])
        quiet = min([await per_request(True) for _ in range(3)]) - bare
        ours, sdk = [], []
        for _ in range(3):
            # Not started: shutdown() encodes the whole queue in this thread, posting nowhere.
            exporter = BatchExporter(
                ExportSettings(max_queue=count), {"service.name": "bench"}, "bench", bool
            )
            tracer = RecordingTracer(sampler({"OTEL_TRACES_SAMPLER": "always_on"}), exporter.add)
            ours.append(await exporting(tracer, exporter.shutdown) - bare)
            provider = TracerProvider()
            provider.add_span_processor(BatchSpanProcessor(Encoding(), max_queue_size=count))
            try:
                sdk.append(await exporting(provider.get_tracer("bench"), provider.force_flush))
            finally:
                provider.shutdown()
        return {"no exporter": quiet, "exporter on": min(ours), "sdk exporter": min(sdk) - bare}

    return asyncio.run(measure_all())


# -- the processes this part starts --------------------------------------------------------


def _hooks(untraced: bool) -> dict[tuple[Any, str], Any]:
    """The request and Vyte-call hooks of service.tracing as shipped, or as no-ops."""
    from service import tracing
    from service.http import tracing as http_tracing

    if not untraced:
        return {
            (http_tracing, "enter"): http_tracing.enter,
            (http_tracing, "leave"): http_tracing.leave,
            (tracing, "upstream_started"): tracing.upstream_started,
            (tracing, "upstream_ended"): tracing.upstream_ended,
        }
    return {
        (http_tracing, "enter"): lambda request: (None, None),
        (http_tracing, "leave"): lambda entered, status, request_id: None,
        (tracing, "upstream_started"): lambda method, path, host, port, headers: None,
        (tracing, "upstream_ended"): lambda span, status, error: None,
    }


def _no_ids(logger: Any, method: str, event: Any) -> Any:
    return event


def _untraced(argv: Sequence[str]) -> int:
    """Run the service with its tracing hooks replaced by no-ops (the baseline)."""
    from service import logging as service_logging
    from service import tracing, tracing_export

    async def no_export(app: web.Application) -> Any:
        yield

    for (module, name), hook in _hooks(untraced=True).items():
        setattr(module, name, hook)
    tracing.trace_store = lambda store: store  # type: ignore[assignment]
    tracing_export.export = no_export  # type: ignore[assignment]
    service_logging.add_trace_ids = _no_ids  # type: ignore[assignment]
    from service.__main__ import main as service_main

    return service_main(list(argv))


def _switchable(argv: Sequence[str]) -> int:
    """Run the service exporting (OTEL_* set), switchable on SIGUSR1 to the configuration
    named in the first line of the file $BENCH_TRACING_MODE (its second line, a count, goes to
    the file beside it named .ack once switched): untraced (the hooks no-ops, as `untraced` makes
    them), no exporter (the quiet spans, no tracer) or exporter on (the exporter's tracer).
    The exporter's thread stays up throughout, idle unless exporting. With
    $BENCH_TRACING_FLUSH set, a switch first exports every queued span (and answers
    nothing until it has)."""
    import structlog

    from service import logging as service_logging
    from service import tracing

    mode_file = Path(os.environ["BENCH_TRACING_MODE"])
    hooks = {False: _hooks(untraced=False), True: _hooks(untraced=True)}
    real_ids = service_logging.add_trace_ids
    exporting: list[Any] = []

    flush = bool(os.environ.get("BENCH_TRACING_FLUSH"))

    def apply(signum: int, frame: Any) -> None:
        mode, _, count = mode_file.read_text(encoding="utf-8").partition("\n")
        if not exporting:  # the tracer the export context installed at start-up
            exporting.append(tracing.Active.tracer)
        if flush:  # what the last load queued is exported now, before the next one
            exporting[0]._sink.__self__.flush()
        for (module, name), hook in hooks[mode == "untraced"].items():
            setattr(module, name, hook)
        # The log processors are one list, shared by the prebuilt access logger.
        processors = structlog.get_config()["processors"]
        for index, processor in enumerate(processors):
            if processor in (real_ids, _no_ids):
                processors[index] = _no_ids if mode == "untraced" else real_ids
        tracing.use_tracer(exporting[0] if mode == "exporter on" else None)
        ack = mode_file.with_name(mode_file.name + ".ack")
        ack.with_suffix(".tmp").write_text(count, encoding="utf-8")
        ack.with_suffix(".tmp").replace(ack)

    signal.signal(signal.SIGUSR1, apply)
    from service.__main__ import main as service_main

    return service_main(list(argv))


def _receiver(port: int) -> None:
    """An OTLP/HTTP endpoint that accepts every export and counts posts and bytes."""
    counts = {"posts": 0, "bytes": 0}

    async def traces(request: web.Request) -> web.Response:
        counts["bytes"] += len(await request.read())
        counts["posts"] += 1
        return web.Response(body=b"", content_type="application/x-protobuf")

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(counts)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/v1/traces", traces)
    app.router.add_get("/stats", stats)
    web.run_app(app, host=LOOPBACK, port=port, access_log=None, print=None)


def run(
    quick: bool = False,
    rounds: int = ROUNDS,
    same: bool = False,
    one_process: bool = False,
    instructions: bool = False,
) -> dict[str, float]:
    if instructions:
        what = (
            "A/A, untraced in all three slots" if same else "untraced vs no exporter vs exporter on"
        )
        print(f"## 9c. Tracing cost on the warm path, in instructions ({what})\n")
        return asyncio.run(measure_instructions(rounds, same))
    if one_process and not same:
        print("## 9b. Tracing cost on the warm path, one gateway switched between the three\n")
        return asyncio.run(measure(quick, rounds, one_process=True))
    if same:
        where = "one gateway, untraced in all three slots" if one_process else "three gateways"
        print(f"## 9a. Tracing bench, A/A: {where}, all untraced\n")
        headline = asyncio.run(measure(quick, rounds, same=True, one_process=one_process))
        print(
            "\nEvery gateway runs the same code: how far these ratios stray from 1 is what "
            "the bench cannot tell apart at this many rounds."
        )
        return headline
    print("## 9. Tracing cost on the warm path (untraced vs no exporter vs exporter on)\n")
    headline = asyncio.run(measure(quick, rounds))
    hooks = _hook_costs(2_000 if quick else 20_000)
    print()
    print(
        "The hooks alone, in-process (CPU per request: request span and one log line's ids, "
        f"over a bare handler): no exporter {hooks['no exporter']:.1f} µs, exporter on "
        f"{hooks['exporter on']:.1f} µs (span and its OTLP/protobuf encoding included; the "
        f"SDK's span and encoder instead: {hooks['sdk exporter']:.1f} µs)."
    )
    headline.update({f"hooks_{k.replace(' ', '_')}_us": v for k, v in hooks.items()})
    return headline


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("at least 1")
    return value


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["untraced"]:
        raise SystemExit(_untraced(args[1:]))
    if args[:1] == ["switchable"]:
        raise SystemExit(_switchable(args[1:]))
    if args[:1] == ["receiver"]:
        parser = argparse.ArgumentParser(prog="python -m bench.tracing receiver")
        parser.add_argument("--port", type=int, required=True)
        _receiver(parser.parse_args(args[1:]).port)
        return
    parser = argparse.ArgumentParser(
        prog="python -m bench.tracing",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--quick", action="store_true", help="2 rounds, for a smoke test")
    parser.add_argument("--rounds", type=_positive, help=f"rounds (default {ROUNDS})")
    parser.add_argument(
        "--same", action="store_true", help="A/A: all three gateways untraced (the noise floor)"
    )
    parser.add_argument(
        "--one-process",
        action="store_true",
        help="one gateway, switched between the three before each measurement (with --same:"
        " left untraced)",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions per request under callgrind (one gateway, switched;"
        f" default {COUNTED_ROUNDS} rounds)",
    )
    options = parser.parse_args(args)
    if options.quick and options.rounds is not None:
        parser.error("--quick runs 2 rounds: give --quick or --rounds")
    if options.instructions and (options.quick or options.one_process):
        parser.error(
            "--instructions runs one gateway under callgrind: not with --quick or --one-process"
        )
    rounds = options.rounds or (COUNTED_ROUNDS if options.instructions else ROUNDS)
    run(options.quick, rounds, options.same, options.one_process, options.instructions)


if __name__ == "__main__":
    main()

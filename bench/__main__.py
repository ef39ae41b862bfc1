"""``python -m bench [PART ...] [--quick]``: the benchmark suite, or some parts of it.

Parts: fanout, warm, kernel, bookings, memory, load, replicas, delivery, tracing, resync,
reuse, large (all by default, in that order).
Every part starts its own processes on 127.0.0.1 (replicas also a redis-server, when installed)
and stops them; the whole suite takes about four minutes.
Output is Markdown, ready for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from collections.abc import Callable, Sequence

from bench import (
    bookings,
    delivery,
    fanout,
    harness,
    kernel,
    large,
    load,
    memory,
    replicas,
    resync,
    reuse,
    tracing,
    warm,
)

PARTS: dict[str, Callable[[bool], dict[str, float]]] = {
    "fanout": fanout.run,
    "warm": warm.run,
    "kernel": kernel.run,
    "bookings": bookings.run,
    "memory": memory.run,
    "load": load.run,
    "replicas": replicas.run,
    "delivery": delivery.run,
    "tracing": tracing.run,
    "resync": resync.run,
    "reuse": reuse.run,
    "large": large.run,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("parts", nargs="*", metavar="PART", help=", ".join(PARTS))
    parser.add_argument("--quick", action="store_true", help="short runs, for a smoke test")
    args = parser.parse_args(argv)
    unknown = [part for part in args.parts if part not in PARTS]
    if unknown:
        parser.error(f"unknown part {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    chosen = args.parts or list(PARTS)

    command = shlex.join(["python", "-m", "bench", *(argv if argv is not None else sys.argv[1:])])
    print("# booking-gateway benchmarks\n")
    print(harness.table(("", ""), [(k, v) for k, v in harness.machine().items()], "ll"))
    print(f"\nCommand: `{command}`\n", flush=True)
    elapsed: dict[str, float] = {}
    started = time.monotonic()
    for name in chosen:
        began = time.monotonic()
        PARTS[name](args.quick)
        elapsed[name] = time.monotonic() - began
        print(f"\n_{name}: {elapsed[name]:.0f} s_\n", flush=True)
    total = time.monotonic() - started
    print(
        f"Total {total:.0f} s ("
        + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in elapsed.items())
        + ")."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

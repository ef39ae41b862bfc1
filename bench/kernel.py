"""Benchmark of the availability kernel (``find_slots``): throughput, how it scales with S, and
what buffers with ``order=best`` cost against the plain kernel in the same run.

Run: ``python -m bench.kernel`` (``--max-windows 200000`` skips the largest size;
``--ranking-only`` runs only the buffers/``order=best`` comparison), or as part of
``python -m bench``.
"""

import argparse
import gc
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

if __package__ in (None, ""):
    # Started as ``python bench/kernel.py``: make ``service`` importable from the checkout.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from service.domain.freetime import (
    Interval,
    Order,
    SlotMatch,
    candidate_starts,
    find_slots,
    format_instant,
    merge_intervals,
    parse_windows,
)

PARTICIPANTS = 50
DURATION = 30
STEP = 15
QUARTER_HOUR = 900
TIME_ZONE = ZoneInfo("Europe/Berlin")
FIRST_DAY = date(2026, 1, 5)
# Days of data giving S of about 10k, 26k (the 31-day headline), 100k and 1M windows.
SPANS = (12, 31, 118, 1180)
NAIVE_SPANS = (3, 12)
SEED = 20_261_001
RANKED_BUFFERS = 10
RANKED_SPANS = (12, 31, 118)

Free = list[list[Interval]]


def working_hours(days: int, rng: random.Random, *, shuffled: bool) -> Free:
    """Each participant's upstream answer: back-to-back 15-minute windows in working hours
    on weekdays, with meetings (30 min to 2 h) cut out; in time order as Vyte sends them, or
    shuffled to show the cost of sorting."""
    free: Free = []
    for _ in range(PARTICIPANTS):
        # Participants start work between 07:00 and 10:00 (local winter time, UTC+1).
        begins = rng.randrange(7 * 4, 10 * 4 + 1) - 4
        windows: list[Interval] = []
        for offset in range(days):
            day = FIRST_DAY + timedelta(days=offset)
            if day.weekday() >= 5:
                continue
            midnight = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
            quarters = set(range(begins, begins + 32))
            for _ in range(rng.randrange(0, 5)):
                meeting = rng.randrange(begins, begins + 32)
                quarters -= set(range(meeting, meeting + rng.randrange(2, 9)))
            windows.extend(
                (midnight + q * QUARTER_HOUR, midnight + (q + 1) * QUARTER_HOUR)
                for q in sorted(quarters)
            )
        if shuffled:
            rng.shuffle(windows)
        free.append(windows)
    return free


def run_kernel(free: Free, days: int, required: int) -> Sequence[SlotMatch]:
    return find_slots(
        free,
        first=FIRST_DAY,
        last=FIRST_DAY + timedelta(days=days - 1),
        tz=TIME_ZONE,
        duration_minutes=DURATION,
        step_minutes=STEP,
        required=required,
    )


def run_ranked(
    free: Free,
    days: int,
    required: int,
    grid: Sequence[int] | None = None,
    *,
    buffers: int = RANKED_BUFFERS,
    order: Order = "best",
) -> Sequence[SlotMatch]:
    """The kernel as ``order=best`` with buffers asks for it (``grid`` given: as the gateway,
    which caches the grid of a query range)."""
    return find_slots(
        free,
        first=FIRST_DAY,
        last=FIRST_DAY + timedelta(days=days - 1),
        tz=TIME_ZONE,
        duration_minutes=DURATION,
        step_minutes=STEP,
        required=required,
        grid=grid,
        buffer_before_minutes=buffers,
        buffer_after_minutes=buffers,
        order=order,
    )


def run_naive(free: Free, days: int, required: int) -> Sequence[SlotMatch]:
    """Baseline: for every candidate and participant, scan that participant's raw windows."""
    duration = DURATION * 60
    grid = candidate_starts(FIRST_DAY, FIRST_DAY + timedelta(days=days - 1), TIME_ZONE, STEP)
    slots: list[SlotMatch] = []
    for t in grid:
        who = tuple(i for i, windows in enumerate(free) if _covered(windows, t, t + duration))
        if len(who) >= required:
            slots.append(SlotMatch(t, t + duration, who))
    return slots


def _covered(windows: Sequence[Interval], start: int, end: int) -> bool:
    reached = start
    while reached < end:
        further = max((e for s, e in windows if s <= reached < e), default=reached)
        if further == reached:
            return False
        reached = further
    return True


def best_of(repeat: int, action: Callable[[], object]) -> float:
    """Best CPU time of ``repeat`` runs: the kernel is pure computation on one thread, and on a
    shared machine wall time would add whatever the other processes took."""
    return interleaved(repeat, [action])[0]


def measure(max_windows: int, repeat_most: int, shuffled: bool) -> dict[str, float]:
    """Print the kernel tables; return the headline numbers."""
    rng = random.Random(SEED)
    headline: dict[str, float] = {}

    print(f"Kernel: find_slots, {PARTICIPANTS} participants, duration {DURATION}, step {STEP}")
    print(f"python {platform.python_version()} on {platform.machine()}, {date.today()}")
    print(f"windows {'shuffled' if shuffled else 'in time order'}, time zone {TIME_ZONE}; CPU time")
    print()
    print(
        "| days | windows S | merged | grid | required | matches | grid ms | total ms "
        "| windows/s | us/window | vs 10k |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    per_window_baseline: dict[int, float] = {}
    for days in SPANS:
        free = working_hours(days, rng, shuffled=shuffled)
        windows = sum(len(w) for w in free)
        if windows > max_windows:
            continue
        merged = sum(len(merge_intervals(w)) for w in free)
        last = FIRST_DAY + timedelta(days=days - 1)
        grid = len(candidate_starts(FIRST_DAY, last, TIME_ZONE, STEP))
        repeat = max(1, min(repeat_most, 2_000_000 // windows))
        grid_time = best_of(repeat, partial(candidate_starts, FIRST_DAY, last, TIME_ZONE, STEP))
        for required in (PARTICIPANTS, PARTICIPANTS // 2):
            matches = len(run_kernel(free, days, required))
            elapsed = best_of(repeat, partial(run_kernel, free, days, required))
            per_window = elapsed / windows
            base = per_window_baseline.setdefault(required, per_window)
            headline[f"kernel_{windows}_{required}_windows_per_s"] = windows / elapsed
            headline[f"kernel_{windows}_{required}_growth"] = per_window / base
            print(
                f"| {days} | {windows} | {merged} | {grid} | {required} | {matches} "
                f"| {grid_time * 1e3:.1f} | {elapsed * 1e3:.1f} | {windows / elapsed:,.0f} "
                f"| {per_window * 1e6:.2f} | {per_window / base:.2f} |"
            )

    print()
    print("Naive baseline (every candidate x participant scans the raw windows), required 25:")
    print()
    print("| days | windows S | method | total ms | windows/s | naive / kernel |")
    print("|---:|---:|---|---:|---:|---:|")
    required = PARTICIPANTS // 2
    for days in NAIVE_SPANS:
        free = working_hours(days, rng, shuffled=shuffled)
        windows = sum(len(w) for w in free)
        assert run_naive(free, days, required) == run_kernel(free, days, required)
        kernel = best_of(repeat_most, partial(run_kernel, free, days, required))
        naive = best_of(1, partial(run_naive, free, days, required))
        print(
            f"| {days} | {windows} | find_slots | {kernel * 1e3:.1f} "
            f"| {windows / kernel:,.0f} | 1 |"
        )
        print(
            f"| {days} | {windows} | naive scan | {naive * 1e3:.1f} | {windows / naive:,.0f} "
            f"| {naive / kernel:.0f} |"
        )
    print()
    parse_rate = parsing(rng, repeat_most)
    headline["parse_windows_per_s"] = parse_rate
    print()
    headline.update(ranking(max_windows, repeat_most))
    return headline


def interleaved(repeat: int, actions: Sequence[Callable[[], object]]) -> list[float]:
    """Best CPU time of each action, run in turn ``repeat`` times. On a shared machine a slow
    moment then hits every action alike, and CPU time leaves out the time spent waiting for a
    core, which says nothing about the code."""
    timings = [float("inf")] * len(actions)
    for _ in range(repeat):
        for index, action in enumerate(actions):
            gc.collect()
            started = time.process_time()
            action()
            timings[index] = min(timings[index], time.process_time() - started)
    return timings


def ranking(max_windows: int, repeat: int) -> dict[str, float]:
    """Buffers 10/10 with ``order=best`` (stranded minutes from the sweep) against the plain
    kernel (no buffers, order by start) on the same windows, in the same run."""
    rng = random.Random(SEED + 1)
    headline: dict[str, float] = {}
    print(
        f"Ranking: buffers {RANKED_BUFFERS}/{RANKED_BUFFERS} and order=best against the plain "
        f"kernel, {PARTICIPANTS} participants, duration {DURATION}, step {STEP}; CPU ms, best of "
        f"{repeat} or more interleaved runs (400k windows' worth); grid built in the call or "
        "cached (as the gateway does)"
    )
    print()
    print(
        "| days | windows S | required | grid | plain matches | best matches "
        "| plain ms | buffers ms | best ms | best windows/s | best / plain |"
    )
    print("|---:|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for days in RANKED_SPANS:
        free = working_hours(days, rng, shuffled=False)
        windows = sum(len(w) for w in free)
        if windows > max_windows:
            continue
        last = FIRST_DAY + timedelta(days=days - 1)
        cached = candidate_starts(FIRST_DAY, last, TIME_ZONE, STEP)
        for required in (PARTICIPANTS, PARTICIPANTS // 2):
            # Without buffers the ranked answer holds the plain one's slots, reordered.
            plain_slots = run_kernel(free, days, required)
            unbuffered = run_ranked(free, days, required, buffers=0)
            assert sorted((m.start, m.participants) for m in unbuffered) == [
                (m.start, m.participants) for m in plain_slots
            ]
            best_count = len(run_ranked(free, days, required))
            # Small sizes take a few ms: more runs there cost little and steady the minimum (about a
            # second in all for a size).
            runs = max(repeat, 400_000 // windows)
            for grid, label in ((None, "built"), (cached, "cached")):
                plain, buffered, best = interleaved(
                    runs,
                    [
                        partial(run_ranked, free, days, required, grid, buffers=0, order="start"),
                        partial(run_ranked, free, days, required, grid, order="start"),
                        partial(run_ranked, free, days, required, grid),
                    ],
                )
                ratio = plain / best
                headline[f"ranked_{windows}_{required}_{label}_vs_plain"] = ratio
                print(
                    f"| {days} | {windows} | {required} | {label} | {len(plain_slots)} "
                    f"| {best_count} | {plain * 1e3:.2f} | {buffered * 1e3:.2f} "
                    f"| {best * 1e3:.2f} | {windows / best:,.0f} | {ratio:.2f} |"
                )
    print()
    return headline


def parsing(rng: random.Random, repeat: int) -> float:
    """Upstream answers (ISO 8601 strings with offsets, as Vyte sends them) -> intervals."""
    days = SPANS[1]
    free = working_hours(days, rng, shuffled=False)
    answers = [
        [(format_instant(s, TIME_ZONE), format_instant(e, TIME_ZONE)) for s, e in windows]
        for windows in free
    ]
    windows = sum(len(a) for a in answers)
    assert [parse_windows(a) for a in answers] == free

    def parse_all() -> None:
        for answer in answers:
            parse_windows(answer)

    elapsed = best_of(repeat, parse_all)
    print(f"Parsing the {days}-day upstream answers ({windows} windows, ISO 8601 strings):")
    print()
    print("| windows S | total ms | windows/s | us/window |")
    print("|---:|---:|---:|---:|")
    print(
        f"| {windows} | {elapsed * 1e3:.1f} | {windows / elapsed:,.0f} "
        f"| {elapsed / windows * 1e6:.2f} |"
    )
    return windows / elapsed


def run(quick: bool = False) -> dict[str, float]:
    print("## 3. Kernel (pure intersection, 50 participants, 15-minute slots)\n")
    return measure(200_000 if quick else 2_000_000, 2 if quick else 5, shuffled=False)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--max-windows", type=int, default=2_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--shuffled", action="store_true", help="windows in random order")
    parser.add_argument(
        "--ranking-only", action="store_true", help="only buffers/order=best against plain"
    )
    args = parser.parse_args(argv)
    if args.ranking_only:
        ranking(args.max_windows, args.repeat)
    else:
        measure(args.max_windows, args.repeat, args.shuffled)


if __name__ == "__main__":
    main()

"""Availability: fan out to Vyte per participant, take out our own bookings, intersect.

Each participant's free time is fetched once (cached for SLOT_CACHE_TTL, and
identical concurrent fetches share one upstream call), the gateway's own active
bookings are taken out of it, and the pure domain code does the rest.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import NamedTuple
from zoneinfo import ZoneInfo

import attrs
import structlog

from service import metrics
from service.commands import AvailabilityQuery
from service.domain.freetime import (
    Interval,
    SlotMatch,
    candidate_starts,
    find_slots,
    merge_intervals,
    parse_windows,
)
from service.domain.participant import Participant, ParticipantState
from service.errors import (
    FieldError,
    ServiceError,
    UnknownParticipant,
    UpstreamFailed,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from service.store.base import SharedCache, Store
from service.vyte import errors as vyte_errors
from service.vyte.client import VyteClient

log = structlog.get_logger("availability")

# Participants' answers kept at most; with the 30 s default TTL that is 333 new queries a
# second before the bound, rather than the TTL, decides what is dropped.
CACHE_ENTRIES = 10_000
# Whole answers kept at most, and the slots in all of them (a month of 15-minute steps is
# about 3,000; a slot with its participants measured about 180 bytes): under 10 MB.
ANSWER_ENTRIES = 1024
ANSWER_SLOTS = 50_000
# Organizers whose own bookings are kept at most (a few intervals each).
OWN_ENTRIES = 10_000

# Bound once: looking a label up costs more than counting.
_HIT, _JOINED, _MISS, _SHARED_HIT = (
    metrics.SLOT_CACHE.labels(result) for result in ("hit", "joined", "miss", "shared_hit")
)


@lru_cache(maxsize=16)
def _grid(first: date, last: date, zone: ZoneInfo, step: int) -> tuple[int, ...]:
    """The candidate starts of a query, kept for the queries that repeat (most of them).

    About 0.1 MB for a month of 15-minute steps, 0.7 MB at most (62 days of 5-minute steps).
    """
    return tuple(candidate_starts(first, last, zone, step))


class _Ask(NamedTuple):
    """What identifies one upstream answer, and the cache key of it: only what Vyte is asked
    (rule 5's parameters are applied to its answer, so every variant of a query shares it),
    and the participant's booking mark when it was asked (`Store.booking_marks`): once the
    gateway writes one of their bookings, having just changed the event in Vyte or heard of a
    change made there, the next answer asks Vyte again, on every replica."""

    is_email: bool
    key: str
    duration: int
    first: date
    last: date
    timezone: str
    mark: str


def _ask(p: Participant, duration: int, first: date, last: date, timezone: str, mark: str) -> _Ask:
    return _Ask(p.is_email, p.key, duration, first, last, timezone, mark)


@attrs.frozen
class Availability:
    """The answer to a query: each participant's state, and the slots that fit, in its order.

    A slot's `participants` are indexes into `query.participants`.
    """

    query: AvailabilityQuery
    participants: tuple[ParticipantState, ...]
    slots: Sequence[SlotMatch]

    @property
    def complete(self) -> bool:
        return all(p.ok for p in self.participants)


@attrs.frozen
class _Answer:
    """A computed answer, and what must still hold for it to be the answer now."""

    availability: Availability
    # The participants' booking marks it was computed under.
    marks: tuple[str, ...]
    # `clock` time the first participant's cached free time expires.
    expires: float
    # Epoch seconds after which now + notice passes the first start it offers (or would
    # offer, if free): from then on fewer starts are candidates.
    until: float


@attrs.frozen
class _Outcome:
    """One participant's result: free windows, or why there are none."""

    free: tuple[Interval, ...] = ()
    status: str = "ok"  # ok | unknown | timeout | unavailable | error
    detail: str | None = None
    retry_after: float | None = None


def _outcome_of(err: vyte_errors.VyteError) -> _Outcome:
    if isinstance(err, vyte_errors.VyteRejected | vyte_errors.VyteNotFound):
        return _Outcome(status="unknown", detail="Vyte does not know this participant")
    if isinstance(err, vyte_errors.VyteTimeout):
        return _Outcome(status="timeout", detail=str(err))
    if isinstance(err, vyte_errors.VyteUnavailable):
        return _Outcome(status="unavailable", detail=str(err), retry_after=err.retry_after)
    return _Outcome(status="error", detail=str(err))


class AvailabilityService:
    """Free-time queries over many participants."""

    def __init__(
        self,
        vyte: VyteClient,
        store: Store,
        *,
        cache_ttl: float,
        clock: Callable[[], float] = time.monotonic,
        shared: SharedCache | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._vyte = vyte
        self._store = store
        self._ttl = cache_ttl
        self._clock = clock
        # Wall-clock time, for `notice` and the past (`clock` only ages cache entries).
        self._now = now
        # The replicas' common cache behind this process's own (None: this process only).
        self._shared = shared if cache_ttl > 0 else None
        self._cache: dict[_Ask, tuple[float, tuple[Interval, ...]]] = {}
        self._inflight: dict[_Ask, asyncio.Future[tuple[Interval, ...]]] = {}
        # Whole answers by query, oldest first (see `_reuse`), and the slots they hold.
        self._answers: dict[AvailabilityQuery, _Answer] = {}
        self._answer_slots = 0
        # Per organizer, as last read from the store: the booking mark it was read under, the
        # epoch seconds it covers and its active bookings there (see `own_bookings`).
        self._own: dict[str, tuple[str, int, int, tuple[Interval, ...]]] = {}

    async def free_windows(
        self,
        participant: Participant,
        *,
        duration: int,
        first: date,
        last: date,
        timezone: str,
        fresh: bool = False,
    ) -> tuple[Interval, ...]:
        """Participant's free windows from Vyte (merged): cached, or asked now if `fresh`
        (then not kept: a booking written next changes the mark it would be kept under)."""
        if fresh:
            return await self._ask_vyte(_ask(participant, duration, first, last, timezone, ""))
        (mark,) = await self._store.booking_marks([participant.key])
        return await self._free(_ask(participant, duration, first, last, timezone, mark))

    async def _free(self, key: _Ask) -> tuple[Interval, ...]:
        """The free windows under cache key `key`: this process's, a running fetch's, the
        shared cache's, or Vyte's."""
        cached = self._cached(key)
        if cached is not None:
            return cached
        return await asyncio.shield(self._fetching(key))

    def _fetching(self, key: _Ask) -> asyncio.Future[tuple[Interval, ...]]:
        """The fetch of `key` running in this process, joined, or one started now (its task
        runs before anything scheduled after this call)."""
        running = self._inflight.get(key)
        if running is not None:
            _JOINED.inc()
            return running
        _MISS.inc()
        task = asyncio.ensure_future(self._fetch(key))
        self._inflight[key] = task
        task.add_done_callback(lambda _: self._inflight.pop(key, None))
        return task

    def _cached(self, key: _Ask) -> tuple[Interval, ...] | None:
        """This process's unexpired answer for `key`, counted as a hit; None otherwise."""
        if self._ttl <= 0:
            return None
        hit = self._cache.get(key)
        if hit is None or hit[0] <= self._clock():
            return None
        _HIT.inc()
        return hit[1]

    async def _fetch(self, key: _Ask) -> tuple[Interval, ...]:
        shared = await self._shared_get(key)
        if shared is not None:
            _SHARED_HIT.inc()
            free, left = shared
            # Kept here only for what the shared entry has left: one TTL in all.
            self._remember(key, free, min(left, self._ttl))
            return free
        free = await self._ask_vyte(key)
        if self._ttl > 0:
            self._remember(key, free)
            await self._shared_set(key, free)
        return free

    async def _ask_vyte(self, ask: _Ask) -> tuple[Interval, ...]:
        who = {"emails": ask.key} if ask.is_email else {"users": ask.key}
        pairs = await self._vyte.slot_windows(
            duration=ask.duration, first=ask.first, last=ask.last, timezone=ask.timezone, **who
        )
        try:
            windows = parse_windows(pairs)
        except ValueError as err:
            raise vyte_errors.VyteBadResponse(f"unreadable slot: {err}") from None
        return tuple(merge_intervals(windows))

    @staticmethod
    def _shared_key(key: _Ask) -> str:
        text = json.dumps([str(part) for part in key], separators=(",", ":"))
        return "slots:" + hashlib.sha256(text.encode()).hexdigest()[:40]

    async def _shared_get(self, key: _Ask) -> tuple[tuple[Interval, ...], float] | None:
        """The shared answer and the seconds it has left; None, asking Vyte instead, when
        there is none or the shared cache fails in any way (it is only an optimisation)."""
        if self._shared is None:
            return None
        try:
            found = await self._shared.cache_get(self._shared_key(key))
            if found is None:
                return None
            raw, left = found
            windows = json.loads(raw)
            if not isinstance(windows, list):
                raise TypeError(f"expected a list of windows, got {type(windows).__name__}")
            return tuple((int(start), int(end)) for start, end in windows), left
        except Exception as err:
            log.warning("shared_slot_cache_unreadable", error=f"{type(err).__name__}: {err}")
            return None

    async def _shared_set(self, key: _Ask, free: tuple[Interval, ...]) -> None:
        if self._shared is None:
            return
        try:
            await self._shared.cache_set(
                self._shared_key(key), json.dumps(free, separators=(",", ":")), self._ttl
            )
        except Exception as err:
            log.warning("shared_slot_cache_unwritable", error=f"{type(err).__name__}: {err}")

    def _remember(self, key: _Ask, free: tuple[Interval, ...], ttl: float | None = None) -> None:
        """Cache `free`; drop what expired, and the oldest entries beyond CACHE_ENTRIES.

        Entries live for at most the TTL and are inserted in time order, so the front of
        the dict expires first (an entry from the shared cache, with less left, may wait
        behind a later one until that goes): eviction looks at the front only, O(1) per insert.
        """
        now = self._clock()
        self._cache.pop(key, None)
        self._cache[key] = (now + (self._ttl if ttl is None else ttl), free)
        while self._cache and (
            len(self._cache) > CACHE_ENTRIES or next(iter(self._cache.values()))[0] <= now
        ):
            del self._cache[next(iter(self._cache))]

    async def own_bookings(
        self, q: AvailabilityQuery, marks: Sequence[str]
    ) -> dict[str, list[Interval]]:
        """The gateway's active bookings of the query's people, as busy intervals by key
        (only those with any). `marks` are the people's booking marks, read before.

        What the store answered is kept per organizer under the mark it was read under, and
        read again only when the mark has changed: a write of one of their bookings changes
        it once the write is done, so a read under the current mark saw every write before.
        A kept read may hold bookings beyond the query's days; they take nothing from them.
        """
        # Local days lie within 2 days of their UTC date at any real offset.
        start = datetime.combine(q.first, datetime.min.time(), UTC) - timedelta(days=2)
        end = datetime.combine(q.last, datetime.min.time(), UTC) + timedelta(days=3)
        first, last = int(start.timestamp()), int(end.timestamp())
        kept = self._own
        busy: dict[str, list[Interval]] = {}
        unread: dict[str, str] = {}
        for p, mark in zip(q.participants, marks, strict=True):
            entry = kept.get(p.key)
            if entry is not None and entry[0] == mark and entry[1] <= first and last <= entry[2]:
                if entry[3]:
                    busy[p.key] = list(entry[3])
            else:
                unread[p.key] = mark
        if not unread:
            return busy
        read: dict[str, list[Interval]] = {key: [] for key in unread}
        for b in await self._store.active_bookings(list(unread), start, end):
            intervals = read.get(b.organizer)
            if intervals is not None:
                intervals.append((int(b.start.timestamp()), int(b.end.timestamp())))
        for key, intervals in read.items():
            kept.pop(key, None)
            kept[key] = (unread[key], first, last, tuple(intervals))
            if intervals:
                busy[key] = intervals
        while len(kept) > OWN_ENTRIES:
            del kept[next(iter(kept))]
        return busy

    @staticmethod
    async def _outcome(fetch: asyncio.Future[tuple[Interval, ...]]) -> _Outcome:
        try:
            # Shielded: a query that gives up leaves the fetch to the others waiting for it.
            free = await asyncio.shield(fetch)
        except vyte_errors.VyteError as err:
            return _outcome_of(err)
        return _Outcome(free=free)

    def _keys(self, q: AvailabilityQuery, marks: tuple[str, ...]) -> list[_Ask]:
        return [
            _ask(p, q.duration, q.first, q.last, q.timezone, mark)
            for p, mark in zip(q.participants, marks, strict=True)
        ]

    def _reuse(self, q: AvailabilityQuery, marks: tuple[str, ...]) -> Availability | None:
        """The answer computed for `q` before, if nothing it depends on has changed since:
        no booking of its people written, none of their cached free time expired, and no
        start it offered now too close (`notice`) or past."""
        kept = self._answers.get(q)
        if kept is None:
            return None
        if (
            kept.marks == marks
            and kept.expires > self._clock()
            and self._now().timestamp() <= kept.until
        ):
            return kept.availability
        self._drop_answer(q)
        return None

    def _keep(self, answer: Availability, marks: tuple[str, ...], not_before: datetime) -> None:
        """Keep a complete answer for `_reuse`, for as long as every participant's free time
        stays cached; the oldest answers go first beyond the bounds."""
        q = answer.query
        if self._ttl <= 0 or not answer.complete:
            return
        entries = [self._cache.get(key) for key in self._keys(q, marks)]
        if any(entry is None for entry in entries):
            return
        expires = min(entry[0] for entry in entries if entry is not None)
        grid = _grid(q.first, q.last, q.zone, q.step)
        # find_slots offers starts from ceil(not_before): the first such grid start stays a
        # candidate until now + notice passes it.
        at = bisect_left(grid, math.ceil(not_before.timestamp()))
        until = grid[at] - q.notice * 60 if at < len(grid) else math.inf
        self._drop_answer(q)
        self._answers[q] = _Answer(answer, marks, expires, until)
        self._answer_slots += len(answer.slots)
        while len(self._answers) > ANSWER_ENTRIES or self._answer_slots > ANSWER_SLOTS:
            self._drop_answer(next(iter(self._answers)))

    def _drop_answer(self, q: AvailabilityQuery) -> None:
        kept = self._answers.pop(q, None)
        if kept is not None:
            self._answer_slots -= len(kept.availability.slots)

    async def query(self, q: AvailabilityQuery) -> Availability:
        metrics.AVAILABILITY_PARTICIPANTS.observe(len(q.participants))
        # Read before anything the answer is computed from: a booking written after this
        # read changes a mark, so an answer that missed it is not reused.
        marks = await self._store.booking_marks([p.key for p in q.participants])
        reused = self._reuse(q, marks)
        if reused is not None:
            # Every participant's cached free time is in it: counted as the lookups it saves.
            _HIT.inc(len(q.participants))
            return reused
        answer, not_before = await self._compute(q, marks)
        self._keep(answer, marks, not_before)
        return answer

    async def _compute(
        self, q: AvailabilityQuery, marks: tuple[str, ...]
    ) -> tuple[Availability, datetime]:
        """The answer to `q`, and the earliest start it could offer (now + notice)."""
        # Cached answers are taken here and now: a task per participant costs more than
        # the lookup, and on the warm path every participant is cached.
        keys = self._keys(q, marks)
        outcomes: list[_Outcome] = []
        missing: list[int] = []
        for i, key in enumerate(keys):
            cached = self._cached(key)
            if cached is None:
                missing.append(i)
            outcomes.append(_Outcome(free=cached or ()))
        if missing:
            # Every fetch starts now, in order, so the first call leaves before anything else
            # runs; then one store read for everybody's own bookings, while Vyte answers.
            fetches = [self._fetching(keys[i]) for i in missing]
            own = asyncio.ensure_future(self.own_bookings(q, marks))
            try:
                fetched = await asyncio.gather(*map(self._outcome, fetches))
            except BaseException:
                own.cancel()
                raise
            for i, outcome in zip(missing, fetched, strict=True):
                outcomes[i] = outcome
            busy = await own
        else:
            busy = await self.own_bookings(q, marks)
        _raise_for_failures(q, outcomes)
        outcomes = [
            attrs.evolve(o, free=tuple(subtract(o.free, busy[p.key])))
            if o.status == "ok" and p.key in busy
            else o
            for p, o in zip(q.participants, outcomes, strict=True)
        ]
        zone = q.zone
        # Read after the fan-out: no slot starts before the moment of the answer.
        not_before = self._now() + timedelta(minutes=q.notice)
        # Own bookings are out of `free` already, so the buffers apply to what is left (rule 5).
        matches = find_slots(
            [o.free for o in outcomes],
            first=q.first,
            last=q.last,
            tz=zone,
            duration_minutes=q.duration,
            step_minutes=q.step,
            required=q.required,
            grid=_grid(q.first, q.last, zone, q.step),
            buffer_before_minutes=q.buffer_before,
            buffer_after_minutes=q.buffer_after,
            not_before=not_before,
            order=q.order,
            limit=q.limit,
        )
        states = _states(q.participants, outcomes)
        return Availability(query=q, participants=states, slots=matches), not_before


def subtract(free: Sequence[Interval], busy: Sequence[Interval]) -> list[Interval]:
    """`free` (sorted, disjoint) minus the union of `busy`."""
    out: list[Interval] = []
    blocks = merge_intervals(busy)
    j = 0
    for start, end in free:
        cursor = start
        while j < len(blocks) and blocks[j][1] <= cursor:
            j += 1
        k = j
        while k < len(blocks) and blocks[k][0] < end:
            b_start, b_end = blocks[k]
            if b_start > cursor:
                out.append((cursor, b_start))
            cursor = max(cursor, b_end)
            k += 1
        if cursor < end:
            out.append((cursor, end))
    return out


def _states(
    participants: Sequence[Participant], outcomes: Sequence[_Outcome]
) -> tuple[ParticipantState, ...]:
    return tuple(
        ParticipantState(p, o.status, None if o.status == "ok" else o.detail or o.status)
        for p, o in zip(participants, outcomes, strict=True)
    )


def _raise_for_failures(q: AvailabilityQuery, outcomes: Sequence[_Outcome]) -> None:
    unknown = [
        p.given for p, o in zip(q.participants, outcomes, strict=True) if o.status == "unknown"
    ]
    states = _states(q.participants, outcomes)
    if unknown:
        raise UnknownParticipant(
            f"Vyte does not know: {', '.join(unknown)}",
            errors=[FieldError("participants", f"unknown participant {u}") for u in unknown],
            participants=states,
        )
    failed = [o for o in outcomes if o.status != "ok"]
    if not failed or q.partial:
        return
    kinds = {o.status for o in failed}
    err: ServiceError
    detail = f"{len(failed)} of {len(outcomes)} participants could not be read from Vyte"
    if "unavailable" in kinds:
        waits = [o.retry_after for o in failed if o.retry_after is not None]
        headers = {"Retry-After": str(max(1, math.ceil(max(waits))))} if waits else {}
        err = UpstreamUnavailable(detail, headers=headers, participants=states)
    elif "timeout" in kinds:
        err = UpstreamTimeout(detail, participants=states)
    else:
        err = UpstreamFailed(detail, participants=states)
    raise err

"""Availability: validate the query, fan out to Vyte per participant, intersect.

Each participant's free time is fetched once (cached for SLOT_CACHE_TTL, and
identical concurrent fetches share one upstream call), the gateway's own active
bookings are taken out of it, and the pure domain code does the rest.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import cache, lru_cache
from typing import Any
from zoneinfo import ZoneInfo, available_timezones

import attrs
import structlog

from service import metrics
from service.domain.freetime import (
    Interval,
    candidate_starts,
    find_slots,
    format_instant,
    merge_intervals,
    parse_windows,
)
from service.errors import (
    FieldError,
    ServiceError,
    UnknownParticipant,
    UpstreamFailed,
    UpstreamTimeout,
    UpstreamUnavailable,
    ValidationFailed,
)
from service.store.base import SharedCache, Store
from service.vyte import errors as vyte_errors
from service.vyte.client import VyteClient

log = structlog.get_logger("availability")

MAX_PARTICIPANTS = 50
MAX_DAYS = 62
QUERY_PARAMS = (
    "participants",
    "duration",
    "from",
    "to",
    "timezone",
    "step",
    "required",
    "group",
    "partial",
)

_USER_ID = re.compile(r"^[0-9a-fA-F]{24}$")
_EMAIL = re.compile(r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_INT = re.compile(r"^[0-9]{1,6}$")


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones()) | {"UTC"}


# Participants' answers kept at most; with the 30 s default TTL that is 333 new queries a
# second before the bound, rather than the TTL, decides what is dropped.
CACHE_ENTRIES = 10_000


@lru_cache(maxsize=16)
def _grid(first: date, last: date, zone: ZoneInfo, step: int) -> tuple[int, ...]:
    """The candidate starts of a query, kept for the queries that repeat (most of them).

    About 0.1 MB for a month of 15-minute steps, 0.7 MB at most (62 days of 5-minute steps).
    """
    return tuple(candidate_starts(first, last, zone, step))


def parse_timezone(value: str) -> ZoneInfo | None:
    """A ZoneInfo for an IANA name, or None when it is not one."""
    if value not in _zone_names():
        return None
    try:
        return ZoneInfo(value)
    except (ValueError, KeyError, OSError):
        return None


@attrs.frozen
class Participant:
    """A Vyte user id or an email, as the caller wrote it."""

    given: str

    @property
    def is_email(self) -> bool:
        return "@" in self.given

    @property
    def key(self) -> str:
        """Identity for de-duplication and lookups: emails and hex ids are case-insensitive."""
        return self.given.lower()


def parse_participant(value: str) -> Participant | None:
    value = value.strip()
    if _USER_ID.match(value) or _EMAIL.match(value):
        return Participant(value)
    return None


@attrs.frozen
class AvailabilityQuery:
    participants: tuple[Participant, ...]
    duration: int
    first: date
    last: date
    timezone: str
    step: int
    required: int
    group_by_day: bool
    partial: bool

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def parse_query(
    params: Mapping[str, str], problems: Sequence[FieldError] = ()
) -> AvailabilityQuery:
    """Validate every parameter at once; ValidationFailed lists each bad one
    (together with `problems` already found, such as repeated parameters)."""
    problems = [*problems]
    problems += [FieldError(n, "unknown parameter") for n in params if n not in QUERY_PARAMS]

    def integer(name: str, low: int, high: int, default: int | None = None) -> int | None:
        raw = params.get(name)
        if raw is None:
            if default is None:
                problems.append(FieldError(name, "required"))
            return default
        if not _INT.match(raw) or not low <= int(raw) <= high:
            problems.append(FieldError(name, f"must be an integer from {low} to {high}"))
            return None
        return int(raw)

    def day(name: str) -> date | None:
        raw = params.get(name)
        if raw is None:
            problems.append(FieldError(name, "required"))
            return None
        try:
            if not _DATE.match(raw):
                raise ValueError
            return date.fromisoformat(raw)
        except ValueError:
            problems.append(FieldError(name, "must be a date YYYY-MM-DD"))
            return None

    participants: list[Participant] = []
    raw_participants = params.get("participants")
    if raw_participants is None:
        problems.append(FieldError("participants", "required"))
    else:
        seen: set[str] = set()
        for item in raw_participants.split(","):
            parsed = parse_participant(item)
            if parsed is None:
                problems.append(
                    FieldError(
                        "participants", f"{item.strip()[:80]!r} is not a Vyte user id or an email"
                    )
                )
            elif parsed.key not in seen:
                seen.add(parsed.key)
                participants.append(parsed)
        if not problems and not 1 <= len(participants) <= MAX_PARTICIPANTS:
            problems.append(
                FieldError("participants", f"give 1 to {MAX_PARTICIPANTS} participants")
            )

    duration = integer("duration", 5, 1440)
    step = integer("step", 5, 1440, default=duration or 60)
    first, last = day("from"), day("to")
    if first and last:
        if first > last:
            problems.append(FieldError("to", "must not be before from"))
        elif (last - first).days + 1 > MAX_DAYS:
            problems.append(FieldError("to", f"the range spans more than {MAX_DAYS} days"))

    timezone = params.get("timezone", "UTC")
    if parse_timezone(timezone) is None:
        problems.append(FieldError("timezone", "must be an IANA time zone name"))

    required = None
    if "required" in params:
        required = integer("required", 1, max(1, len(participants)))
    group = params.get("group")
    if group is not None and group != "day":
        problems.append(FieldError("group", "the only grouping is 'day'"))
    partial = params.get("partial", "false")
    if partial not in ("true", "false"):
        problems.append(FieldError("partial", "must be true or false"))

    if problems:
        raise ValidationFailed(problems)
    assert duration is not None and step is not None and first and last
    return AvailabilityQuery(
        participants=tuple(participants),
        duration=duration,
        first=first,
        last=last,
        timezone=timezone,
        step=step,
        required=required or len(participants),
        group_by_day=group == "day",
        partial=partial == "true",
    )


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
    ) -> None:
        self._vyte = vyte
        self._store = store
        self._ttl = cache_ttl
        self._clock = clock
        # The replicas' common cache behind this process's own (None: this process only).
        self._shared = shared if cache_ttl > 0 else None
        self._cache: dict[tuple[object, ...], tuple[float, tuple[Interval, ...]]] = {}
        self._inflight: dict[tuple[object, ...], asyncio.Future[tuple[Interval, ...]]] = {}

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
        """Participant's free windows from Vyte (merged), cached unless `fresh`."""
        key = (participant.is_email, participant.key, duration, first, last, timezone)
        if not fresh and self._ttl > 0:
            hit = self._cache.get(key)
            if hit is not None and hit[0] > self._clock():
                metrics.SLOT_CACHE.labels("hit").inc()
                return hit[1]
        running = self._inflight.get(key)
        if running is not None and not fresh:
            metrics.SLOT_CACHE.labels("joined").inc()
            return await asyncio.shield(running)
        metrics.SLOT_CACHE.labels("miss").inc()
        task = asyncio.ensure_future(
            self._fetch(participant, key, duration, first, last, timezone, fresh)
        )
        if not fresh:
            self._inflight[key] = task
            task.add_done_callback(lambda _: self._inflight.pop(key, None))
        return await asyncio.shield(task)

    async def _fetch(
        self,
        participant: Participant,
        key: tuple[object, ...],
        duration: int,
        first: date,
        last: date,
        timezone: str,
        fresh: bool,
    ) -> tuple[Interval, ...]:
        if not fresh:
            shared = await self._shared_get(key)
            if shared is not None:
                metrics.SLOT_CACHE.labels("shared_hit").inc()
                free, left = shared
                # Kept here only for what the shared entry has left: one TTL in all.
                self._remember(key, free, min(left, self._ttl))
                return free
        who = {"emails": participant.key} if participant.is_email else {"users": participant.key}
        answer = await self._vyte.slots(
            duration=duration, first=first, last=last, timezone=timezone, **who
        )
        try:
            windows = parse_windows((w.start.date_time, w.end.date_time) for w in answer.slots)
        except ValueError as err:
            raise vyte_errors.VyteBadResponse(f"unreadable slot: {err}") from None
        free = tuple(merge_intervals(windows))
        if self._ttl > 0:
            self._remember(key, free)
            await self._shared_set(key, free)
        return free

    @staticmethod
    def _shared_key(key: tuple[object, ...]) -> str:
        text = json.dumps([str(part) for part in key], separators=(",", ":"))
        return "slots:" + hashlib.sha256(text.encode()).hexdigest()[:40]

    async def _shared_get(
        self, key: tuple[object, ...]
    ) -> tuple[tuple[Interval, ...], float] | None:
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

    async def _shared_set(self, key: tuple[object, ...], free: tuple[Interval, ...]) -> None:
        if self._shared is None:
            return
        try:
            await self._shared.cache_set(
                self._shared_key(key), json.dumps(free, separators=(",", ":")), self._ttl
            )
        except Exception as err:
            log.warning("shared_slot_cache_unwritable", error=f"{type(err).__name__}: {err}")

    def _remember(
        self, key: tuple[object, ...], free: tuple[Interval, ...], ttl: float | None = None
    ) -> None:
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

    async def own_bookings(self, q: AvailabilityQuery) -> dict[str, list[Interval]]:
        """The gateway's active bookings of the query's people, as busy intervals by key."""
        # Local days lie within 2 days of their UTC date at any real offset.
        start = datetime.combine(q.first, datetime.min.time(), UTC) - timedelta(days=2)
        end = datetime.combine(q.last, datetime.min.time(), UTC) + timedelta(days=3)
        keys = [p.key for p in q.participants]
        busy: dict[str, list[Interval]] = {}
        for b in await self._store.active_bookings(keys, start, end):
            busy.setdefault(b.organizer, []).append(
                (int(b.start.timestamp()), int(b.end.timestamp()))
            )
        return busy

    async def _participant(self, p: Participant, q: AvailabilityQuery) -> _Outcome:
        try:
            free = await self.free_windows(
                p, duration=q.duration, first=q.first, last=q.last, timezone=q.timezone
            )
        except vyte_errors.VyteError as err:
            return _outcome_of(err)
        return _Outcome(free=free)

    async def query(self, q: AvailabilityQuery) -> dict[str, Any]:
        metrics.AVAILABILITY_PARTICIPANTS.observe(len(q.participants))
        # One store read for everybody's own bookings, alongside the Vyte fan-out.
        own = asyncio.ensure_future(self.own_bookings(q))
        try:
            outcomes = await asyncio.gather(*(self._participant(p, q) for p in q.participants))
        except BaseException:
            own.cancel()
            raise
        busy = await own
        _raise_for_failures(q, outcomes)
        outcomes = [
            attrs.evolve(o, free=tuple(subtract(o.free, busy[p.key])))
            if o.status == "ok" and p.key in busy
            else o
            for p, o in zip(q.participants, outcomes, strict=True)
        ]
        zone = q.zone
        matches = find_slots(
            [o.free for o in outcomes],
            first=q.first,
            last=q.last,
            tz=zone,
            duration_minutes=q.duration,
            step_minutes=q.step,
            required=q.required,
            grid=_grid(q.first, q.last, zone, q.step),
        )
        names = [p.given for p in q.participants]
        # A slot's end is usually another slot's start, and neighbouring slots usually have the
        # same participants (find_slots hands out the same tuple then): build each text once.
        texts: dict[int, str] = {}
        members: tuple[int, ...] | None = None
        who: list[str] = []
        slots: list[dict[str, Any]] = []
        for m in matches:
            start = texts.get(m.start)
            if start is None:
                start = texts[m.start] = format_instant(m.start, zone)
            end = texts.get(m.end)
            if end is None:
                end = texts[m.end] = format_instant(m.end, zone)
            if m.participants is not members:
                members = m.participants
                who = [names[i] for i in members]
            slots.append({"start": start, "end": end, "participants": who})
        answer: dict[str, Any] = {
            "timezone": q.timezone,
            "from": q.first.isoformat(),
            "to": q.last.isoformat(),
            "duration": q.duration,
            "step": q.step,
            "required": q.required,
            "complete": all(o.status == "ok" for o in outcomes),
            "participants": _statuses(q.participants, outcomes),
        }
        if q.group_by_day:
            days: dict[str, list[dict[str, Any]]] = {}
            for slot in slots:
                # The local date opens the formatted start ("2020-10-01T09:00:00+02:00").
                days.setdefault(slot["start"][:10], []).append(slot)
            answer["days"] = [{"date": d, "slots": s} for d, s in days.items()]
        else:
            answer["slots"] = slots
        return answer


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


def _statuses(
    participants: Sequence[Participant], outcomes: Sequence[_Outcome]
) -> list[dict[str, str]]:
    listed = []
    for p, o in zip(participants, outcomes, strict=True):
        entry = {"id": p.given, "status": o.status if o.status == "ok" else "error"}
        if o.status != "ok":
            entry["reason"] = o.status
            entry["detail"] = o.detail or o.status
        listed.append(entry)
    return listed


def _raise_for_failures(q: AvailabilityQuery, outcomes: Sequence[_Outcome]) -> None:
    unknown = [
        p.given for p, o in zip(q.participants, outcomes, strict=True) if o.status == "unknown"
    ]
    statuses = _statuses(q.participants, outcomes)
    if unknown:
        raise UnknownParticipant(
            f"Vyte does not know: {', '.join(unknown)}",
            errors=[FieldError("participants", f"unknown participant {u}") for u in unknown],
            extra={"participants": statuses},
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
        err = UpstreamUnavailable(detail, headers=headers, extra={"participants": statuses})
    elif "timeout" in kinds:
        err = UpstreamTimeout(detail, extra={"participants": statuses})
    else:
        err = UpstreamFailed(detail, extra={"participants": statuses})
    raise err

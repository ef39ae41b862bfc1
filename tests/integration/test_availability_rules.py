"""GET /v1/availability's rules beyond Vyte's (DESIGN §3.1 rule 5) through the API: buffers,
order=best, limit, notice and the past, against a fake Vyte that serves exact windows."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.conftest import AUTH, JOHN
from tests.dates import at, in_days, meeting_day, next_transition

JANE = "jane@example.com"

Window = tuple[datetime, datetime]


@attrs.define
class FakeVyte:
    """Vyte's /v2/slots answering each participant's `windows` exactly, and a POST /v2/events
    that accepts any event; every request is kept."""

    url: str = ""
    windows: dict[str, list[Window]] = attrs.field(factory=dict)
    slot_queries: list[dict[str, str]] = attrs.field(factory=list)
    requests: int = 0


@pytest.fixture
async def vyte() -> AsyncIterator[FakeVyte]:
    state = FakeVyte()

    @web.middleware
    async def count(request: web.Request, handler: Any) -> web.StreamResponse:
        state.requests += 1
        return await handler(request)

    async def slots(request: web.Request) -> web.Response:
        query = dict(request.query)
        state.slot_queries.append(query)
        who = query.get("users") or query.get("emails") or ""
        listed = [
            {"start": {"dateTime": s.isoformat()}, "end": {"dateTime": e.isoformat()}}
            for s, e in state.windows.get(who.lower(), [])
        ]
        return web.json_response({"timezone": query["timezone"], "slots": listed})

    async def create_event(request: web.Request) -> web.Response:
        event = await request.json()
        return web.json_response({**event, "_id": f"{random.getrandbits(96):024x}"})

    app = web.Application(middlewares=[count])
    app.router.add_get("/v2/slots", slots)
    app.router.add_post("/v2/events", create_event)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.url = str(server.make_url("")).rstrip("/")
    yield state
    await server.close()


@pytest.fixture
async def gateway(gateway_factory: Any, vyte: FakeVyte) -> Any:
    # No slot cache: each query reads the windows the test has just set.
    return await gateway_factory(vyte_base_url=vyte.url, slot_cache_ttl=0)


def url(**params: Any) -> str:
    return "/v1/availability?" + urlencode({k: str(v) for k, v in params.items()})


def day_range(first: date, last: date) -> dict[str, str]:
    return {"from": str(first), "to": str(last)}


# -- the oracle: minute by minute, written apart from the service's kernel -----------------------
def expected_slots(
    windows: Sequence[Sequence[Window]],
    names: Sequence[str],
    *,
    first: date,
    last: date,
    tz: str,
    duration: int,
    step: int,
    required: int,
    buffer_before: int = 0,
    buffer_after: int = 0,
    order: str = "start",
    limit: int | None = None,
    not_before: datetime | None = None,
    busy: Sequence[Sequence[Window]] = (),
) -> list[dict[str, Any]]:
    """The slots the API must answer: every candidate of every local day checked minute by
    minute against each participant's free minutes (windows minus `busy`)."""
    zone = ZoneInfo(tz)
    free: list[set[int]] = []
    for i, ws in enumerate(windows):
        minutes = {m for s, e in ws for m in range(_minute(s), _minute(e))}
        for s, e in busy[i] if i < len(busy) else ():
            minutes -= set(range(_minute(s), _minute(e)))
        free.append(minutes)
    floor = None if not_before is None else -(-int(not_before.timestamp()) // 60)
    starts: set[int] = set()
    day = first
    while day <= last:
        for mark in range(0, 1440, step):
            for fold in (0, 1):
                local = datetime(
                    day.year, day.month, day.day, mark // 60, mark % 60, tzinfo=zone, fold=fold
                )
                # A wall time that does not exist does not survive a round trip through UTC.
                if local.astimezone(UTC).astimezone(zone).replace(tzinfo=None) == local.replace(
                    tzinfo=None
                ):
                    starts.add(_minute(local))
        day += timedelta(days=1)
    found = []
    for t in sorted(starts):
        if floor is not None and t < floor:
            continue
        lo, hi = t - buffer_before, t + duration + buffer_after
        who = [i for i, f in enumerate(free) if all(m in f for m in range(lo, hi))]
        if len(who) < required:
            continue
        stranded = 0
        for i in who:
            w_start, w_end = lo, hi
            while w_start - 1 in free[i]:
                w_start -= 1
            while w_end in free[i]:
                w_end += 1
            stranded += sum(g for g in (lo - w_start, w_end - hi) if 0 < g < duration)
        found.append((t, who, stranded))
    if order == "best":
        found.sort(key=lambda slot: (-len(slot[1]), slot[2], slot[0]))
    if limit is not None:
        found = found[:limit]
    out = []
    for t, who, stranded in found:
        slot: dict[str, Any] = {
            "start": _text(t, zone),
            "end": _text(t + duration, zone),
            "participants": [names[i] for i in who],
        }
        if order == "best":
            slot["stranded_minutes"] = stranded
        out.append(slot)
    return out


def _minute(moment: datetime) -> int:
    seconds = int(moment.timestamp())
    assert seconds % 60 == 0, "the oracle takes whole minutes"
    return seconds // 60


def _text(minute: int, zone: ZoneInfo) -> str:
    return datetime.fromtimestamp(minute * 60, zone).isoformat(timespec="seconds")


# -- the worked example ------------------------------------------------------------------------
async def test_the_worked_example_ranks_by_stranded_minutes(gateway: Any, vyte: FakeVyte) -> None:
    day, tz = meeting_day(), "Europe/Paris"
    vyte.windows[JOHN] = [(at(day, "09:00", tz), at(day, "12:00", tz))]
    query = {"participants": JOHN, "duration": 60, "step": 30, "timezone": tz}
    resp = await gateway.get(url(**query, **day_range(day, day), order="best"), headers=AUTH)
    assert resp.status == 200, await resp.text()
    got = [(s["start"], s["stranded_minutes"]) for s in (await resp.json())["slots"]]
    assert got == [
        (at(day, "09:00", tz).isoformat(), 0),
        (at(day, "10:00", tz).isoformat(), 0),
        (at(day, "11:00", tz).isoformat(), 0),
        (at(day, "09:30", tz).isoformat(), 30),
        (at(day, "10:30", tz).isoformat(), 30),
    ]

    # By start (the default) the same five slots, and no stranded_minutes; limit cuts the list.
    resp = await gateway.get(url(**query, **day_range(day, day), limit=3), headers=AUTH)
    slots = (await resp.json())["slots"]
    assert [s["start"] for s in slots] == [
        at(day, clock, tz).isoformat() for clock in ("09:00", "09:30", "10:00")
    ]
    assert all("stranded_minutes" not in s for s in slots)
    resp = await gateway.get(
        url(**query, **day_range(day, day), order="best", limit=4), headers=AUTH
    )
    assert [(s["start"], s["stranded_minutes"]) for s in (await resp.json())["slots"]] == got[:4]
    # Vyte is asked with the meeting's duration, whatever is ranked or cut.
    assert {q["duration"] for q in vyte.slot_queries} == {"60"}


# -- the property: random windows, buffers, order and limit against the oracle -------------------
ZONES = ["UTC", "Europe/Paris", "Australia/Sydney", "Asia/Kolkata", "Asia/Kathmandu"]
ZONES += ["America/St_Johns", "America/New_York"]


def random_case(seed: int) -> dict[str, Any]:
    rnd = random.Random(seed)
    tz = rnd.choice(ZONES)
    zone = ZoneInfo(tz)
    if tz in ("Europe/Paris", "Australia/Sydney", "America/New_York", "America/St_Johns"):
        # A day the clocks change on (Sydney's are the southern hemisphere's).
        first = next_transition(tz, forward=rnd.random() < 0.5)
    else:
        first = in_days(rnd.randint(2, 20))
    last = first + timedelta(days=rnd.randint(0, 1))
    duration = rnd.choice([15, 30, 45, 60, 90])
    count = rnd.randint(1, 4)
    names = [f"{rnd.getrandbits(96):024x}" for _ in range(count)]
    if rnd.random() < 0.5:
        names[0] = f"person{seed}@example.com"
    span_start = int(datetime.combine(first, datetime.min.time(), zone).timestamp()) // 60
    span_end = int(datetime.combine(last, datetime.max.time(), zone).timestamp()) // 60
    # A stretch most participants share, give or take, so that several are free together.
    shared = rnd.randrange(span_start, span_end - 360)
    windows: list[list[Window]] = []
    for _ in names:
        ws = []
        if rnd.random() < 0.8:
            start = shared + rnd.randint(-45, 45)
            ws.append(
                (
                    datetime.fromtimestamp(start * 60, zone),
                    datetime.fromtimestamp((start + rnd.randint(90, 360)) * 60, zone),
                )
            )
        for _ in range(rnd.randint(0, 6)):
            start = rnd.randrange(span_start - 60, span_end)
            end = start + rnd.choice([duration, duration + 15, 2 * duration, 240, 480, 720])
            # Sometimes touching the previous window: the union is one interval.
            if ws and rnd.random() < 0.3:
                start = _minute(ws[-1][1])
                end = start + rnd.randint(5, 180)
            ws.append(
                (
                    datetime.fromtimestamp(start * 60, zone),
                    datetime.fromtimestamp(end * 60, zone),
                )
            )
        windows.append(ws)
    params: dict[str, Any] = {
        "participants": ",".join(names),
        "duration": duration,
        "step": rnd.choice([5, 10, 15, 30, 60]),
        "timezone": tz,
        **day_range(first, last),
    }
    if rnd.random() < 0.8:
        params["required"] = rnd.randint(1, count)
    for name in ("buffer_before", "buffer_after"):
        if rnd.random() < 0.7:
            params[name] = rnd.choice([0, 5, 10, 15, 15, 30, 45, 120])
    if rnd.random() < 0.7:
        params["order"] = rnd.choice(["start", "best", "best"])
    if rnd.random() < 0.5:
        params["limit"] = rnd.randint(1, 25)
    return {"params": params, "names": names, "windows": windows, "first": first, "last": last}


def expected_for(case: dict[str, Any]) -> list[dict[str, Any]]:
    params = case["params"]
    return expected_slots(
        case["windows"],
        case["names"],
        first=case["first"],
        last=case["last"],
        tz=params["timezone"],
        duration=params["duration"],
        step=params["step"],
        required=params.get("required", len(case["names"])),
        buffer_before=params.get("buffer_before", 0),
        buffer_after=params.get("buffer_after", 0),
        order=params.get("order", "start"),
        limit=params.get("limit"),
    )


CASES = range(40)


@pytest.mark.parametrize("seed", CASES)
async def test_buffers_order_and_limit_match_a_minute_by_minute_oracle(
    gateway: Any, vyte: FakeVyte, seed: int
) -> None:
    case = random_case(seed)
    params = case["params"]
    for name, ws in zip(case["names"], case["windows"], strict=True):
        vyte.windows[name.lower()] = ws
    resp = await gateway.get(url(**params), headers=AUTH)
    assert resp.status == 200, await resp.text()
    expected = expected_for(case)
    assert (await resp.json())["slots"] == expected, params
    assert {q["duration"] for q in vyte.slot_queries} == {str(params["duration"])}


async def test_the_cases_are_not_trivial() -> None:
    # The oracle test above proves little if its answers are mostly empty or never ranked.
    answers = [expected_for(random_case(seed)) for seed in CASES]
    assert sum(1 for a in answers if a) >= 25
    ranked = [a for a in answers if a and "stranded_minutes" in a[0]]
    # Some ranked answers put later starts first (more participants, fewer stranded minutes).
    starts = [[datetime.fromisoformat(s["start"]) for s in a] for a in ranked]
    assert sum(1 for a in starts if a != sorted(a)) >= 3
    stranded = [s["stranded_minutes"] for a in answers for s in a if "stranded_minutes" in s]
    assert any(stranded) and 0 in stranded


# -- own bookings first, then buffers --------------------------------------------------------------
async def test_own_bookings_block_time_before_buffers_apply(gateway: Any, vyte: FakeVyte) -> None:
    day, tz = meeting_day(), "Europe/Paris"
    vyte.windows[JOHN] = [(at(day, "08:00", tz), at(day, "14:00", tz))]
    booking = {
        "organizer": JOHN,
        "title": "Planning",
        "start": at(day, "10:00", tz).isoformat(),
        "duration": 60,
        "timezone": tz,
        "invitees": [{"email": JANE}],
        "check_availability": False,
    }
    resp = await gateway.post("/v1/bookings", json=booking, headers=AUTH)
    assert resp.status == 201, await resp.text()
    query = {"participants": JOHN, "duration": 30, "timezone": tz, **day_range(day, day)}
    resp = await gateway.get(url(**query, buffer_before=15, buffer_after=15), headers=AUTH)
    assert resp.status == 200, await resp.text()
    slots = (await resp.json())["slots"]
    # Vyte still shows 10:00-11:00 as free: only the gateway knows of the booking.
    busy = [[(at(day, "10:00", tz), at(day, "11:00", tz))]]
    common = {"first": day, "last": day, "tz": tz, "duration": 30, "step": 30, "required": 1}
    assert slots == expected_slots(
        [vyte.windows[JOHN]],
        [JOHN],
        buffer_before=15,
        buffer_after=15,
        busy=busy,
        **common,
    )
    starts = [s["start"] for s in slots]
    # 09:30-10:00 itself is free, but not its 15 minutes after; nor 11:00 its 15 before.
    assert at(day, "09:00", tz).isoformat() in starts
    assert at(day, "09:30", tz).isoformat() not in starts
    assert at(day, "11:00", tz).isoformat() not in starts
    assert at(day, "11:30", tz).isoformat() in starts


# -- nothing in the past, nothing before now + notice ---------------------------------------------
def midday_zone(now: datetime) -> str:
    """A fixed-offset zone in which `now` is 12:00-12:59 (Etc/GMT-N is UTC+N)."""
    offset = 12 - now.hour
    if offset == 0:
        return "Etc/GMT"
    return f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"


@pytest.mark.parametrize("notice", [None, 0, 1, 180])
async def test_no_slot_starts_before_now_plus_notice(
    gateway: Any, vyte: FakeVyte, notice: int | None
) -> None:
    tz = midday_zone(datetime.now(UTC))
    zone = ZoneInfo(tz)
    today = datetime.now(zone).date()
    midnight = datetime.combine(today, datetime.min.time(), zone)
    vyte.windows[JOHN] = [(midnight, midnight + timedelta(days=1))]
    params: dict[str, Any] = {"participants": JOHN, "duration": 30, "step": 15, "timezone": tz}
    if notice is not None:
        params["notice"] = notice
    lead = timedelta(minutes=notice or 0)
    before = datetime.now(UTC)
    resp = await gateway.get(url(**params, **day_range(today, today)), headers=AUTH)
    after = datetime.now(UTC)
    assert resp.status == 200, await resp.text()
    starts = [datetime.fromisoformat(s["start"]) for s in (await resp.json())["slots"]]
    assert starts, "the afternoon is free"
    # This morning was free in Vyte, and none of it is offered.
    assert min(starts) >= before + lead
    # Nothing more is dropped than the rule says: the grid time before the first was too early.
    assert min(starts) - timedelta(minutes=15) < after + lead
    assert starts[-1] == midnight + timedelta(hours=23, minutes=30)


async def test_notice_cuts_into_later_days_too(gateway: Any, vyte: FakeVyte) -> None:
    first, last, tz = in_days(2), in_days(5), "UTC"
    whole = at(first, "00:00", tz), at(last + timedelta(days=1), "00:00", tz)
    vyte.windows[JOHN] = [whole]
    notice = 4 * 1440  # four days: the rest of the third day and all of the fourth are left
    before = datetime.now(UTC)
    resp = await gateway.get(
        url(participants=JOHN, duration=60, notice=notice, **day_range(first, last)), headers=AUTH
    )
    after = datetime.now(UTC)
    assert resp.status == 200, await resp.text()
    expected = expected_slots(
        [[whole]],
        [JOHN],
        first=first,
        last=last,
        tz=tz,
        duration=60,
        step=60,
        required=1,
        not_before=before + timedelta(minutes=notice),
    )
    later = expected_slots(
        [[whole]],
        [JOHN],
        first=first,
        last=last,
        tz=tz,
        duration=60,
        step=60,
        required=1,
        not_before=after + timedelta(minutes=notice),
    )
    slots = (await resp.json())["slots"]
    # The service read its clock between `before` and `after`.
    assert slots in (expected, later)
    assert 24 <= len(slots) <= 48


# -- validation ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("notice", "-1"),
        ("notice", "43201"),
        ("notice", "soon"),
        ("notice", ""),
        ("buffer_before", "721"),
        ("buffer_before", "-5"),
        ("buffer_before", "1.5"),
        ("buffer_after", "721"),
        ("buffer_after", "ten"),
        ("order", "worst"),
        ("order", "BEST"),
        ("order", ""),
        ("limit", "0"),
        ("limit", "1001"),
        ("limit", "all"),
    ],
)
async def test_each_bad_parameter_is_400_naming_it_before_vyte_is_asked(
    gateway: Any, vyte: FakeVyte, name: str, value: str
) -> None:
    day = meeting_day()
    query = {"participants": JOHN, "duration": 60, **day_range(day, day), name: value}
    resp = await gateway.get(url(**query), headers=AUTH)
    assert resp.status == 400
    body = await resp.json(content_type=None)
    assert [e["field"] for e in body["errors"]] == [name]
    assert vyte.requests == 0


async def test_every_bad_parameter_is_named_at_once(gateway: Any, vyte: FakeVyte) -> None:
    day = meeting_day()
    query = {"participants": JOHN, "duration": 60, **day_range(day, day)}
    bad = {"notice": "x", "buffer_before": "999", "buffer_after": "-1", "order": "z", "limit": "0"}
    resp = await gateway.get(url(**query, **bad), headers=AUTH)
    assert resp.status == 400
    body = await resp.json(content_type=None)
    assert sorted(e["field"] for e in body["errors"]) == sorted(bad)
    assert vyte.requests == 0


async def test_best_order_cannot_be_grouped_by_day(gateway: Any, vyte: FakeVyte) -> None:
    day = meeting_day()
    query = {"participants": JOHN, "duration": 60, **day_range(day, day), "group": "day"}
    resp = await gateway.get(url(**query, order="best"), headers=AUTH)
    assert resp.status == 400
    body = await resp.json(content_type=None)
    assert [e["field"] for e in body["errors"]] == ["order"]
    assert vyte.requests == 0
    # Grouping by day in start order stays fine.
    vyte.windows[JOHN] = [(at(day, "09:00", "UTC"), at(day, "11:00", "UTC"))]
    resp = await gateway.get(url(**query, order="start", limit=1), headers=AUTH)
    assert resp.status == 200
    assert (await resp.json())["days"] == [
        {
            "date": str(day),
            "slots": [
                {
                    "start": at(day, "09:00", "UTC").isoformat(),
                    "end": at(day, "10:00", "UTC").isoformat(),
                    "participants": [JOHN],
                }
            ],
        }
    ]


async def test_the_largest_values_are_accepted(gateway: Any, vyte: FakeVyte) -> None:
    day = in_days(40)  # beyond the longest notice
    # Free from the day before to the day after: room for 720 minutes either side.
    vyte.windows[JOHN] = [(at(day - timedelta(days=1), "00:00", "UTC"), at(day, "00:00", "UTC"))]
    vyte.windows[JOHN].append(
        (at(day, "00:00", "UTC"), at(day + timedelta(days=2), "00:00", "UTC"))
    )
    query = {"participants": JOHN, "duration": 5, "step": 5, **day_range(day, day)}
    extremes = {"notice": 43200, "buffer_before": 720, "buffer_after": 720, "limit": 1000}
    resp = await gateway.get(url(**query, **extremes, order="best"), headers=AUTH)
    assert resp.status == 200, await resp.text()
    slots = (await resp.json())["slots"]
    # Every 5 minutes of the day, by start (nothing is stranded in three free days).
    assert len(slots) == 288
    assert [s["stranded_minutes"] for s in slots] == [0] * 288
    assert slots[0]["start"] == at(day, "00:00", "UTC").isoformat()
    assert slots[-1]["start"] == at(day, "23:55", "UTC").isoformat()


# -- the slot cache is shared by every variant of a query ------------------------------------------
async def test_new_parameters_share_the_upstream_answer(
    gateway_factory: Any, vyte: FakeVyte
) -> None:
    gateway = await gateway_factory(vyte_base_url=vyte.url, slot_cache_ttl=60)
    day = meeting_day()
    vyte.windows[JOHN] = [(at(day, "09:00", "UTC"), at(day, "17:00", "UTC"))]
    query = {"participants": JOHN, "duration": 60, **day_range(day, day)}
    variants: list[dict[str, Any]] = [
        {},
        {"buffer_before": 30, "buffer_after": 15},
        {"order": "best", "limit": 3},
        {"notice": 60},
    ]
    for extra in variants:
        resp = await gateway.get(url(**query, **extra), headers=AUTH)
        assert resp.status == 200, await resp.text()
        rules = {k: v for k, v in extra.items() if k != "notice"}
        assert (await resp.json())["slots"] == expected_slots(
            [vyte.windows[JOHN]],
            [JOHN],
            first=day,
            last=day,
            tz="UTC",
            duration=60,
            step=60,
            required=1,
            not_before=datetime.now(UTC) + timedelta(minutes=extra.get("notice", 0)),
            **rules,
        )
    assert len(vyte.slot_queries) == 1

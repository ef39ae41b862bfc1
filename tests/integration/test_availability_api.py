"""GET /v1/availability against the sandbox and aioresponses: answers, failures, fan-out."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import aiohttp
import pytest
from aioresponses import aioresponses

from tests.conftest import AUTH, JOHN, upstream_calls
from tests.dates import in_days, iso, next_transition, seed_thursday

JANE = "5f3feb7821046c3bb9327e6b"
PRIYA = "priya@example.com"
ANISH = "5f3feb7821046c3bb9327e6d"
OLIVIA = "olivia@example.com"
MARIE = "5f3feb7821046c3bb9327e6f"
FAKE = "http://vyte.test"
SOON = {"from": str(in_days(2)), "to": str(in_days(4))}
ONE_DAY = {"from": str(in_days(3)), "to": str(in_days(3))}


def url(**params: Any) -> str:
    return "/v1/availability?" + urlencode({k: str(v) for k, v in params.items()})


async def vyte_windows(
    admin: aiohttp.ClientSession, who: str, duration: int, first: str, last: str, tz: str
) -> list[tuple[datetime, datetime]]:
    """A participant's windows, read straight from the sandbox's /v2/slots."""
    from service.sandbox import SANDBOX_API_KEY

    key = "emails" if "@" in who else "users"
    params = {"duration": duration, key: who, "from": first, "to": last, "timezone": tz}
    async with admin.get(
        "v2/slots", params=params, headers={"Authorization": SANDBOX_API_KEY}
    ) as r:
        assert r.status == 200
        body = await r.json()
    return [
        (
            datetime.fromisoformat(s["start"]["dateTime"]),
            datetime.fromisoformat(s["end"]["dateTime"]),
        )
        for s in body["slots"]
    ]


def oracle(
    windows: list[list[tuple[datetime, datetime]]],
    first: date,
    last: date,
    tz: str,
    duration: int,
    step: int,
    required: int,
) -> list[tuple[str, list[int]]]:
    """Brute force: every minute of every candidate checked against every window."""
    zone = ZoneInfo(tz)
    free_minutes = []
    for ws in windows:
        minutes: set[int] = set()
        for s, e in ws:
            t = int(s.timestamp()) // 60
            while t < int(e.timestamp()) // 60:
                minutes.add(t)
                t += 1
        free_minutes.append(minutes)
    out = []
    day = first
    seen: set[int] = set()
    while day <= last:
        for m in range(0, 1440, step):
            for fold in (0, 1):
                local = datetime(
                    day.year, day.month, day.day, m // 60, m % 60, tzinfo=zone, fold=fold
                )
                back = local.astimezone(ZoneInfo("UTC")).astimezone(zone)
                if back.replace(tzinfo=None) != local.replace(tzinfo=None):
                    continue
                t = int(local.timestamp()) // 60
                if t in seen:
                    continue
                seen.add(t)
                who = [
                    i
                    for i, f in enumerate(free_minutes)
                    if all(x in f for x in range(t, t + duration))
                ]
                if len(who) >= required:
                    out.append((t, who))
        day += timedelta(days=1)
    out.sort()
    return [
        (datetime.fromtimestamp(t * 60, zone).isoformat(timespec="seconds"), who) for t, who in out
    ]


async def test_seed_example_matches_vyte_for_one_user(
    gateway: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    thursday = seed_thursday()
    first, second = str(thursday), str(thursday + timedelta(days=1))
    resp = await gateway.get(
        url(
            participants=JOHN,
            duration=60,
            **{"from": first, "to": second},
            timezone="Europe/Paris",
        ),
        headers=AUTH,
    )
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["complete"] is True
    assert body["participants"] == [{"id": JOHN, "status": "ok"}]
    ours = [(s["start"], s["end"]) for s in body["slots"]]
    theirs = await vyte_windows(sandbox_admin, JOHN, 60, first, second, "Europe/Paris")
    theirs_text = [
        (s.isoformat(timespec="seconds"), e.isoformat(timespec="seconds")) for s, e in theirs
    ]
    # On Thursday John's busy block is hour-aligned, so both grids agree exactly.
    assert [x for x in ours if x[0].startswith(first)] == [
        x for x in theirs_text if x[0].startswith(first)
    ]
    paris = "Europe/Paris"
    assert ours[0] == (iso(thursday, "00:00", paris), iso(thursday, "01:00", paris))
    assert (iso(thursday, "12:00", paris), iso(thursday, "13:00", paris)) not in ours
    # On Friday Vyte's slots start at :30 after a busy block; the gateway walks the
    # hourly grid inside the union of Vyte's windows (00:00-09:30 and 10:30-23:30).
    friday = [int(x[0][11:13]) for x in ours if x[0].startswith(second)]
    assert friday == [*range(0, 9), *range(11, 23)]


@pytest.mark.parametrize(
    ("participants", "tz", "duration", "step", "required"),
    [
        ([JOHN, JANE], "Europe/Paris", 60, 30, None),
        ([JOHN, JANE, PRIYA, ANISH, MARIE], "Asia/Kathmandu", 30, 15, 3),
        ([JANE, OLIVIA, PRIYA], "America/St_Johns", 30, 15, 2),
    ],
)
async def test_many_participants_match_a_brute_force_oracle(
    gateway: Any,
    sandbox_admin: aiohttp.ClientSession,
    participants: list[str],
    tz: str,
    duration: int,
    step: int,
    required: int | None,
) -> None:
    # Across America's fall-back change, a week after Europe's.
    change = next_transition("America/New_York", forward=False, from_day=4)
    first, last = str(change - timedelta(days=2)), str(change + timedelta(days=2))
    params: dict[str, Any] = {
        "participants": ",".join(participants),
        "duration": duration,
        "step": step,
        "from": first,
        "to": last,
        "timezone": tz,
    }
    if required:
        params["required"] = required
    resp = await gateway.get(url(**params), headers=AUTH)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    windows = [
        await vyte_windows(sandbox_admin, p, duration, first, last, tz) for p in participants
    ]
    expected = oracle(
        windows,
        date.fromisoformat(first),
        date.fromisoformat(last),
        tz,
        duration,
        step,
        required or len(participants),
    )
    got = [(s["start"], [participants.index(p) for p in s["participants"]]) for s in body["slots"]]
    assert got == expected
    assert expected, "the case should not be trivially empty"


async def test_group_by_day(gateway: Any) -> None:
    resp = await gateway.get(
        url(
            participants=f"{JOHN},{MARIE}",
            duration=60,
            **{"from": str(in_days(2)), "to": str(in_days(7))},
            timezone="Europe/Paris",
            group="day",
        ),
        headers=AUTH,
    )
    body = await resp.json()
    assert "slots" not in body
    dates = [d["date"] for d in body["days"]]
    assert dates == sorted(dates) and len(set(dates)) == len(dates)
    for day in body["days"]:
        assert day["slots"]
        assert all(s["start"].startswith(day["date"]) for s in day["slots"])


D0 = in_days(3)
D1 = str(D0 + timedelta(days=1))


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"duration": 60, "from": str(D0), "to": D1}, "participants"),
        (
            {"participants": "bob", "duration": 60, "from": str(D0), "to": D1},
            "participants",
        ),
        (
            {"participants": JOHN, "duration": 4, "from": str(D0), "to": D1},
            "duration",
        ),
        (
            {"participants": JOHN, "duration": "6O", "from": str(D0), "to": D1},
            "duration",
        ),
        (
            {
                "participants": JOHN,
                "duration": 60,
                "from": f"{D0:%Y}-{D0.month:03d}-{D0:%d}",
                "to": D1,
            },
            "from",
        ),
        (
            {"participants": JOHN, "duration": 60, "from": str(D0 + timedelta(days=2)), "to": D1},
            "to",
        ),
        (
            {
                "participants": JOHN,
                "duration": 60,
                "from": str(D0),
                "to": str(D0 + timedelta(days=62)),
            },
            "to",
        ),
        (
            {
                "participants": JOHN,
                "duration": 60,
                "from": str(D0),
                "to": D1,
                "timezone": "Mars/Base",
            },
            "timezone",
        ),
        (
            {
                "participants": JOHN,
                "duration": 60,
                "from": str(D0),
                "to": D1,
                "step": 1441,
            },
            "step",
        ),
        (
            {
                "participants": JOHN,
                "duration": 60,
                "from": str(D0),
                "to": D1,
                "required": 2,
            },
            "required",
        ),
        (
            {
                "participants": JOHN,
                "duration": 60,
                "from": str(D0),
                "to": D1,
                "group": "week",
            },
            "group",
        ),
        (
            {
                "participants": JOHN,
                "duration": 60,
                "from": str(D0),
                "to": D1,
                "partial": "yes",
            },
            "partial",
        ),
        (
            {
                "participants": JOHN,
                "duration": 60,
                "from": str(D0),
                "to": D1,
                "colour": "red",
            },
            "colour",
        ),
        (
            {
                "participants": ",".join(f"p{i}@example.com" for i in range(51)),
                "duration": 60,
                "from": str(D0),
                "to": D1,
            },
            "participants",
        ),
    ],
)
async def test_bad_parameters_are_400_naming_the_field(
    gateway: Any, params: dict[str, Any], field: str
) -> None:
    resp = await gateway.get(url(**params), headers=AUTH)
    assert resp.status == 400
    body = await resp.json(content_type=None)
    assert field in [e["field"] for e in body["errors"]]


async def test_participants_are_deduplicated_case_insensitively(gateway: Any) -> None:
    resp = await gateway.get(
        url(
            participants=f"{PRIYA},PRIYA@Example.com,{JOHN},{JOHN.upper()}",
            duration=60,
            **ONE_DAY,
        ),
        headers=AUTH,
    )
    body = await resp.json()
    assert [p["id"] for p in body["participants"]] == [PRIYA, JOHN]
    assert body["required"] == 2


async def test_range_of_62_days_is_accepted(gateway: Any) -> None:
    resp = await gateway.get(
        # Both ends count: the 62nd day is 61 days after the first.
        url(
            participants=JOHN, duration=60, **{"from": str(D0), "to": str(D0 + timedelta(days=61))}
        ),
        headers=AUTH,
    )
    assert resp.status == 200


async def test_unknown_participant_is_422(gateway: Any) -> None:
    resp = await gateway.get(
        url(
            participants=f"{JOHN},nobody@example.com",
            duration=60,
            **ONE_DAY,
        ),
        headers=AUTH,
    )
    assert resp.status == 422
    body = await resp.json(content_type=None)
    assert "nobody@example.com" in body["detail"]
    assert {"id": JOHN, "status": "ok"} in body["participants"]


SLOTS = re.compile(rf"^{FAKE}/v2/slots\?.*$")


def one_slot_payload() -> dict[str, Any]:
    return {
        "timezone": "UTC",
        "slots": [
            {
                "start": {"dateTime": f"{ONE_DAY['from']}T09:00:00+00:00"},
                "end": {"dateTime": f"{ONE_DAY['from']}T10:00:00+00:00"},
            }
        ],
    }


@pytest.mark.parametrize(
    ("status", "headers", "expected", "retry_after"),
    [
        (503, {"Retry-After": "7"}, 503, "7"),
        (429, {"Retry-After": "3"}, 503, "3"),
        (500, {}, 502, None),
        (401, {}, 502, None),
        (404, {}, 422, None),
        (400, {}, 422, None),
    ],
)
async def test_upstream_failures_fail_closed(
    gateway_factory: Any,
    status: int,
    headers: dict[str, str],
    expected: int,
    retry_after: str | None,
) -> None:
    gw = await gateway_factory(vyte_base_url=FAKE, request_budget=1.0)
    with aioresponses(passthrough=["http://127.0.0.1"]) as mocked:
        mocked.get(SLOTS, status=status, headers=headers, body="x", repeat=True)
        resp = await gw.get(
            url(participants=JOHN, duration=60, **ONE_DAY),
            headers=AUTH,
        )
    assert resp.status == expected
    body = await resp.json(content_type=None)
    assert "slots" not in body
    assert body["participants"][0]["status"] == "error"
    if retry_after:
        assert resp.headers["Retry-After"] == retry_after


async def test_partial_counts_a_failure_as_busy(gateway_factory: Any) -> None:
    gw = await gateway_factory(vyte_base_url=FAKE, request_budget=1.0)
    with aioresponses(passthrough=["http://127.0.0.1"]) as mocked:
        mocked.get(
            re.compile(rf"^{FAKE}/v2/slots\?.*users={JOHN}.*$"),
            payload=one_slot_payload(),
            repeat=True,
        )
        mocked.get(re.compile(rf"^{FAKE}/v2/slots\?.*users={JANE}.*$"), status=500, repeat=True)
        resp = await gw.get(
            url(
                participants=f"{JOHN},{JANE}",
                duration=60,
                required=1,
                partial="true",
                **ONE_DAY,
            ),
            headers=AUTH,
        )
    assert resp.status == 200
    body = await resp.json()
    assert body["complete"] is False
    assert body["participants"][0] == {"id": JOHN, "status": "ok"}
    assert body["participants"][1]["status"] == "error" and body["participants"][1]["detail"]
    assert body["slots"] == [
        {
            "start": f"{ONE_DAY['from']}T09:00:00+00:00",
            "end": f"{ONE_DAY['from']}T10:00:00+00:00",
            "participants": [JOHN],
        }
    ]


async def test_hanging_upstream_is_504_within_budget(
    gateway_factory: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    gw = await gateway_factory(vyte_timeout=0.3, request_budget=1.0)
    await sandbox_admin.post("_sandbox/faults", json={"hang": True, "path": "/v2/slots"})
    started = time.monotonic()
    resp = await gw.get(
        url(participants=JOHN, duration=60, **ONE_DAY),
        headers=AUTH,
    )
    assert resp.status == 504
    assert time.monotonic() - started < 3.0


async def test_fan_out_is_concurrent(gateway: Any, sandbox_admin: aiohttp.ClientSession) -> None:
    people = [
        JOHN,
        JANE,
        PRIYA,
        ANISH,
        OLIVIA,
        MARIE,
        "john.doe@example.com",
        "jane@example.com",
        "anish@example.com",
        "marie.dupont@example.com",
    ]
    await sandbox_admin.post("_sandbox/faults", json={"latency": 0.2})
    started = time.monotonic()
    resp = await gateway.get(
        url(
            participants=",".join(people),
            duration=60,
            required=1,
            **{"from": str(in_days(2)), "to": str(in_days(3))},
        ),
        headers=AUTH,
    )
    elapsed = time.monotonic() - started
    assert resp.status == 200, await resp.text()
    # Sequential calls would take 10 x 0.2 s; concurrent ones about one round trip.
    assert elapsed < 1.0


async def test_single_flight_makes_one_call_per_participant(
    gateway_factory: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    gw = await gateway_factory(slot_cache_ttl=0.0)
    await sandbox_admin.post("_sandbox/faults", json={"latency": 0.3})
    before = await upstream_calls(sandbox_admin, "GET /v2/slots")
    query = url(
        participants=f"{JOHN},{JANE},{PRIYA}",
        duration=30,
        **SOON,
    )
    answers = await asyncio.gather(*(gw.get(query, headers=AUTH) for _ in range(100)))
    assert {a.status for a in answers} == {200}
    bodies = [await a.json() for a in answers]
    assert all(b == bodies[0] for b in bodies)
    assert await upstream_calls(sandbox_admin, "GET /v2/slots") - before == 3


async def test_cache_serves_repeats_within_ttl(
    gateway: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    query = url(participants=f"{JOHN},{JANE}", duration=30, **SOON)
    before = await upstream_calls(sandbox_admin, "GET /v2/slots")
    for _ in range(3):
        assert (await gateway.get(query, headers=AUTH)).status == 200
    assert await upstream_calls(sandbox_admin, "GET /v2/slots") - before == 2

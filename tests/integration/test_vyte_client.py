"""VyteClient against the sandbox (every method) and aioresponses (every error mapping)."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, time, timedelta
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses

from service.budget import budget
from service.sandbox import SANDBOX_API_KEY
from service.vyte import errors
from service.vyte.client import VyteClient, VyteOptions
from service.vyte.models import Creator, EventChanges, NewEvent, NewEventDate, NewInvitee, NewPlace
from tests.conftest import JOHN
from tests.dates import in_days, iso, zulu

FAKE = "http://vyte.test"
EVENT_START = datetime.combine(in_days(9), time(8), UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


def client_for(http: aiohttp.ClientSession, url: str, **options: Any) -> VyteClient:
    return VyteClient(http, VyteOptions(base_url=url, api_key=SANDBOX_API_KEY, **options))


def new_event(title: str = "Meeting with Quentin Tarantino") -> NewEvent:
    return NewEvent(
        title=title,
        created_by=Creator(user=JOHN),
        dates=(NewEventDate(date=zulu(EVENT_START), end_date=zulu(EVENT_START + HOUR)),),
        invitees=(
            NewInvitee(email="quentin.tarantino@hollywood.com", full_name="Quentin Tarantino"),
        ),
        places=(NewPlace(name="Place for the meeting."),),
        messages=(),
        timezone="Europe/Paris",
    )


async def test_every_method_against_the_sandbox(
    http: aiohttp.ClientSession, sandbox_url: str
) -> None:
    vyte = client_for(http, sandbox_url)
    org = await vyte.auth_test()
    assert org["_id"]

    first, last = in_days(2), in_days(3)
    slots = await vyte.slots(
        duration=60,
        first=first,
        last=last,
        timezone="Europe/Paris",
        users=JOHN,
    )
    assert slots.timezone == "Europe/Paris"
    paris_offset = iso(first, "00:00", "Europe/Paris")[-6:]
    assert slots.slots and slots.slots[0].start.date_time.endswith(paris_offset)
    # The windows alone, as availability reads them: the same texts, in the same order.
    pairs = await vyte.slot_windows(
        duration=60, first=first, last=last, timezone="Europe/Paris", users=JOHN
    )
    assert pairs == [(w.start.date_time, w.end.date_time) for w in slots.slots]

    event = await vyte.create_event(new_event())
    assert re.fullmatch(r"[0-9a-f]{24}", event.id)
    assert event.dates[0].date.startswith(zulu(EVENT_START)[:19])
    assert event.created_by.user == JOHN
    assert not event.confirmed.flag and event.cancelled is None

    fetched = await vyte.get_event(event.id)
    assert fetched.id == event.id and fetched.title == event.title
    listed = await vyte.list_events(creator_users=JOHN)
    assert event.id in {e.id for e in listed}

    moved = await vyte.update_event(
        event.id,
        EventChanges(
            dates=(
                NewEventDate(date=zulu(EVENT_START + HOUR), end_date=zulu(EVENT_START + 2 * HOUR)),
            )
        ),
    )
    assert moved.dates[0].date.startswith(zulu(EVENT_START + HOUR)[:19])

    confirmed = await vyte.confirm_event(event.id)
    assert confirmed.confirmed.flag
    await vyte.cancel_event(event.id)
    assert (await vyte.get_event(event.id)).cancelled

    hook = await vyte.create_hook("event.confirmed", "http://127.0.0.1:1/hook")
    assert hook.action == "event.confirmed"
    assert hook.id in {h.id for h in await vyte.list_hooks()}
    await vyte.delete_hook(hook.id)
    assert hook.id not in {h.id for h in await vyte.list_hooks()}

    with pytest.raises(errors.VyteNotFound):
        await vyte.get_event("0" * 24)


async def test_wrong_key_is_an_auth_error(http: aiohttp.ClientSession, sandbox_url: str) -> None:
    vyte = VyteClient(http, VyteOptions(base_url=sandbox_url, api_key="wrong"))
    with pytest.raises(errors.VyteAuthError):
        await vyte.auth_test()


async def test_request_id_is_forwarded(http: aiohttp.ClientSession) -> None:
    import structlog

    vyte = client_for(http, FAKE)
    with aioresponses(passthrough=["http://127.0.0.1"]) as mocked:
        mocked.get(f"{FAKE}/v2/auth/test", payload={"_id": "o"})
        structlog.contextvars.bind_contextvars(request_id="rid-7")
        try:
            await vyte.auth_test()
        finally:
            structlog.contextvars.clear_contextvars()
        (call,) = next(iter(mocked.requests.values()))
        assert call.kwargs["headers"]["X-Request-ID"] == "rid-7"
        assert call.kwargs["headers"]["Authorization"] == SANDBOX_API_KEY


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (400, errors.VyteRejected),
        (404, errors.VyteNotFound),
        (401, errors.VyteAuthError),
        (403, errors.VyteAuthError),
        (500, errors.VyteServerError),
        (502, errors.VyteServerError),
        (503, errors.VyteUnavailable),
        (429, errors.VyteUnavailable),
    ],
)
async def test_status_codes_map_to_error_types(
    http: aiohttp.ClientSession, status: int, expected: type[Exception]
) -> None:
    vyte = client_for(http, FAKE)
    with aioresponses(passthrough=["http://127.0.0.1"]) as mocked:
        # POST is never retried, so one mocked answer is the whole story.
        mocked.post(f"{FAKE}/v2/events", status=status, body="nope")
        with pytest.raises(expected):
            await vyte.create_event(new_event())


async def test_malformed_bodies_are_upstream_errors(http: aiohttp.ClientSession) -> None:
    vyte = client_for(http, FAKE)
    with aioresponses(passthrough=["http://127.0.0.1"]) as mocked:
        mocked.post(f"{FAKE}/v2/events", status=200, body="<html>not json</html>")
        with pytest.raises(errors.VyteBadResponse):
            await vyte.create_event(new_event())
        mocked.post(f"{FAKE}/v2/events", status=200, payload={"title": "no id"})
        with pytest.raises(errors.VyteBadResponse):
            await vyte.create_event(new_event())
        mocked.get(re.compile(rf"{FAKE}/v2/slots.*"), status=200, payload={"slots": "x"})
        with pytest.raises(errors.VyteBadResponse):
            await vyte.slots(
                duration=30,
                first=in_days(2),
                last=in_days(2),
                timezone="UTC",
                users=JOHN,
            )
        day = in_days(2)
        for payload in (
            {"slots": "x", "timezone": "UTC"},
            {"slots": []},  # no timezone
            {"slots": [{"start": {"dateTime": "x"}}], "timezone": "UTC"},  # no end
            {"slots": [{"start": "x", "end": "y"}], "timezone": "UTC"},
            ["not", "an", "object"],
        ):
            mocked.get(re.compile(rf"{FAKE}/v2/slots.*"), status=200, payload=payload)
            with pytest.raises(errors.VyteBadResponse):
                await vyte.slot_windows(
                    duration=30, first=day, last=day, timezone="UTC", users=JOHN
                )


async def test_get_is_retried_post_is_not(http: aiohttp.ClientSession) -> None:
    vyte = client_for(http, FAKE)
    with aioresponses(passthrough=["http://127.0.0.1"]) as mocked:
        mocked.get(f"{FAKE}/v2/auth/test", status=502)
        mocked.get(f"{FAKE}/v2/auth/test", status=200, payload={"_id": "o"})
        assert (await vyte.auth_test())["_id"] == "o"
        mocked.post(f"{FAKE}/v2/events", status=502)
        mocked.post(f"{FAKE}/v2/events", status=200, payload={"_id": "a" * 24})
        with pytest.raises(errors.VyteServerError):
            await vyte.create_event(new_event())


async def test_retry_after_beyond_the_budget_is_passed_on(http: aiohttp.ClientSession) -> None:
    vyte = client_for(http, FAKE)
    with aioresponses(passthrough=["http://127.0.0.1"]) as mocked:
        mocked.get(f"{FAKE}/v2/auth/test", status=429, headers={"Retry-After": "30"})
        with budget(2.0), pytest.raises(errors.VyteUnavailable) as caught:
            await vyte.auth_test()
        assert caught.value.retry_after == 30


async def test_timeout_is_its_own_error(
    http: aiohttp.ClientSession, sandbox_url: str, sandbox_admin: aiohttp.ClientSession
) -> None:
    await sandbox_admin.post("_sandbox/faults", json={"hang": True, "path": "/v2/auth/test"})
    vyte = client_for(http, sandbox_url, timeout=0.3)
    with budget(1.0), pytest.raises(errors.VyteTimeout):
        await vyte.auth_test()


async def test_slot_answers_are_read_strictly_and_big_numbers_still_parse(
    http: aiohttp.ClientSession,
) -> None:
    vyte = client_for(http, FAKE)
    day = in_days(2)
    start, end = iso(day, "09:00", "UTC"), iso(day, "10:00", "UTC")
    window = {"start": {"dateTime": start}, "end": {"dateTime": end}}
    url = re.compile(rf"{FAKE}/v2/slots.*")
    with aioresponses(passthrough=["http://127.0.0.1"]) as mocked:
        # orjson refuses integers beyond 64 bits; the standard library reads them, as before.
        mocked.get(
            url,
            status=200,
            body='{"timezone":"UTC","count":1'
            + "0" * 30
            + ',"slots":['
            + json.dumps(window)
            + "]}",
        )
        slots = await vyte.slots(duration=30, first=day, last=day, timezone="UTC", users=JOHN)
        assert slots.timezone == "UTC"
        assert [(w.start.date_time, w.end.date_time) for w in slots.slots] == [(start, end)]
        for bad in (
            {"timezone": "UTC", "slots": [{"start": window["start"]}]},
            {"timezone": "UTC", "slots": [{"start": "09:00", "end": window["end"]}]},
            {"slots": [window]},
            {"timezone": "UTC", "slots": {"0": window}},
        ):
            mocked.get(url, status=200, payload=bad)
            with pytest.raises(errors.VyteBadResponse):
                await vyte.slots(duration=30, first=day, last=day, timezone="UTC", users=JOHN)
        mocked.get(url, status=200, body=b"\xff not utf-8")
        with pytest.raises(errors.VyteBadResponse):
            await vyte.slots(duration=30, first=day, last=day, timezone="UTC", users=JOHN)

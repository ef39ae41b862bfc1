"""Hostile input stopped at the edge (DESIGN §3.1, §3.2, §3.6): text, time zones, years,
corrupt bodies and requests the HTTP parser rejects never reach Vyte or the breaker, and
are answered without echoing the request."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from typing import Any

import aiohttp
import pytest
import structlog
from aiohttp import web

from service.app import create_app
from service.http.server import GatewayRunner
from tests.conftest import AUTH, JOHN, TOKEN, make_settings
from tests.dates import iso, meeting_day

PARIS = "Europe/Paris"
DAY = meeting_day()
CREATE = "POST /v2/events"
SLOTS = "GET /v2/slots"


def booking_body(**changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "organizer": JOHN,
        "title": "Input rules",
        "start": iso(DAY, "10:00", PARIS),
        "duration": 30,
        "timezone": PARIS,
        "invitees": [{"full_name": "Guest", "email": "guest@example.com"}],
        "place": {"name": "Room 1"},
    }
    body.update(changes)
    return body


def availability(**changes: str) -> str:
    params = {
        "participants": JOHN,
        "duration": "60",
        "from": str(DAY),
        "to": str(DAY),
        "timezone": PARIS,
    }
    params.update(changes)
    return "/v1/availability?" + "&".join(f"{k}={v}" for k, v in params.items())


async def calls(admin: aiohttp.ClientSession, route: str) -> int:
    async with admin.get("_sandbox/stats") as resp:
        return int((await resp.json())["requests"].get(route, 0))


@pytest.fixture
async def gw(gateway_factory: Any) -> Any:
    return await gateway_factory(resync_interval=0)


BAD_BODIES = [
    ({"title": "\ud800x"}, "title"),
    ({"title": "x\udfff"}, "title"),
    (
        {"invitees": [{"full_name": "Q\ud83d", "email": "guest@example.com"}]},
        "invitees[0].full_name",
    ),
    ({"title": "nul\x00inside"}, "title"),
    ({"title": "escape \x1b[31m"}, "title"),
    ({"title": "two\nlines"}, "title"),
    ({"title": "c1 \x85 control"}, "title"),
    ({"place": {"name": "Room\t1"}}, "place.name"),
    ({"message": "bell\x07"}, "message"),
    ({"message": "cr\r\nlf"}, "message"),
    ({"timezone": "localtime"}, "timezone"),
    ({"timezone": "Factory"}, "timezone"),
    ({"timezone": "posixrules"}, "timezone"),
    ({"timezone": "posix/Europe/Paris"}, "timezone"),
    ({"start": "0001-01-01T10:00:00+02:00"}, "start"),
    ({"start": "9999-12-31T10:00:00+00:00"}, "start"),
    (
        {"start": iso(DAY, "10:00", PARIS), "duration": None, "end": "9999-12-31T11:00:00+00:00"},
        "end",
    ),
    ({"start": "2101-01-01T10:00:00Z"}, "start"),
]


@pytest.mark.parametrize("prefer", [{}, {"Prefer": "respond-async"}])
async def test_bad_text_zones_and_years_never_reach_vyte(
    gw: Any, sandbox_admin: aiohttp.ClientSession, prefer: dict[str, str]
) -> None:
    before = await calls(sandbox_admin, CREATE), await calls(sandbox_admin, SLOTS)
    for changes, field in BAD_BODIES:
        body = {k: v for k, v in booking_body(**changes).items() if v is not None}
        resp = await gw.post("/v1/bookings", json=body, headers={**AUTH, **prefer})
        assert resp.status == 400, (changes, await resp.text())
        problem = await resp.json()
        assert problem["type"] == "/problems/validation-error"
        assert [e["field"] for e in problem["errors"]] == [field], changes
        # The answer names the field, never the offending characters.
        assert "\\u0000" not in await resp.text() and "\\u001b" not in await resp.text()
    assert (await calls(sandbox_admin, CREATE), await calls(sandbox_admin, SLOTS)) == before
    # A line feed and a tab are fine in a message, and reach Vyte as they are.
    made = await gw.post(
        "/v1/bookings", json=booking_body(message="Hello,\n\tsee you"), headers=AUTH
    )
    assert made.status == 201, await made.text()
    assert await calls(sandbox_admin, CREATE) == before[0] + 1


async def test_a_bad_field_name_is_named_without_its_bytes(gw: Any) -> None:
    body = json.dumps({**booking_body(), "x\u0001y": 1})
    resp = await gw.post(
        "/v1/bookings", data=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert resp.status == 400
    (error,) = (await resp.json())["errors"]
    assert error["field"] == "x\\x01y"


FIRST_YEAR = 2000  # DESIGN §3.1: years outside 2000-2100 are refused


@pytest.mark.parametrize(
    "query",
    [
        {"from": "0001-01-01", "to": "0001-01-01"},
        {"from": "9999-12-30", "to": "9999-12-31"},
        # The last day before the first year allowed, up to the first day allowed.
        {"from": f"{FIRST_YEAR - 1}-12-31", "to": f"{FIRST_YEAR}-01-01"},
        {"timezone": "localtime"},
        {"timezone": "Factory"},
        {"participants": "%01" + JOHN},
    ],
)
async def test_bad_availability_queries_never_open_the_breaker(
    gateway_factory: Any, sandbox_admin: aiohttp.ClientSession, query: dict[str, str]
) -> None:
    gw = await gateway_factory(resync_interval=0, breaker_threshold=3)
    before = await calls(sandbox_admin, SLOTS)
    for _ in range(3 + 2):
        resp = await gw.get(availability(**query), headers=AUTH)
        assert resp.status == 400, await resp.text()
        problem = await resp.json()
        assert problem["type"] == "/problems/validation-error"
        assert {e["field"] for e in problem["errors"]} <= {"from", "to", "timezone", "participants"}
    assert await calls(sandbox_admin, SLOTS) == before
    good = await gw.get(availability(), headers=AUTH)
    assert good.status == 200, await good.text()
    assert await calls(sandbox_admin, SLOTS) == before + 1


async def test_years_at_the_edges_of_the_range_are_read(gw: Any) -> None:
    # 2100 is still allowed: the answer is about that date, not a refusal of the year.
    resp = await gw.get(availability(**{"from": "2100-12-31", "to": "2100-12-31"}), headers=AUTH)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["from"] == "2100-12-31"


async def test_a_corrupt_gzip_body_is_a_400_and_a_sound_one_is_read(
    gw: Any, sandbox_admin: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    raw = json.dumps(booking_body()).encode()
    headers = {**AUTH, "Content-Type": "application/json", "Content-Encoding": "gzip"}
    before = await calls(sandbox_admin, CREATE)
    for corrupt in (b"\x1f\x8b\x08\x00 not gzip at all", gzip.compress(raw)[:-12], b"plain"):
        resp = await gw.post("/v1/bookings", data=corrupt, headers=headers)
        assert resp.status == 400, await resp.text()
        (error,) = (await resp.json())["errors"]
        assert error["field"] == "body"
    assert await calls(sandbox_admin, CREATE) == before
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    resp = await gw.post("/v1/bookings", data=gzip.compress(raw), headers=headers)
    assert resp.status == 201, await resp.text()


@pytest.fixture
async def raw_gateway(tmp_path: Any, sandbox_url: str) -> Any:
    """The gateway served as `serve` serves it (GatewayRunner), on a loopback port."""
    app = create_app(make_settings(tmp_path, vyte_base_url=sandbox_url, resync_interval=0))
    runner = GatewayRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    yield server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    await runner.cleanup()


async def exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    return answer


@pytest.mark.parametrize(
    "bad",
    [
        b"X-Bad: a\x01b\r\n",
        b"X-Long: " + b"y" * 20000 + b"\r\n",
        b"Bad Header No Colon\r\n",
    ],
)
async def test_a_request_the_parser_rejects_echoes_nothing(
    raw_gateway: int, bad: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    request = (
        b"GET /v1/bookings/0123456789abcdef01234567 HTTP/1.1\r\nHost: gw\r\n"
        b"Authorization: Bearer " + TOKEN.encode() + b"\r\n" + bad + b"\r\n"
    )
    with caplog.at_level(logging.DEBUG), structlog.testing.capture_logs() as logs:
        answer = await exchange(raw_gateway, request)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith((b"HTTP/1.0 400 ", b"HTTP/1.1 400 "))
    assert b"content-type: application/problem+json" in head.lower()
    assert TOKEN.encode() not in answer and b"Bearer" not in answer and b"X-" not in body
    problem = json.loads(body)
    assert problem["type"] == "/problems/http-error" and problem["status"] == 400
    rejected = [e for e in logs if e["event"] == "http_request_rejected"]
    assert [e["log_level"] for e in rejected] == ["warning"]
    assert TOKEN not in repr(logs)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    # A sound request on a new connection is served as always.
    good = await exchange(
        raw_gateway,
        b"GET /livez HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
    )
    assert good.startswith(b"HTTP/1.1 200 ")


async def test_a_non_http_knock_is_answered_and_logged_quietly(raw_gateway: int) -> None:
    with structlog.testing.capture_logs() as logs:
        # The start of a TLS ClientHello, sent to the plain-HTTP port.
        answer = await exchange(
            raw_gateway, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"
        )
    assert answer.split(b"\r\n", 1)[0].endswith(b" 400 Bad Request")
    assert [e["log_level"] for e in logs if e["event"] == "http_request_rejected"] == ["info"]

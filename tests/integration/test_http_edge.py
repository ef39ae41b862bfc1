"""The HTTP edge: request ids, auth, problem+json for every error, body limits, health."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from service import logging as service_logging
from service.app import create_app
from tests.conftest import AUTH, TOKEN, make_settings

PROBLEM = "application/problem+json"


async def assert_problem(resp: Any, status: int) -> dict[str, Any]:
    assert resp.status == status
    assert resp.content_type == PROBLEM
    body: dict[str, Any] = await resp.json(content_type=None)
    assert body["status"] == status
    assert {"type", "title", "detail"} <= body.keys()
    return body


async def test_request_id_is_echoed_or_replaced(gateway: Any) -> None:
    resp = await gateway.get("/livez", headers={"X-Request-ID": "abc-123"})
    assert resp.headers["X-Request-ID"] == "abc-123"
    for bad in ("x" * 129, "caf\u00e9", "tab\there"):
        resp = await gateway.get("/livez", headers={"X-Request-ID": bad})
        assert resp.status == 200
        assert resp.headers["X-Request-ID"] not in (bad, "")
    resp = await gateway.get("/livez")
    generated = resp.headers["X-Request-ID"]
    assert len(generated) == 32


async def test_v1_needs_a_valid_bearer_token(gateway: Any) -> None:
    path = "/v1/bookings/5f43a0caf795d9206556122a"
    await assert_problem(await gateway.get(path), 401)
    await assert_problem(await gateway.get(path, headers={"Authorization": "Bearer nope"}), 401)
    await assert_problem(await gateway.get(path, headers={"Authorization": TOKEN}), 401)
    resp = await gateway.get("/livez")
    assert resp.status == 200


async def test_unknown_route_and_method_are_problems(gateway: Any) -> None:
    body = await assert_problem(await gateway.get("/v1/nothing-here", headers=AUTH), 404)
    assert body["type"] == "/problems/not-found"
    resp = await gateway.delete("/v1/bookings", headers=AUTH)
    await assert_problem(resp, 405)
    assert "POST" in resp.headers["Allow"]


async def test_non_json_body_is_415_and_large_body_is_413(gateway: Any) -> None:
    resp = await gateway.post(
        "/v1/bookings", data="title=x", headers={**AUTH, "Content-Type": "text/plain"}
    )
    await assert_problem(resp, 415)
    big = io.BytesIO(json.dumps({"title": "x" * (1024 * 1024 + 10)}).encode())
    resp = await gateway.post(
        "/v1/bookings", data=big, headers={**AUTH, "Content-Type": "application/json"}
    )
    await assert_problem(resp, 413)


async def test_unexpected_exception_is_a_500_without_traceback(
    tmp_path: Path, sandbox_url: str
) -> None:
    app = create_app(make_settings(tmp_path, vyte_base_url=sandbox_url))

    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals")

    app.router.add_get("/v1/boom", boom)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        resp = await client.get("/v1/boom", headers=AUTH)
        body = await assert_problem(resp, 500)
        assert "secret internals" not in json.dumps(body)
        assert "Traceback" not in await resp.text()


async def test_health(gateway_factory: Any) -> None:
    up = await gateway_factory()
    assert (await up.get("/livez")).status == 200
    resp = await up.get("/readyz")
    assert resp.status == 200, await resp.text()
    down = await gateway_factory(vyte_base_url="http://127.0.0.1:9")
    resp = await down.get("/readyz")
    # Vyte is shared by every replica: its outage is reported, never a reason to be unready.
    assert resp.status == 200
    assert (await resp.json())["checks"]["vyte"].startswith("unavailable")
    assert (await down.get("/livez")).status == 200


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    service_logging.configure("info", "json", secrets=[TOKEN], stream=stream)
    yield stream
    service_logging.reset()


async def test_one_access_line_per_request_with_context(
    gateway: Any, json_logs: io.StringIO
) -> None:
    await gateway.get("/v1/bookings/zz", headers={**AUTH, "X-Request-ID": "req-42"})
    lines = [json.loads(line) for line in json_logs.getvalue().splitlines() if line]
    access = [line for line in lines if line.get("event") == "request"]
    assert len(access) == 1
    entry = access[0]
    assert entry["request_id"] == "req-42"
    assert entry["caller"] == "alpha"
    assert entry["status"] == 404
    assert entry["route"] == "/v1/bookings/{booking_id}"
    assert "duration_ms" in entry
    assert TOKEN not in json.dumps(lines)

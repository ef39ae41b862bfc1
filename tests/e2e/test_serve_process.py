"""`booking-gateway serve --sandbox` as a real process: health, auth, problems, SIGTERM."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from service.config import SANDBOX_TOKEN
from tests.dates import iso, meeting_day
from tests.e2e.process import Process, start

pytestmark = pytest.mark.e2e


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Process]:
    process = start(["serve", "--sandbox"], tmp_path)
    yield process
    process.stop()


def fetch(url: str, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url)  # noqa: S310 - loopback only
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def test_serve_sandbox_answers_health_auth_and_problems(served: Process) -> None:
    status, _, body = fetch(served.url + "/livez")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, _, _ = fetch(served.url + "/readyz")
    assert status == 200

    status, headers, body = fetch(served.url + "/v1/bookings/5f43a0caf795d9206556122a")
    assert status == 401 and headers["Content-Type"].startswith("application/problem+json")

    status, headers, body = fetch(served.url + "/v1/nowhere", token=SANDBOX_TOKEN)
    assert status == 404 and headers["Content-Type"].startswith("application/problem+json")
    assert json.loads(body)["status"] == 404

    first = meeting_day()
    query = (
        "/v1/availability?participants=5f3feb7821046c3bb9327e6a&duration=60"
        f"&from={first}&to={first + timedelta(days=1)}&timezone=Europe/Paris"
    )
    status, _, body = fetch(served.url + query, token=SANDBOX_TOKEN)
    assert status == 200
    assert json.loads(body)["slots"][0]["start"] == iso(first, "00:00", "Europe/Paris")

    assert served.stop() == 0
    assert "sandbox-token" in served.output()  # the start-up hint tells people what to use

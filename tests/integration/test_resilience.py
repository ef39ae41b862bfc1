"""Upstream resilience (DESIGN §4): retries, Retry-After, budgets, the breaker, saturation.

Each case runs through the real app: against the sandbox with injected faults, or against
aioresponses for exact failure shapes. Time bounds are generous for a busy machine, but
each one is well below what the failure would cost without the mechanism under test.
"""

from __future__ import annotations

import asyncio
import re
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest
from aioresponses import aioresponses

from service import keys, metrics
from service.backoff import exponential
from service.vyte import errors
from service.vyte.client import RETRY_AFTER_LIMIT, is_retryable, retry_after_seconds
from service.vyte.policy import BreakerState, CircuitBreaker
from tests.conftest import ADMIN_AUTH, AUTH, JOHN, upstream_calls
from tests.dates import in_days, iso

FAKE_VYTE = "http://vyte.test"
SLOTS = "GET /v2/slots"
SLOTS_URL = re.compile(r"^http://vyte\.test/v2/slots\?.*$")
FIRST_DAY, SECOND_DAY = in_days(2), in_days(3)
SLOTS_BODY = {
    "timezone": "Europe/Paris",
    "slots": [
        {
            "start": {"dateTime": iso(FIRST_DAY, "09:00", "Europe/Paris")},
            "end": {"dateTime": iso(FIRST_DAY, "11:00", "Europe/Paris")},
        }
    ],
}
# Slack for scheduling noise on top of each time bound.
SLACK = 1.0


def availability(first: str = str(FIRST_DAY), last: str = str(SECOND_DAY)) -> str:
    return (
        f"/v1/availability?participants={JOHN}&duration=60&from={first}&to={last}"
        "&timezone=Europe/Paris"
    )


async def timed_get(client: Any, path: str) -> tuple[aiohttp.ClientResponse, float, Any]:
    started = time.monotonic()
    resp = await client.get(path, headers=AUTH)
    body = await resp.json()
    return resp, time.monotonic() - started, body


async def inject(admin: aiohttp.ClientSession, **fault: Any) -> None:
    fault.setdefault("path", "/v2/slots")
    async with admin.post("_sandbox/faults", json=fault) as resp:
        assert resp.status == 200, await resp.text()


async def clear_faults(admin: aiohttp.ClientSession) -> None:
    async with admin.delete("_sandbox/faults") as resp:
        assert resp.status in (200, 204)


async def until_called(admin: aiohttp.ClientSession, times: int, timeout: float = 5.0) -> None:
    """Wait until the sandbox has been asked for slots `times` times."""
    deadline = time.monotonic() + timeout
    while await upstream_calls(admin, SLOTS) < times:
        assert time.monotonic() < deadline, "the upstream call never arrived"
        await asyncio.sleep(0.02)


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


# -- retries ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 502, 503, 504])
async def test_a_transient_failure_is_retried_then_succeeds(
    gateway_factory: Any, sandbox_admin: aiohttp.ClientSession, status: int
) -> None:
    gateway = await gateway_factory(slot_cache_ttl=0)
    reason = {429: "unavailable", 502: "server_error", 503: "unavailable", 504: "timeout"}[status]
    retries = sample("gateway_upstream_retries_total", endpoint=SLOTS, reason=reason)
    await inject(sandbox_admin, status=status, count=1)

    resp, _, body = await timed_get(gateway, availability())

    assert resp.status == 200, body
    assert body["slots"] and body["complete"] is True
    assert await upstream_calls(sandbox_admin, SLOTS) == 2
    assert sample("gateway_upstream_retries_total", endpoint=SLOTS, reason=reason) == retries + 1


async def test_other_5xx_and_4xx_answers_are_not_retried(
    gateway_factory: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    gateway = await gateway_factory(slot_cache_ttl=0)
    await inject(sandbox_admin, status=500, count=1)
    resp, _, body = await timed_get(gateway, availability())
    assert resp.status == 502 and body["type"] == "/problems/upstream-error"
    assert await upstream_calls(sandbox_admin, SLOTS) == 1

    await inject(sandbox_admin, status=404, count=1)
    resp, _, body = await timed_get(gateway, availability())
    assert resp.status == 422
    assert await upstream_calls(sandbox_admin, SLOTS) == 2


async def test_persistent_5xx_is_a_502_within_the_budget(
    gateway_factory: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    gateway = await gateway_factory(slot_cache_ttl=0, request_budget=4.0)
    await inject(sandbox_admin, status=502)

    resp, elapsed, body = await timed_get(gateway, availability())

    assert resp.status == 502 and body["type"] == "/problems/upstream-error"
    assert body["participants"] == [
        {"id": JOHN, "status": "error", "reason": "error", "detail": "Vyte answered 502"}
    ]
    assert await upstream_calls(sandbox_admin, SLOTS) == 3  # every attempt, then no more
    assert elapsed < 4.0


async def test_a_hang_is_a_504_after_the_attempt_timeout(
    gateway_factory: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    gateway = await gateway_factory(vyte_timeout=0.5, request_budget=10.0)
    await inject(sandbox_admin, hang=True)

    resp, elapsed, body = await timed_get(gateway, availability())

    assert resp.status == 504 and body["type"] == "/problems/upstream-timeout"
    assert 0.45 <= elapsed < 0.5 + SLACK
    # A timed-out GET is not sent again: that would only double the wait.
    assert await upstream_calls(sandbox_admin, SLOTS) == 1


async def test_a_hang_never_outlasts_the_request_budget(
    gateway_factory: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    gateway = await gateway_factory(vyte_timeout=10.0, request_budget=0.6)
    await inject(sandbox_admin, hang=True)

    resp, elapsed, _ = await timed_get(gateway, availability())

    assert resp.status == 504
    assert 0.55 <= elapsed < 0.6 + SLACK


async def test_retries_and_waits_stay_inside_the_budget(
    gateway_factory: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    gateway = await gateway_factory(slot_cache_ttl=0, vyte_timeout=5.0, request_budget=1.0)
    # Slow failures that ask for a wait: without a budget, 3 attempts and 2 waits take 1.4 s.
    await inject(sandbox_admin, status=503, latency=0.2, retry_after=0.4)

    resp, elapsed, _ = await timed_get(gateway, availability())

    assert resp.status in (503, 504)
    assert elapsed < 1.0 + 0.5


# -- Retry-After -----------------------------------------------------------------------------


async def test_a_429_retry_after_is_honoured(
    gateway_factory: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    gateway = await gateway_factory(slot_cache_ttl=0)
    await inject(sandbox_admin, status=429, retry_after=0.5, count=1)

    resp, elapsed, body = await timed_get(gateway, availability())

    assert resp.status == 200, body
    assert elapsed >= 0.5  # waited as asked, then tried again
    assert await upstream_calls(sandbox_admin, SLOTS) == 2


async def test_persistent_429_becomes_a_503_with_retry_after(
    gateway_factory: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    gateway = await gateway_factory(slot_cache_ttl=0)
    await inject(sandbox_admin, status=429, retry_after=0.2)

    resp, elapsed, body = await timed_get(gateway, availability())

    assert resp.status == 503 and body["type"] == "/problems/upstream-unavailable"
    assert resp.headers["Retry-After"] == "1"  # whole seconds, never 0
    assert body["participants"][0]["reason"] == "unavailable"
    assert await upstream_calls(sandbox_admin, SLOTS) == 3
    assert 0.4 <= elapsed < 0.4 + SLACK


async def test_a_retry_after_beyond_the_cap_is_passed_on_at_once(
    gateway_factory: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    gateway = await gateway_factory(slot_cache_ttl=0, request_budget=60.0)
    await inject(sandbox_admin, status=503, retry_after=30)

    resp, elapsed, _ = await timed_get(gateway, availability())

    assert resp.status == 503
    assert resp.headers["Retry-After"] == "30"
    assert elapsed < SLACK
    assert await upstream_calls(sandbox_admin, SLOTS) == 1


async def test_a_retry_after_longer_than_the_budget_left_is_passed_on_at_once(
    gateway_factory: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    gateway = await gateway_factory(slot_cache_ttl=0, request_budget=1.0)
    await inject(sandbox_admin, status=429, retry_after=2)

    resp, elapsed, _ = await timed_get(gateway, availability())

    assert resp.status == 503 and resp.headers["Retry-After"] == "2"
    assert elapsed < SLACK
    assert await upstream_calls(sandbox_admin, SLOTS) == 1


def test_retry_after_parsing() -> None:
    assert retry_after_seconds(None) is None
    assert retry_after_seconds("") is None
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds("nan") is None
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(" 0.25 ") == 0.25
    assert retry_after_seconds("-3") == 0.0
    assert retry_after_seconds("99999999") == RETRY_AFTER_LIMIT
    assert retry_after_seconds("inf") == RETRY_AFTER_LIMIT
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    parsed = retry_after_seconds(in_a_minute)
    assert parsed is not None and 55 <= parsed <= 60
    past = format_datetime(datetime.now(UTC) - timedelta(hours=1), usegmt=True)
    assert retry_after_seconds(past) == 0.0


def test_what_is_retryable() -> None:
    assert is_retryable(errors.VyteConnectionError("refused"))
    assert is_retryable(errors.VyteUnavailable("busy", status=429))
    assert is_retryable(errors.VyteUnavailable("down", status=503))
    assert is_retryable(errors.VyteServerError("bad gateway", status=502))
    assert is_retryable(errors.VyteTimeout("gateway timeout", status=504))
    assert not is_retryable(errors.VyteServerError("boom", status=500))
    assert not is_retryable(errors.VyteTimeout("no answer in time"))
    assert not is_retryable(errors.VyteBadResponse("not JSON", status=200))
    assert not is_retryable(errors.VyteNotFound("who?", status=404))
    assert not is_retryable(errors.CircuitOpen("open", retry_after=3))
    assert not is_retryable(errors.Saturated("full", retry_after=1))


def test_backoff_is_full_jitter_and_capped() -> None:
    for attempt in range(1, 10):
        delays = [exponential(attempt, 0.1, 2.0) for _ in range(200)]
        assert all(0 <= d <= min(2.0, 0.1 * 2 ** (attempt - 1)) for d in delays)
        assert len(set(delays)) > 1


# -- with aioresponses: exact failure shapes -------------------------------------------------


async def test_a_connection_error_is_retried(gateway_factory: Any) -> None:
    gateway = await gateway_factory(vyte_base_url=FAKE_VYTE)
    with aioresponses(passthrough=["http://127.0.0.1"]) as mocked:
        mocked.get(SLOTS_URL, exception=aiohttp.ClientConnectionError("connection reset"))
        mocked.get(SLOTS_URL, status=200, payload=SLOTS_BODY)
        resp, _, body = await timed_get(gateway, availability())
        assert resp.status == 200, body
        assert body["slots"][0]["start"] == iso(FIRST_DAY, "09:00", "Europe/Paris")
        assert _gets(mocked) == 2


async def test_an_http_date_retry_after_is_passed_on(gateway_factory: Any) -> None:
    gateway = await gateway_factory(vyte_base_url=FAKE_VYTE)
    later = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    with aioresponses(passthrough=["http://127.0.0.1"]) as mocked:
        mocked.get(SLOTS_URL, status=503, headers={"Retry-After": later})
        resp, elapsed, _ = await timed_get(gateway, availability())
    assert resp.status == 503
    assert 85 <= int(resp.headers["Retry-After"]) <= 90
    assert elapsed < SLACK


async def test_post_is_never_retried(
    gateway_factory: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    gateway = await gateway_factory()
    await inject(sandbox_admin, status=503, count=1, path="/v2/events")
    body = {
        "organizer": JOHN,
        "title": "Retry test",
        "start": iso(in_days(3), "10:00", "Europe/Paris"),
        "duration": 30,
        "timezone": "Europe/Paris",
        "invitees": [{"email": "guest@example.com"}],
        "check_availability": False,
    }
    resp = await gateway.post("/v1/bookings", json=body, headers=AUTH)
    assert resp.status == 503, await resp.text()
    assert await upstream_calls(sandbox_admin, "POST /v2/events") == 1
    async with sandbox_admin.get("_sandbox/events") as listed:
        assert await listed.json() == []


def _gets(mocked: aioresponses) -> int:
    return sum(len(calls) for (method, _), calls in mocked.requests.items() if method == "GET")


# -- circuit breaker -------------------------------------------------------------------------


async def test_the_breaker_opens_answers_fast_then_half_opens_and_recovers(
    gateway_factory: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    cooldown = 1.0
    gateway = await gateway_factory(
        slot_cache_ttl=0, breaker_threshold=3, breaker_cooldown=cooldown
    )
    vyte = gateway.app[keys.VYTE]
    host = vyte.host
    opened = sample("gateway_circuit_transitions_total", host=host, state="open")
    await inject(sandbox_admin, status=500)  # not retried: one upstream call per request

    for _ in range(3):
        resp, _, _ = await timed_get(gateway, availability())
        assert resp.status == 502
    assert await upstream_calls(sandbox_admin, SLOTS) == 3
    assert sample("gateway_circuit_state", host=host) == 2
    assert sample("gateway_circuit_transitions_total", host=host, state="open") == opened + 1

    # Open: answered at once with 503 + Retry-After, Vyte is not asked.
    resp, elapsed, body = await timed_get(gateway, availability())
    assert resp.status == 503 and body["type"] == "/problems/upstream-unavailable"
    assert 1 <= int(resp.headers["Retry-After"]) <= 2
    assert elapsed < 0.5
    # Bookings answer the same way (an admin's read of an unknown id asks Vyte).
    resp = await gateway.get("/v1/bookings/5f43a0caf795d9206556122a", headers=ADMIN_AUTH)
    assert resp.status == 503 and int(resp.headers["Retry-After"]) >= 1
    assert await upstream_calls(sandbox_admin, SLOTS) == 3
    assert await upstream_calls(sandbox_admin, "GET /v2/events/{id}") == 0

    # Half-open: one probe goes through; Vyte still fails, so the breaker opens again.
    await asyncio.sleep(cooldown + 0.1)
    assert sample("gateway_circuit_state", host=host) == 1
    resp, _, _ = await timed_get(gateway, availability())
    assert resp.status == 502
    assert await upstream_calls(sandbox_admin, SLOTS) == 4
    resp, _, _ = await timed_get(gateway, availability())
    assert resp.status == 503
    assert await upstream_calls(sandbox_admin, SLOTS) == 4

    # Vyte recovers: the next probe succeeds and closes the breaker.
    await clear_faults(sandbox_admin)
    await asyncio.sleep(cooldown + 0.1)
    for _ in range(2):
        resp, _, body = await timed_get(gateway, availability())
        assert resp.status == 200, body
    assert await upstream_calls(sandbox_admin, SLOTS) == 6
    assert vyte.breaker.state == BreakerState.CLOSED
    assert sample("gateway_circuit_state", host=host) == 0


async def test_only_one_probe_goes_through_when_half_open(
    gateway_factory: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    gateway = await gateway_factory(
        slot_cache_ttl=0, breaker_threshold=1, breaker_cooldown=0.5, vyte_timeout=5.0
    )
    await inject(sandbox_admin, status=500, count=1)
    resp, _, _ = await timed_get(gateway, availability())
    assert resp.status == 502
    await asyncio.sleep(0.6)
    # The probe is slow; requests meanwhile are refused instead of piling onto Vyte.
    await inject(sandbox_admin, latency=1.0, count=1)
    probe = asyncio.create_task(timed_get(gateway, availability()))
    await until_called(sandbox_admin, 2)
    others = await asyncio.gather(*(timed_get(gateway, availability(d, d)) for d in _days(3)))
    assert [r.status for r, _, _ in others] == [503, 503, 503]
    assert all(r.headers["Retry-After"] == "1" for r, _, _ in others)
    resp, _, _ = await probe
    assert resp.status == 200
    assert await upstream_calls(sandbox_admin, SLOTS) == 2


def test_breaker_state_machine() -> None:
    now = [0.0]
    changes: list[tuple[str, str]] = []
    breaker = CircuitBreaker(
        3, 10.0, clock=lambda: now[0], listener=lambda old, new: changes.append((old, new))
    )
    for _ in range(2):
        assert breaker.before_call() is False
        breaker.on_failure()
    breaker.on_success()  # a success resets the count: failures must be consecutive
    for _ in range(3):
        assert breaker.before_call() is False
        breaker.on_failure()
    assert breaker.state == BreakerState.OPEN
    now[0] = 4.0
    with pytest.raises(errors.CircuitOpen) as refused:
        breaker.before_call()
    assert refused.value.retry_after == pytest.approx(6.0)

    now[0] = 10.0
    assert breaker.state == BreakerState.HALF_OPEN
    assert breaker.before_call() is True  # the probe
    with pytest.raises(errors.CircuitOpen):
        breaker.before_call()  # only one at a time
    breaker.on_neutral(probe=True)  # the probe was cancelled: another may go
    assert breaker.before_call() is True
    breaker.on_failure(probe=True)
    assert breaker.state == BreakerState.OPEN  # a failed probe re-opens for a full cooldown
    now[0] = 19.0
    assert breaker.state == BreakerState.OPEN
    now[0] = 20.0
    assert breaker.before_call() is True
    breaker.on_success()
    assert breaker.state == BreakerState.CLOSED and breaker.failures == 0
    assert changes == [
        ("closed", "open"),
        ("open", "half_open"),
        ("open", "half_open"),
        ("half_open", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]


def test_failures_while_already_open_do_not_extend_the_cooldown() -> None:
    now = [0.0]
    breaker = CircuitBreaker(1, 5.0, clock=lambda: now[0])
    breaker.on_failure()
    now[0] = 3.0
    breaker.on_failure()  # a call that started before the breaker opened
    now[0] = 5.0
    assert breaker.state == BreakerState.HALF_OPEN


# -- saturation ------------------------------------------------------------------------------


async def test_saturation_is_a_fast_503_not_a_queue(
    gateway_factory: Any, sandbox_admin: aiohttp.ClientSession
) -> None:
    gateway = await gateway_factory(
        slot_cache_ttl=0, vyte_concurrency=1, vyte_timeout=5.0, request_budget=6.0
    )
    await inject(sandbox_admin, latency=1.8, count=1)
    slow = asyncio.create_task(timed_get(gateway, availability()))
    await until_called(sandbox_admin, 1)

    resp, elapsed, body = await timed_get(gateway, availability(str(in_days(5)), str(in_days(6))))

    assert resp.status == 503 and body["type"] == "/problems/upstream-unavailable"
    assert resp.headers["Retry-After"] == "1"
    assert 0.9 <= elapsed < 1.0 + SLACK  # waited a bounded time for a slot, no longer
    assert await upstream_calls(sandbox_admin, SLOTS) == 1
    resp, _, body = await slow
    assert resp.status == 200, body
    # Refusing work locally says nothing about Vyte: the breaker stays closed.
    assert gateway.app[keys.VYTE].breaker.state == BreakerState.CLOSED
    assert sample("gateway_upstream_requests_total", endpoint=SLOTS, outcome="saturated") >= 1


def _days(n: int) -> list[str]:
    return [str(in_days(day)) for day in range(2, 2 + n)]

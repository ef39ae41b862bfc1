"""Logs and metrics: access and upstream lines, request ids end to end, redaction, /metrics."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
import structlog
from aioresponses import aioresponses
from prometheus_client.parser import text_string_to_metric_families

from service import keys
from service import logging as service_logging
from service.config import Settings
from service.logging import REDACTED, Redactor
from tests.conftest import AUTH, JOHN, OTHER_TOKEN, TOKEN, upstream_calls
from tests.dates import in_days, iso

FAKE_VYTE = "http://vyte.test"
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
QUERY = (
    f"/v1/availability?participants={JOHN}&duration=60&from={FIRST_DAY}&to={SECOND_DAY}"
    "&timezone=Europe/Paris"
)
VYTE_KEY = "vyte-live-key-3f9a7c51d2"
HOOK_TOKEN = "hook-path-token-77aa19"
WEBHOOK_KEY = b"0123456789abcdef-webhook-signing-key"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(WEBHOOK_KEY).decode()
WRONG_AUTH = {"Authorization": "Bearer unknown-bearer-token-123"}


class Captured:
    """Log output of the service, configured as in production (JSON, redaction)."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    def start(self, settings: Settings) -> None:
        service_logging.configure("info", "json", settings.secret_values(), stream=self.stream)

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self, **match: Any) -> list[dict[str, Any]]:
        parsed = [json.loads(line) for line in self.text.splitlines() if line.strip()]
        return [p for p in parsed if all(p.get(k) == v for k, v in match.items())]


@pytest.fixture
def logs() -> Iterator[Captured]:
    captured = Captured()
    yield captured
    service_logging.reset()


# -- log lines -------------------------------------------------------------------------------


async def test_one_access_line_per_request_and_upstream_lines_share_the_request_id(
    gateway_factory: Any, logs: Captured
) -> None:
    gateway = await gateway_factory()
    logs.start(gateway.app[keys.SETTINGS])

    resp = await gateway.get(QUERY, headers={**AUTH, "X-Request-ID": "obs-req-1"})
    assert resp.status == 200
    assert resp.headers["X-Request-ID"] == "obs-req-1"

    (access,) = logs.lines(event="request", request_id="obs-req-1")
    assert not logs.lines(logger="aiohttp.access")  # ours is the one access line
    assert access["method"] == "GET"
    assert access["route"] == "/v1/availability"
    assert access["status"] == 200
    assert access["caller"] == "alpha"
    assert isinstance(access["duration_ms"], float) and access["duration_ms"] >= 0
    assert access["level"] == "info" and access["timestamp"].endswith("Z")

    (upstream,) = logs.lines(event="upstream", request_id="obs-req-1")
    assert upstream["endpoint"] == "GET /v2/slots"
    assert upstream["status"] == 200
    assert upstream["outcome"] == "ok"
    assert upstream["attempt"] == 1
    assert upstream["duration_ms"] >= 0


async def test_retries_are_logged_per_attempt(
    gateway_factory: Any, sandbox_admin: aiohttp.ClientSession, logs: Captured
) -> None:
    gateway = await gateway_factory(slot_cache_ttl=0)
    logs.start(gateway.app[keys.SETTINGS])
    await sandbox_admin.post(
        "_sandbox/faults", json={"status": 503, "count": 1, "path": "/v2/slots"}
    )

    resp = await gateway.get(QUERY, headers={**AUTH, "X-Request-ID": "obs-retry"})
    assert resp.status == 200

    attempts = logs.lines(event="upstream", request_id="obs-retry")
    assert [(a["attempt"], a["status"], a["outcome"]) for a in attempts] == [
        (1, 503, "unavailable"),
        (2, 200, "ok"),
    ]
    (retry,) = logs.lines(event="upstream_retry", request_id="obs-retry")
    assert retry["reason"] == "unavailable" and retry["delay_ms"] >= 0


async def test_the_request_id_reaches_vyte(gateway_factory: Any, logs: Captured) -> None:
    gateway = await gateway_factory(vyte_base_url=FAKE_VYTE, slot_cache_ttl=0)
    logs.start(gateway.app[keys.SETTINGS])
    with aioresponses(passthrough=["http://127.0.0.1"]) as mocked:
        mocked.get(SLOTS_URL, payload=SLOTS_BODY)
        mocked.get(SLOTS_URL, payload=SLOTS_BODY)
        resp = await gateway.get(QUERY, headers={**AUTH, "X-Request-ID": "obs-req-2"})
        assert resp.status == 200
        # Not a valid id (too long): replaced, and the replacement is what Vyte sees.
        resp = await gateway.get(QUERY, headers={**AUTH, "X-Request-ID": "x" * 129})
        assert resp.status == 200
        generated = resp.headers["X-Request-ID"]
        sent = [
            call.kwargs["headers"]["X-Request-ID"]
            for (method, _), calls in mocked.requests.items()
            if method == "GET"
            for call in calls
        ]
    assert sent == ["obs-req-2", generated]
    assert generated != "x" * 129
    assert logs.lines(event="upstream", request_id=generated)


# -- redaction -------------------------------------------------------------------------------


async def test_secrets_never_reach_the_logs(gateway_factory: Any, logs: Captured) -> None:
    gateway = await gateway_factory(
        vyte_base_url=FAKE_VYTE,
        vyte_api_key=VYTE_KEY,
        vyte_webhook_token=HOOK_TOKEN,
        webhook_secrets=(WEBHOOK_KEY,),
    )
    settings = gateway.app[keys.SETTINGS]
    secrets = [TOKEN, OTHER_TOKEN, VYTE_KEY, HOOK_TOKEN, WEBHOOK_SECRET, WEBHOOK_SECRET[6:]]
    assert set(secrets) <= set(settings.secret_values())
    logs.start(settings)

    answer_texts = []
    with aioresponses(passthrough=["http://127.0.0.1"]) as mocked:
        # Our key is refused: the loud log line must not quote it.
        mocked.get(SLOTS_URL, status=401, body="bad key " + VYTE_KEY)
        resp = await gateway.get(QUERY, headers=AUTH)
        assert resp.status == 502
        answer_texts.append(await resp.text())
    # The inbound hook's secret is its path, which the access line records.
    resp = await gateway.post(f"/v1/vyte/webhooks/{HOOK_TOKEN}", json=[])
    assert resp.status == 204
    resp = await gateway.post("/v1/vyte/webhooks/a-guess-at-the-token", json=[])
    assert resp.status == 404
    answer_texts.append(await resp.text())
    resp = await gateway.get("/v1/bookings/5f43a0caf795d9206556122a", headers=WRONG_AUTH)
    assert resp.status == 401
    answer_texts.append(await resp.text())

    # Careless log calls, from our code and from a library's stdlib logger.
    log = structlog.get_logger("test")
    log.info(
        "careless",
        headers={"Authorization": f"Bearer {TOKEN}", "X-Key": VYTE_KEY},
        url=f"https://gw.example/v1/vyte/webhooks/{HOOK_TOKEN}?x=1",
        note=f"signing with {WEBHOOK_SECRET} and {OTHER_TOKEN}",
        secret=WEBHOOK_KEY,
        items=[VYTE_KEY, ("nested", TOKEN)],
    )
    try:
        raise RuntimeError(f"failed with key {VYTE_KEY}")
    except RuntimeError:
        log.exception("careless_exception")
    logging.getLogger("aiohttp.server").error(
        "Error handling request from %s: Authorization: Bearer %s", "127.0.0.1", TOKEN
    )

    text = logs.text
    for secret in secrets:
        assert secret not in text, secret
    assert "unknown-bearer-token-123" not in text
    assert REDACTED in text

    hook_lines = logs.lines(event="request", route="/v1/vyte/webhooks/{token}")
    assert [line["path"] for line in hook_lines] == [f"/v1/vyte/webhooks/{REDACTED}"] * 2
    assert [line["status"] for line in hook_lines] == [204, 404]
    (stdlib,) = logs.lines(logger="aiohttp.server")  # JSON like every other line
    assert stdlib["level"] == "error" and f"Bearer {REDACTED}" in stdlib["event"]
    (careless,) = logs.lines(event="careless")
    assert careless["headers"] == {"Authorization": REDACTED, "X-Key": REDACTED}
    assert careless["secret"] == REDACTED
    assert logs.lines(event="vyte_rejected_our_key")
    # Nor the answers or the metrics.
    answers = "".join(answer_texts)
    scraped = await (await gateway.get("/metrics")).text()
    for secret in secrets:
        assert secret not in answers and secret not in scraped, secret


def test_redactor_by_key_value_and_shape() -> None:
    redact = Redactor(["s3cret-value", "abc"])  # too short to redact safely: ignored
    event = redact(
        None,
        "info",
        {
            "event": "x s3cret-value y",
            "api_key": "anything",
            "caller": "alpha",
            "token_count": None,
            "nested": {"password": "p", "list": ["s3cret-value", 3, None, True]},
            "auth": "Bearer abc.def-ghi",
            "detail": "a valid bearer token is required",
            "path": "/v1/vyte/webhooks/tok_9?x=1",
            "secret_material": "whsec_QUJD",
            "plain": "whsec_QUJDREVG and abc",
        },
    )
    assert event == {
        "event": f"x {REDACTED} y",
        "api_key": REDACTED,
        "caller": "alpha",
        "token_count": None,
        "nested": {"password": REDACTED, "list": [REDACTED, 3, None, True]},
        "auth": f"Bearer {REDACTED}",
        "detail": "a valid bearer token is required",
        "path": f"/v1/vyte/webhooks/{REDACTED}?x=1",
        "secret_material": REDACTED,
        "plain": f"{REDACTED} and abc",
    }


def test_secret_values_cover_every_secret_setting() -> None:
    settings = Settings.from_environ(
        {
            "VYTE_API_KEY": "vyte-key-1234",
            "API_TOKENS": "crm:tok-crm-5678,billing:tok-bill-9012",
            "WEBHOOK_SECRET": f"{WEBHOOK_SECRET} whsec_b2xkLXNlY3JldA==",
            "VYTE_WEBHOOK_TOKEN": "hook-3456-abcdefghijkl",
            "STORE_URL": "redis://:redis-pass-7890@redis:6379/0",
        }
    )
    assert set(settings.secret_values()) == {
        "vyte-key-1234",
        "tok-crm-5678",
        "tok-bill-9012",
        WEBHOOK_SECRET,
        WEBHOOK_SECRET.removeprefix("whsec_"),
        "whsec_b2xkLXNlY3JldA==",
        "b2xkLXNlY3JldA==",
        "hook-3456-abcdefghijkl",
        "redis-pass-7890",
    }


# -- metrics ---------------------------------------------------------------------------------

FAMILIES = {
    "gateway_http_requests": "counter",
    "gateway_http_request_seconds": "histogram",
    "gateway_upstream_requests": "counter",
    "gateway_upstream_request_seconds": "histogram",
    "gateway_upstream_retries": "counter",
    "gateway_upstream_in_flight": "gauge",
    "gateway_circuit_state": "gauge",
    "gateway_circuit_transitions": "counter",
    "gateway_slot_cache": "counter",
    "gateway_availability_participants": "histogram",
    "gateway_outbox_pending": "gauge",
    "gateway_webhook_deliveries": "counter",
    "gateway_operations_pending": "gauge",
}


async def scrape(client: Any) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    resp = await client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(await resp.text()):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return samples


def value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def test_metric_families_are_present(gateway: Any) -> None:
    resp = await gateway.get("/metrics")
    text = await resp.text()
    families = {f.name: f.type for f in text_string_to_metric_families(text)}
    for name, kind in FAMILIES.items():
        assert families.get(name) == kind, name
    assert "/v1/bookings/5f43" not in text  # labels are templates, never raw paths


async def test_backlog_gauges_count_the_store(gateway: Any) -> None:
    from tests.unit.test_store_contract import make_delivery, make_operation

    store = gateway.app[keys.STORE]
    later = datetime.now(UTC) + timedelta(hours=1)  # due later: the workers leave them alone
    await store.enqueue_deliveries(
        [make_delivery(f"d{i}", booking_id=None, due=later) for i in range(3)]
    )
    await store.add_operation(make_operation("op1", due=later))
    samples = await scrape(gateway)
    assert value(samples, "gateway_outbox_pending") == 3
    assert value(samples, "gateway_operations_pending") == 1


async def test_metrics_move(gateway_factory: Any, sandbox_admin: aiohttp.ClientSession) -> None:
    gateway = await gateway_factory(slot_cache_ttl=30)
    host = gateway.app[keys.VYTE].host
    route = {"method": "GET", "route": "/v1/availability", "status": "200"}
    slots = {"endpoint": "GET /v2/slots", "outcome": "ok"}
    before = await scrape(gateway)

    # Two identical queries at once: one upstream call, one single-flight join.
    await sandbox_admin.post("_sandbox/faults", json={"latency": 0.3, "path": "/v2/slots"})
    first = await asyncio.gather(gateway.get(QUERY, headers=AUTH), gateway.get(QUERY, headers=AUTH))
    assert [r.status for r in first] == [200, 200]
    await sandbox_admin.delete("_sandbox/faults")
    # Again: a cache hit.
    assert (await gateway.get(QUERY, headers=AUTH)).status == 200
    # A retried call (another range, so no cache).
    await sandbox_admin.post(
        "_sandbox/faults", json={"status": 502, "count": 1, "path": "/v2/slots"}
    )
    other = QUERY.replace(f"to={SECOND_DAY}", f"to={in_days(4)}")
    assert (await gateway.get(other, headers=AUTH)).status == 200
    assert await upstream_calls(sandbox_admin, "GET /v2/slots") == 3

    after = await scrape(gateway)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("gateway_http_requests_total", **route) == 4
    assert delta("gateway_http_request_seconds_count", **route) == 4
    assert delta("gateway_http_request_seconds_sum", **route) > 0.3
    assert delta("gateway_upstream_requests_total", **slots) == 2
    assert (
        delta("gateway_upstream_requests_total", endpoint="GET /v2/slots", outcome="server_error")
        == 1
    )
    assert delta("gateway_upstream_request_seconds_count", **slots) == 2
    assert (
        delta("gateway_upstream_retries_total", endpoint="GET /v2/slots", reason="server_error")
        == 1
    )
    assert delta("gateway_slot_cache_total", result="miss") == 2
    assert delta("gateway_slot_cache_total", result="joined") == 1
    assert delta("gateway_slot_cache_total", result="hit") == 1
    assert delta("gateway_availability_participants_count") == 4
    assert delta("gateway_availability_participants_sum") == 4
    assert value(after, "gateway_circuit_state", host=host) == 0
    assert value(after, "gateway_upstream_in_flight") == 0
    # The scrape itself is counted, by route template.
    assert (
        value(after, "gateway_http_requests_total", method="GET", route="/metrics", status="200")
        >= 1
    )

"""The log pipeline's own pieces: the timestamp, the line writer, loggers bound by configure."""

from __future__ import annotations

import io
import json
import logging
import time
from datetime import UTC, datetime

import pytest
import structlog

from service import logging as service_logging
from service import tracing
from service.logging import Loggers, UtcTimestamp


def _structlog_stamp() -> str:
    event = structlog.processors.TimeStamper(fmt="iso", utc=True)(None, "info", {})
    return str(event["timestamp"])


@pytest.mark.parametrize("nanos", [0, 1_000, 999, 500_000_000, 999_999_999, 123_456_789])
def test_the_timestamp_is_written_as_structlogs(
    monkeypatch: pytest.MonkeyPatch, nanos: int
) -> None:
    now = int(datetime.now(UTC).timestamp()) * 1_000_000_000 + nanos
    monkeypatch.setattr(time, "time_ns", lambda: now)
    stamped = UtcTimestamp()(None, "info", {})["timestamp"]
    # What TimeStamper(fmt="iso", utc=True) writes for the same instant (no fraction at 0 us).
    instant = datetime.fromtimestamp(now // 1_000_000_000, UTC).replace(
        microsecond=(now % 1_000_000_000) // 1000
    )
    assert stamped == instant.isoformat().replace("+00:00", "Z")


def test_the_timestamp_follows_the_clock_across_seconds() -> None:
    stamp = UtcTimestamp()
    for _ in range(3):
        before = _structlog_stamp()
        ours = stamp(None, "info", {})["timestamp"]
        after = _structlog_stamp()
        assert len(ours) in (20, 27) and ours.endswith("Z")
        # Same format, so the texts sort as the instants do.
        assert before[:19] <= ours[:19] <= after[:19]
        time.sleep(0.6)


def test_configure_binds_the_access_logger_and_reset_unbinds_it() -> None:
    stream = io.StringIO()
    service_logging.configure("info", "json", stream=stream)
    try:
        bound = Loggers.access
        assert not isinstance(bound, structlog._config.BoundLoggerLazyProxy)
        bound.info("request", status=200)
        with structlog.testing.capture_logs() as captured:
            Loggers.access.info("request", status=201)
        (line,) = [json.loads(text) for text in stream.getvalue().splitlines()]
        assert line["event"] == "request" and line["status"] == 200 and line["level"] == "info"
        assert [e["status"] for e in captured] == [201]  # capture_logs still sees it
        service_logging.configure("warning", "json", stream=stream)
        Loggers.access.info("request", status=202)  # below the new level: not written
        assert '"status":202' not in stream.getvalue()
    finally:
        service_logging.reset()
    assert isinstance(Loggers.access, structlog._config.BoundLoggerLazyProxy)


def test_the_access_logger_writes_what_structlogs_own_logger_writes() -> None:
    stream = io.StringIO()
    service_logging.configure("info", "json", secrets=["s3cret-value"], stream=stream)
    try:
        structlog.contextvars.bind_contextvars(request_id="r-1")
        fields = {"path": "/x?k=s3cret-value", "status": 200, "caller": None}
        Loggers.access.info("request", **fields)
        structlog.get_logger("access").info("request", **fields)
    finally:
        structlog.contextvars.clear_contextvars()
        service_logging.reset()
    ours, theirs = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert list(ours) == list(theirs)  # the same keys, in the same order
    assert {k: v for k, v in ours.items() if k != "timestamp"} == {
        k: v for k, v in theirs.items() if k != "timestamp"
    }
    assert ours["path"] == "/x?k=[redacted]" and ours["request_id"] == "r-1"


def test_every_line_of_a_span_carries_its_ids_and_is_still_redacted() -> None:
    stream = io.StringIO()
    service_logging.configure("info", "json", secrets=["s3cret-value"], stream=stream)
    incoming = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    token, _ = tracing.enter_unrecorded_span(incoming, None)
    try:
        ids = tracing._hex_ids(tracing.current_span())
        Loggers.access.info("request", path="/x?k=s3cret-value")
        structlog.get_logger("vyte").warning("upstream", detail="Bearer s3cret-value")
        logging.getLogger("aiohttp.server").error("stdlib line with s3cret-value")
    finally:
        tracing.leave_unrecorded_span(token)
        service_logging.reset()
    lines = [json.loads(text) for text in stream.getvalue().splitlines()]
    assert len(lines) == 3 and ids is not None
    assert ids[0] == "4bf92f3577b34da6a3ce929d0e0e4736"
    for line in lines:
        assert (line["trace_id"], line["span_id"]) == ids
        assert "s3cret-value" not in json.dumps(line)

"""`serve` as a real process answers requests its HTTP parser rejects without echoing them."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from service.config import SANDBOX_TOKEN
from tests.e2e.process import Process, start

pytestmark = pytest.mark.e2e


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Process]:
    process = start(["serve", "--sandbox"], tmp_path)
    yield process
    process.stop()


def exchange(url: str, request: bytes) -> bytes:
    parts = urlsplit(url)
    assert parts.hostname == "127.0.0.1" and parts.port is not None
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        sock.sendall(request)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_a_bad_header_byte_gets_a_problem_without_the_token(served: Process) -> None:
    answer = exchange(
        served.url,
        b"GET /v1/bookings/5f43a0caf795d9206556122a HTTP/1.1\r\nHost: gw\r\n"
        b"Authorization: Bearer " + SANDBOX_TOKEN.encode() + b"\r\n"
        b"X-Trace: ab\x01cd\r\n\r\n",
    )
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b" 400 " in head.split(b"\r\n")[0]
    assert b"application/problem+json" in head
    assert SANDBOX_TOKEN.encode() not in answer and b"X-Trace" not in answer
    assert json.loads(body)["type"] == "/problems/http-error"
    assert served.stop() == 0
    lines = [json.loads(line) for line in served.output().splitlines() if line.startswith("{")]
    rejected = [line for line in lines if line.get("event") == "http_request_rejected"]
    assert [line["level"] for line in rejected] == ["warning"]
    assert "Traceback" not in served.output()
    assert not [line for line in lines if line.get("level") in ("error", "critical")]
    assert SANDBOX_TOKEN not in "\n".join(
        line for line in served.output().splitlines() if "http_request_rejected" in line
    )

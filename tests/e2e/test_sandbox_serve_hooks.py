"""`serve --sandbox` lets its own plain-http gateway register hooks in an https-only sandbox."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path

import pytest

from service.sandbox import SANDBOX_API_KEY
from tests.e2e.process import start

pytestmark = pytest.mark.e2e


def sandbox_url(output: str) -> str:
    for line in output.splitlines():
        if line.startswith("{") and json.loads(line).get("event") == "sandbox_started":
            return str(json.loads(line)["vyte_base_url"])
    raise AssertionError(f"no sandbox_started line in:\n{output}")


def test_serve_sandbox_registers_its_http_hooks(tmp_path: Path) -> None:
    served = start(["serve", "--sandbox"], tmp_path)
    try:
        request = urllib.request.Request(  # noqa: S310 - loopback only
            sandbox_url(served.output()) + "/v2/hooks", headers={"Authorization": SANDBOX_API_KEY}
        )
        deadline = time.monotonic() + 10
        while True:
            with urllib.request.urlopen(request, timeout=5) as resp:  # noqa: S310
                hooks = json.loads(resp.read())
            if len(hooks) >= 4 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert {h["action"] for h in hooks} >= {"event.confirmed", "event.cancelled"}
        assert {h["target_url"].split("/v1/")[0] for h in hooks} == {served.url}
    finally:
        assert served.stop() == 0

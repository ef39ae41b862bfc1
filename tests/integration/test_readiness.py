"""/readyz reports whether Vyte's hooks are registered, without ever failing for it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from tests.conftest import GatewayFactory

HOOK_TOKEN = "readiness-hook-token-0123"
# https: Vyte only takes https hook targets. Nothing is delivered there in these tests.
PUBLIC_URL = "https://127.0.0.1:1"


async def hooks_state(gw: Any, until: str, timeout: float = 10) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        resp = await gw.get("/readyz")
        assert resp.status == 200, await resp.text()
        body: dict[str, Any] = await resp.json()
        if body["checks"]["hooks"].startswith(until):
            return body
        assert time.monotonic() < deadline, body
        await asyncio.sleep(0.05)


async def test_hooks_are_reported_once_registered(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory(public_url=PUBLIC_URL, vyte_webhook_token=HOOK_TOKEN)
    body = await hooks_state(gw, "ok")
    assert body["status"] == "ok"


async def test_hooks_not_registered_is_reported_but_ready(
    gateway_factory: GatewayFactory,
) -> None:
    gw = await gateway_factory(
        vyte_base_url="http://127.0.0.1:9", public_url=PUBLIC_URL, vyte_webhook_token=HOOK_TOKEN
    )
    body = await hooks_state(gw, "not registered: ")
    assert body["status"] == "ok"
    assert body["checks"]["vyte"].startswith("unavailable")


async def test_without_public_url_hooks_are_off(gateway_factory: GatewayFactory) -> None:
    gw = await gateway_factory()
    body = await hooks_state(gw, "off")
    assert "PUBLIC_URL" in body["checks"]["hooks"]

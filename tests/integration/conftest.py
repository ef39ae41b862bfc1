"""Fixtures of the integration tests: an internal service that receives webhooks."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer


@attrs.define
class Receiver:
    """An internal service receiving webhooks; answers from `script` then 204."""

    url: str = ""
    received: list[tuple[dict[str, str], bytes]] = attrs.field(factory=list)
    script: list[int] = attrs.field(factory=list)
    attempts: int = 0

    def bodies(self, event_type: str | None = None) -> list[dict[str, Any]]:
        out = [json.loads(b) for _, b in self.received]
        return [b for b in out if event_type is None or b["type"] == event_type]

    async def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"only {len(self.received)} of {count} webhooks"
            await asyncio.sleep(0.02)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    state = Receiver()

    async def hook(request: web.Request) -> web.Response:
        state.attempts += 1
        body = await request.read()
        status = state.script.pop(0) if state.script else 204
        if status < 300:
            state.received.append((dict(request.headers), body))
        return web.Response(status=status)

    app = web.Application()
    app.router.add_post("/hook", hook)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.url = str(server.make_url("/hook"))
    yield state
    await server.close()

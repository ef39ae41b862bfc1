"""Shared fixtures: test settings, the sandbox as Vyte, the app built through its factory."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import aiohttp
import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from service.app import create_app
from service.config import Settings
from service.sandbox import SANDBOX_API_KEY, SandboxConfig, create_sandbox_app

TOKEN = "test-token-alpha"
OTHER_TOKEN = "test-token-beta"
# An ADMIN_CALLERS caller: sees and changes every booking, adopts Vyte's unknown events.
ADMIN_TOKEN = "test-token-admin"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
OTHER_AUTH = {"Authorization": f"Bearer {OTHER_TOKEN}"}
ADMIN_AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
JOHN = "5f3feb7821046c3bb9327e6a"


@pytest.fixture(autouse=True)
def _aioresponses_on_aiohttp_314() -> Iterator[None]:
    """aioresponses 0.7.9 builds ClientResponse without `stream_writer` (aiohttp >= 3.14)."""
    original = aiohttp.ClientResponse.__init__
    if "stream_writer" not in inspect.signature(original).parameters:
        yield
        return

    def init(self: aiohttp.ClientResponse, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("stream_writer", mock.Mock(output_size=0))
        original(self, *args, **kwargs)

    with mock.patch.object(aiohttp.ClientResponse, "__init__", init):
        yield


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    base = Settings(
        vyte_api_key=SANDBOX_API_KEY,
        api_tokens={TOKEN: "alpha", OTHER_TOKEN: "beta", ADMIN_TOKEN: "admin"},
        admin_callers=frozenset({"admin"}),
        store_url=f"sqlite:///{tmp_path}/store.sqlite3",
        vyte_timeout=2.0,
        request_budget=4.0,
        # The tests' receivers listen on 127.0.0.1; tests of the deny list set it themselves.
        callback_deny_networks=(),
    )
    return attrs.evolve(base, **overrides)


@pytest.fixture
async def sandbox() -> AsyncIterator[TestServer]:
    # Like `serve --sandbox`, the gateways under test offer plain-http loopback hook targets.
    server = TestServer(create_sandbox_app(SandboxConfig(allow_http_hooks=True)), host="127.0.0.1")
    await server.start_server()
    yield server
    await server.close()


@pytest.fixture
def sandbox_url(sandbox: TestServer) -> str:
    return str(sandbox.make_url("")).rstrip("/")


@pytest.fixture
def settings(tmp_path: Path, sandbox_url: str) -> Settings:
    return make_settings(tmp_path, vyte_base_url=sandbox_url)


GatewayFactory = Callable[..., Any]


@pytest.fixture
async def gateway_factory(tmp_path: Path, sandbox_url: str) -> AsyncIterator[Callable[..., Any]]:
    """Build gateway test clients with settings overrides (real app, real sandbox).

    Every answer they get is checked against openapi.yaml (tests/contract.py).
    """
    from tests.contract import contract_middleware, openapi

    openapi()  # load the spec once, before any test starts timing requests
    clients: list[TestClient[web.Request, web.Application]] = []

    async def build(**overrides: Any) -> TestClient[web.Request, web.Application]:
        overrides.setdefault("vyte_base_url", sandbox_url)
        app = create_app(make_settings(tmp_path, **overrides))
        client = TestClient(
            TestServer(app, host="127.0.0.1"), middlewares=(contract_middleware(app),)
        )
        await client.start_server()
        clients.append(client)
        return client

    yield build
    for client in clients:
        await client.close()


@pytest.fixture
async def gateway(gateway_factory: Callable[..., Any]) -> Any:
    return await gateway_factory()


@pytest.fixture
async def sandbox_admin(sandbox_url: str) -> AsyncIterator[aiohttp.ClientSession]:
    """A session on the sandbox itself (its /_sandbox admin endpoints and /v2 API)."""
    async with aiohttp.ClientSession(base_url=sandbox_url + "/") as session:
        yield session


async def upstream_calls(admin: aiohttp.ClientSession, route: str) -> int:
    """How many times the sandbox was asked `route` (e.g. "GET /v2/slots")."""
    async with admin.get("_sandbox/stats") as resp:
        stats = await resp.json()
    return int(stats["requests"].get(route, 0))

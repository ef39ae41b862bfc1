"""The Store contract suite again, on Redis over TLS (`rediss://` with an ACL user and
password in the URL, CA and client certificate as redis-py query options), and what a
TLS setup that is wrong looks like."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

import pytest

import tests.unit.test_store_contract as contract
from service.config import Settings
from service.store import open_store as open_store_url
from service.store.base import Store, StoreUnavailable
from service.store.redis import RedisStore
from tests.unit.test_store_contract import store  # noqa: F401 - the suite's fixture

if TYPE_CHECKING:
    from tests.tls_redis import TLSRedisServer

pytest_plugins = ("tests.redis_server", "tests.tls_redis")

# Every backend-neutral test of the contract, collected here a second time; the tests about
# SQLite files and schemas are not about Redis at all.
for _name, _test in vars(contract).items():
    if _name.startswith("test_") and not _name.startswith("test_sqlite_"):
        globals()[_name] = _test


@pytest.fixture
async def open_store(
    tls_redis_server: TLSRedisServer,
) -> AsyncIterator[Callable[[], Awaitable[Store]]]:
    """The contract's opener, on the TLS server (an empty database, kept across reopens)."""
    await tls_redis_server.flush()
    opened: list[Store] = []

    async def tracked() -> Store:
        # Through STORE_URL's own checks and open_store, as `serve` opens it.
        url = Settings.from_environ({"STORE_URL": tls_redis_server.url()}, sandbox=True).store_url
        opened.append(await open_store_url(url))
        return opened[-1]

    yield tracked
    for opened_store in opened:
        await opened_store.close()


async def test_the_tls_store_is_redis_over_tls(open_store: Callable[[], Awaitable[Store]]) -> None:
    opened = await open_store()
    assert isinstance(opened, RedisStore)
    assert opened._client is not None
    kwargs = opened._client.connection_pool.connection_kwargs
    assert kwargs["username"] == "gateway" and kwargs["ssl_cert_reqs"] == "required"


async def tls_closed() -> None:
    """Let a refused connection finish closing before the test's event loop ends.

    redis-py closes a connection whose AUTH failed, but the TLS close completes in later
    loop iterations; a loop closed at once leaves its socket to the garbage collector,
    whose warning would then fail whatever test runs at that moment.
    """
    await asyncio.sleep(0.2)


@pytest.mark.parametrize(
    ("options", "why"),
    [
        ({"ssl_ca_certs": ""}, "no CA: the server's certificate cannot be verified"),
        ({"ssl_certfile": "", "ssl_keyfile": ""}, "no client certificate: the server refuses"),
    ],
)
async def test_a_wrong_tls_setup_is_unavailable(
    tls_redis_server: TLSRedisServer, options: dict[str, str], why: str
) -> None:
    with pytest.raises(StoreUnavailable):
        await RedisStore.open(tls_redis_server.url(**options), connect_timeout=2)
    await tls_closed()


async def test_a_wrong_password_is_refused(tls_redis_server: TLSRedisServer) -> None:
    url = tls_redis_server.url().replace("tls%3Apass", "tls%3Awrong")
    assert url != tls_redis_server.url()
    with pytest.raises(StoreUnavailable):
        await RedisStore.open(url, connect_timeout=2)
    await tls_closed()


async def test_plain_redis_to_a_tls_port_fails(tls_redis_server: TLSRedisServer) -> None:
    with pytest.raises(StoreUnavailable):
        await RedisStore.open(f"redis://127.0.0.1:{tls_redis_server.port}/0", connect_timeout=2)
    await tls_closed()


async def test_the_connections_of_a_store_share_one_tls_context(
    open_store: Callable[[], Awaitable[Store]],
) -> None:
    opened = await open_store()
    assert isinstance(opened, RedisStore) and opened._client is not None
    # Several connections at once: each command below needs its own.
    await asyncio.gather(*(opened.ping() for _ in range(8)))
    pool = opened._client.connection_pool
    connections = [*pool._available_connections, *pool._in_use_connections]
    assert len(connections) > 1
    assert len({id(c.ssl_context) for c in connections}) == 1

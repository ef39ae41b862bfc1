"""What the Redis store wrote is there after Redis restarts, on plain Redis and over TLS.

Every write of the store is a Lua script, which Redis records in its append-only file as a
MULTI/EXEC block; a server that dropped those blocks when it loads the file again (as Redis 7
does when its default user has no permissions) would come back with only the schema key.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

import pytest

from service.store.base import StoreUnavailable
from service.store.redis import RedisStore
from tests.unit.test_store_contract import T0, make_booking, make_delivery

if TYPE_CHECKING:
    from tests.tls_redis import TLSRedisServer

pytest_plugins = ("tests.redis_server", "tests.tls_redis")


class StoreServer(Protocol):
    def url(self, db: int = 0) -> str: ...
    def stop(self) -> None: ...
    def start(self) -> None: ...


@pytest.fixture(params=["redis", "rediss"])
def store_server(request: pytest.FixtureRequest) -> StoreServer:
    """A Redis of this test's own that keeps an append-only file, plain or TLS-only."""
    fixture = "durable_redis_server" if request.param == "redis" else "durable_tls_redis_server"
    server: StoreServer = request.getfixturevalue(fixture)
    return server


async def test_a_booking_and_its_deliveries_survive_a_redis_restart(
    store_server: StoreServer,
) -> None:
    booking = make_booking()
    deliveries = [make_delivery("d1"), make_delivery("d2", url="https://b.internal/hooks")]
    store = await RedisStore.open(store_server.url())
    try:
        assert await store.put_booking(booking, expected_version=None, deliveries=deliveries)
    finally:
        await store.close()

    await asyncio.to_thread(store_server.stop)
    await asyncio.to_thread(store_server.start)

    store = await RedisStore.open(store_server.url())
    try:
        assert await store.get_booking(booking.id) == booking
        claimed = await store.claim_deliveries(T0, 10, "after-restart", lease=30)
        assert sorted(d.id for d in claimed) == ["d1", "d2"]
    finally:
        await store.close()


async def test_the_tls_servers_default_user_cannot_log_in(
    tls_redis_server: TLSRedisServer,
) -> None:
    """The TLS test server's default user keeps its permissions (for loading the file) but is
    off: a client without the user and password is refused."""
    url = tls_redis_server.url().replace("gateway:tls%3Apass%40word%2F42@", "")
    assert "@" not in url
    with pytest.raises(StoreUnavailable):
        await RedisStore.open(url, connect_timeout=2)
    # As in test_store_contract_tls: let the refused TLS connection finish closing.
    await asyncio.sleep(0.2)

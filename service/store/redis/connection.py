"""The Redis store's client: connecting, running scripts, and telling outages from mistakes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Final, Self, cast

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from service.store import codec
from service.store.base import StoreUnavailable
from service.store.redis.fields import flat_hash
from service.store.redis.migrate import migrate
from service.store.redis.scripts import Scripts
from service.store.tls import share_tls_context

URL_SCHEMES: Final = ("redis://", "rediss://")
DEFAULT_PREFIX: Final = "booking-gateway:"
# Seconds. A command that gets no answer within the socket timeout fails with
# StoreUnavailable; every script here is short, so a slow answer means a sick Redis.
DEFAULT_SOCKET_TIMEOUT: Final = 2.0
DEFAULT_CONNECT_TIMEOUT: Final = 1.0
# Seconds a pooled connection may sit idle before it is PINGed on its next use.
DEFAULT_HEALTH_CHECK_INTERVAL: Final = 30
# Connections per process; a request waits up to the socket timeout for a free one.
DEFAULT_MAX_CONNECTIONS: Final = 64
# Redis error replies that say the server cannot serve now, not that the request is
# wrong: the ones redis-py has classes for, then the codes of the others.
_TRANSIENT_ERRORS: Final = (
    redis_errors.OutOfMemoryError,  # maxmemory reached under noeviction
    redis_errors.ReadOnlyError,  # a replica, e.g. just after a failover
    redis_errors.TryAgainError,
    redis_errors.ClusterDownError,  # and MasterDownError
)
_TRANSIENT_REPLIES: Final = frozenset({"BUSY", "MISCONF", "NOREPLICAS"})


def _is_transient(err: redis_errors.ResponseError) -> bool:
    return isinstance(err, _TRANSIENT_ERRORS) or str(err).split(" ", 1)[0] in _TRANSIENT_REPLIES


class Connection:
    """One client (a connection pool) and the scripts registered with it."""

    def __init__(self, client: Redis, prefix: str = DEFAULT_PREFIX) -> None:
        self._client: Redis | None = client
        self.prefix = prefix
        self._scripts = Scripts(client)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        health_check_interval: int = DEFAULT_HEALTH_CHECK_INTERVAL,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> Self:
        """Connect to `redis://host:port/db` (or `rediss://…`: TLS, with redis-py's `ssl_*`
        options in the query) and check that Redis answers."""
        # The URL may carry a password: it never goes into a message.
        if not url.startswith(URL_SCHEMES) or url in URL_SCHEMES:
            raise ValueError("not a redis://host:port/db or rediss://host:port/db URL")
        pool = BlockingConnectionPool.from_url(
            url,
            decode_responses=True,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            health_check_interval=health_check_interval,
            # No retries: a command whose answer was lost may have run, and running
            # a script twice is not harmless (a replayed claim of an idempotency key
            # would find its own marker). A dead Redis fails the call at once; the
            # pool reconnects on the next one.
            retry=Retry(NoBackoff(), 0),
            max_connections=max_connections,
            timeout=socket_timeout,
            client_name="booking-gateway",
            # RESP2: with RESP3 redis-py turns on "maintenance notifications" (a Redis
            # Enterprise feature), which stops the pool from noticing connections the
            # server closed; after a Redis restart the first call would fail.
            protocol=2,
        )
        share_tls_context(pool)
        store = cls(Redis(connection_pool=pool), prefix)
        try:
            await store.ping()
            async with store._redis() as client:
                await migrate(client, prefix, store._scripts)
        except BaseException:
            await store.close()
            raise
        return store

    @asynccontextmanager
    async def _redis(self) -> AsyncIterator[Redis]:
        if self._client is None:
            raise StoreUnavailable("the store is closed")
        try:
            yield self._client
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as err:
            raise StoreUnavailable(f"redis: {err}") from err
        except redis_errors.ResponseError as err:
            if _is_transient(err):
                raise StoreUnavailable(f"redis: {err}") from err
            raise

    async def _run(self, script: AsyncScript, args: Sequence[str | int], key: str = "") -> Any:
        async with self._redis() as client:
            return await script(keys=[key] if key else [], args=[self.prefix, *args], client=client)

    async def _claim(
        self, queue: str, now: datetime, limit: int, owner: str, lease: float
    ) -> list[dict[str, str]]:
        """The fields of up to `limit` due records of `queue`, claimed by the one claim
        routine every queue shares (queue.lua)."""
        if limit <= 0:
            return []
        lease_until = str(codec.after_us(now, lease))
        claimed: list[list[str]] = await self._run(
            self._scripts.claim, [queue, str(codec.to_us(now)), str(limit), owner, lease_until]
        )
        return [flat_hash(flat) for flat in claimed]

    async def _fields(self, key: str) -> dict[str, str]:
        async with self._redis() as client:
            # decode_responses=True: every field and value comes back as str.
            return cast(dict[str, str], await client.hgetall(key))

    async def ping(self) -> None:
        async with self._redis() as client:
            await client.ping()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose(close_connection_pool=True)

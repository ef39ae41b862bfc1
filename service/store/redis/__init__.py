"""The shared Store backend (one Redis for every replica): Lua scripts, client, and the store."""

from service.store.redis.connection import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_HEALTH_CHECK_INTERVAL,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_PREFIX,
    DEFAULT_SOCKET_TIMEOUT,
    URL_SCHEMES,
)
from service.store.redis.store import RedisStore

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_HEALTH_CHECK_INTERVAL",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_PREFIX",
    "DEFAULT_SOCKET_TIMEOUT",
    "URL_SCHEMES",
    "RedisStore",
]

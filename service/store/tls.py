"""Redis over TLS (`rediss://`): the connections of one pool share one SSL context."""

from __future__ import annotations

from typing import Any

from redis.asyncio.connection import ConnectionPool, RedisSSLContext, SSLConnection


def share_tls_context(pool: ConnectionPool) -> None:
    """Make the TLS connections of `pool` share the first one's SSL context.

    redis-py reads the TLS options (`ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile`,
    `ssl_cert_reqs`, ...) from a `rediss://` URL itself, but builds a new SSL context for
    every connection; loading the system's CA store for each one blocks the event loop for
    tens of milliseconds, enough for a burst of new connections to miss the connect timeout.
    Every connection of a pool has the same options, so one context serves them all.
    A pool of plain connections is left as it is.
    """
    base = pool.connection_class
    if not issubclass(base, SSLConnection):
        return
    shared: list[RedisSSLContext] = []

    class SharedContextSSLConnection(base):  # type: ignore[valid-type,misc]
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            if shared:
                self.ssl_context = shared[0]
            else:
                shared.append(self.ssl_context)

    pool.connection_class = SharedContextSSLConnection

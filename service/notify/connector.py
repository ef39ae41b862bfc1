"""The HTTP session webhooks go out on: names resolved, and a denied address never connected to."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp
from aiohappyeyeballs import AddrInfoType, SocketFactoryType
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

from service.domain.networks import Network, address_denied


class AddressNotAllowed(OSError):
    """The receiver's address is in CALLBACK_DENY_NETWORKS: no connection was opened."""


class GuardedResolver(AbstractResolver):
    """Resolves like the default resolver, then drops every answer in a denied network.

    The connector connects only to what the resolver returns, so the address judged is the
    address used: a name that resolves to 127.0.0.1 (or is re-pointed there between checks)
    is never connected to.
    """

    def __init__(self, deny: tuple[Network, ...], inner: AbstractResolver | None = None) -> None:
        self._deny = deny
        self._inner = inner if inner is not None else DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        answers = await self._inner.resolve(host, port, family)
        allowed = [a for a in answers if not address_denied(a["host"], self._deny)]
        if not allowed:
            raise AddressNotAllowed("every address of the receiver is denied")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


def guarded_socket_factory(deny: tuple[Network, ...]) -> SocketFactoryType:
    """Sockets for the connector, refused for a denied address.

    The last line, below the resolver: aiohttp does not ask the resolver about IP literals,
    so this is what stops `http://[::1]/` stored before the rules existed.
    """

    def factory(addr_info: AddrInfoType) -> socket.socket:
        family, kind, proto, _, sockaddr = addr_info
        if address_denied(str(sockaddr[0]), deny):
            raise AddressNotAllowed("the receiver's address is denied")
        return socket.socket(family=family, type=kind, proto=proto)

    return factory


@asynccontextmanager
async def webhook_session(deny: tuple[Network, ...]) -> AsyncIterator[aiohttp.ClientSession]:
    """A session that cannot reach `deny`, ignores proxy settings and keeps no cookies (one
    receiver's cookies are no business of another on the same host)."""
    resolver = GuardedResolver(deny)
    connector = aiohttp.TCPConnector(
        resolver=resolver, socket_factory=guarded_socket_factory(deny), limit=0
    )
    try:
        async with aiohttp.ClientSession(
            connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar()
        ) as session:
            yield session
    finally:
        await resolver.close()


def address_refused(err: BaseException) -> bool:
    """Whether `err` (as aiohttp raised it) says the receiver's address is denied."""
    seen: BaseException | None = err
    for _ in range(8):  # aiohttp wraps it once or twice; never walk a cycle for ever
        if seen is None:
            break
        if isinstance(seen, AddressNotAllowed):
            return True
        os_error = getattr(seen, "os_error", None)
        seen = os_error if isinstance(os_error, BaseException) else seen.__cause__
    return False

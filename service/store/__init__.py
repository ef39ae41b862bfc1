"""Durable state: the Store protocol and its backends."""

from service.store.base import Store


async def open_store(url: str) -> Store:
    """The backend named by STORE_URL."""
    if url.startswith("sqlite:///"):
        from service.store.sqlite import SQLiteStore

        return await SQLiteStore.open(url)
    if url.startswith(("redis://", "rediss://")):
        from service.store.redis import RedisStore

        return await RedisStore.open(url)
    raise ValueError(f"unsupported store URL scheme: {url.split(':', 1)[0]}")

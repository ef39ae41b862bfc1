"""The Redis store's Lua scripts: package resources, read once, registered with each client.

Each script is `lua/library.lua` and `lua/queue.lua` (the functions every script may
call) followed by its own file; redis-py runs it by SHA and loads it when Redis lacks it.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

_SHARED = ("library.lua", "queue.lua")


@cache
def source(name: str) -> str:
    """The full text of script `name` (`lua/<name>.lua` after the shared functions)."""
    folder = resources.files(__package__).joinpath("lua")
    parts = [*_SHARED, f"{name}.lua"]
    return "\n".join(folder.joinpath(part).read_text(encoding="utf-8") for part in parts)


class Scripts:
    """Every script, registered with one client."""

    def __init__(self, client: Redis) -> None:
        def register(name: str) -> AsyncScript:
            return client.register_script(source(name))

        self.acquire_hold = register("acquire_hold")
        self.release_hold = register("release_hold")
        self.put_booking = register("put_booking")
        self.active_bookings = register("active_bookings")
        self.begin_idempotent = register("begin_idempotent")
        self.finish_idempotent = register("finish_idempotent")
        self.abandon_idempotent = register("abandon_idempotent")
        self.insert = register("insert")
        self.update = register("update")
        self.update_announced = register("update_announced")
        self.claim = register("claim")
        self.list = register("list")
        self.purge = register("purge")
        self.add_subscription = register("add_subscription")
        self.list_subscriptions = register("list_subscriptions")
        self.delete_subscription = register("delete_subscription")
        self.list_bookings = register("list_bookings")
        self.claim_resync = register("claim_resync")
        self.add_unresolved = register("add_unresolved")
        self.finish_unresolved = register("finish_unresolved")
        self.reindex_booking = register("reindex_booking")
        self.reindex_subscription = register("reindex_subscription")

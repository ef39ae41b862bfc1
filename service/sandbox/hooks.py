"""Vyte webhooks: subscriptions and their delivery to `target_url` in background tasks.

Vyte documents neither signatures nor retries, so a delivery is one unsigned POST; a failure
is logged and recorded, never retried.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import attrs

from .wire import JSON, BadRequest, new_object_id, timestamp

log = logging.getLogger(__name__)

ACTIONS = frozenset(
    {
        "event.created",
        "event.confirmed",
        "event.updated",
        "event.cancelled",
        "event.voted",
        "event.new_invitee",
        "user.joined",
        "vyteme.updated",
    }
)

_KEPT_DELIVERIES = 1000


@attrs.define
class Hook:
    id: str
    organization: str
    action: str
    target_url: str
    created_at: datetime
    updated_at: datetime
    version: int = 0

    def to_json(self) -> JSON:
        return {
            "_id": self.id,
            "__v": self.version,
            "organization": self.organization,
            "scope": "organization",
            "action": self.action,
            "target_url": self.target_url,
            "createdAt": timestamp(self.created_at),
            "updatedAt": timestamp(self.updated_at),
        }


def hook_fields(body: object, *, allow_http: bool) -> tuple[str, str]:
    """`(action, target_url)` from a POST or PUT /v2/hooks body.

    Vyte's reference: the target "must be a https url"; `allow_http` also lets plain http in.
    """
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    action, target_url = body.get("action"), body.get("target_url")
    if action not in ACTIONS:
        raise BadRequest(f"action must be one of {sorted(ACTIONS)}")
    if not isinstance(target_url, str):
        raise BadRequest("target_url is required")
    url = urlsplit(target_url)
    schemes = ("http", "https") if allow_http else ("https",)
    if url.scheme not in schemes or not url.hostname:
        raise BadRequest("target_url must be a https url")
    return str(action), target_url


def new_hook(body: object, organization: str, at: datetime, *, allow_http: bool) -> Hook:
    action, target_url = hook_fields(body, allow_http=allow_http)
    return Hook(new_object_id(), organization, action, target_url, at, at)


@attrs.frozen
class Delivery:
    hook_id: str
    action: str
    target_url: str
    resource_id: str
    status: int | None
    error: str | None

    def to_json(self) -> JSON:
        return attrs.asdict(self)


class HookDispatcher:
    """Posts hook bodies in tasks of their own, so a slow receiver never delays an answer."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session
        self._tasks: set[asyncio.Task[None]] = set()
        self.deliveries: deque[Delivery] = deque(maxlen=_KEPT_DELIVERIES)

    @property
    def pending(self) -> int:
        return len(self._tasks)

    def fire(
        self, hooks: list[Hook], action: str, organization: str, resource: JSON, *, batch: bool
    ) -> None:
        """Deliver to each hook; `batch` sends the one-element array Vyte's prose describes."""
        body: dict[str, Any] = {
            "action": action,
            "organization": organization,
            "resource": resource,
        }
        payload: object = [body] if batch else body
        for hook in hooks:
            task = asyncio.create_task(self._deliver(hook, action, payload, resource["_id"]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _deliver(self, hook: Hook, action: str, payload: object, resource_id: str) -> None:
        status: int | None = None
        error: str | None = None
        try:
            async with self._session.post(hook.target_url, json=payload) as response:
                status = response.status
                await response.read()
            if status >= 300:
                error = f"receiver answered {status}"
        except (aiohttp.ClientError, TimeoutError) as err:
            error = f"{type(err).__name__}: {err}"
        if error is not None:
            log.warning("vyte sandbox hook %s to %s failed: %s", action, hook.target_url, error)
        self.deliveries.append(
            Delivery(hook.id, action, hook.target_url, resource_id, status, error)
        )

    async def drain(self) -> None:
        """Wait for every delivery under way."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def forget(self) -> None:
        """Drop deliveries under way and the record of past ones (on reset)."""
        for task in self._tasks:
            task.cancel()
        self.deliveries.clear()

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await self.drain()

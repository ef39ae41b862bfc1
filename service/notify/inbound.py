"""Vyte's webhooks, received: re-read the event from Vyte and apply its state.

Vyte does not sign its hooks, so a notification is only a hint; the state
applied is the one Vyte returns for the event, which makes replays and
out-of-order deliveries harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime

import structlog

from service import metrics
from service.backoff import exponential
from service.bookings import BookingService
from service.domain.booking import BookingStatus
from service.errors import Conflict
from service.store.base import Store
from service.vyte import errors as vyte_errors
from service.vyte.client import VyteClient
from service.vyte.mapping import (
    booking_from_event,
    parse_notifications,
    status_of,
    upstream_problem,
)
from service.vyte.models import Event, HookNotification

log = structlog.get_logger("vyte_hooks")

# Seconds between attempts to register the hooks: the first retry, and the longest wait.
HOOK_RETRY_BASE = 1.0
HOOK_RETRY_CAP = 300.0
ACTIONS = ("event.created", "event.confirmed", "event.cancelled", "event.updated")


class VyteHooks:
    """Applies Vyte's notifications to the gateway's bookings."""

    def __init__(self, vyte: VyteClient, store: Store, bookings: BookingService) -> None:
        self._vyte = vyte
        self._store = store
        self._bookings = bookings

    async def receive(self, body: object) -> None:
        """Apply the notifications of one hook request (Vyte's JSON, one or a list)."""
        notifications = parse_notifications(body)
        try:
            for notification in notifications:
                await self.handle(notification)
        except vyte_errors.VyteError as err:
            raise upstream_problem(err) from err

    async def handle(self, notification: HookNotification) -> str:
        """Apply one notification; returns what changed (for logs and tests)."""
        if notification.action not in ACTIONS:
            return "ignored"
        try:
            event = await self._vyte.get_event(notification.resource.id)
        except vyte_errors.VyteNotFound:
            return "unknown-event"
        return await self.apply(event)

    async def apply(self, event: Event) -> str:
        """Bring the booking up to `event`: its status, then its times (each change is a
        version and a webhook of its own)."""
        changes: list[str] = []
        for _ in range(10):
            current = await self._store.get_booking(event.id)
            if current is None:
                await self._bookings.adopt(event)
                return "adopted"
            now = datetime.now(UTC)
            seen = booking_from_event(event, now)
            status = status_of(event)
            if current.status == BookingStatus.CANCELLED:
                break  # cancelled is terminal
            if status != current.status and not (
                status == BookingStatus.REQUESTED and current.status == BookingStatus.CONFIRMED
            ):
                await self._bookings.apply_status(event.id, status)
                changes.append(status.value)
                continue  # the same read may have moved the times too
            if (seen.start, seen.end) != (current.start, current.end):
                moved = current.changed(now, start=seen.start, end=seen.end)
                if await self._bookings.save(moved, "booking.updated", current.version):
                    changes.append("updated")
                    break
                continue
            break
        else:
            raise Conflict("booking changing too fast")
        return "+".join(changes) or "unchanged"


async def register_hooks(vyte: VyteClient, target_url: str) -> int:
    """Make sure Vyte calls `target_url` for every action, without duplicates.

    Returns how many hooks were created.
    """
    have = {(h.action, h.target_url) for h in await vyte.list_hooks()}
    created = 0
    for action in ACTIONS:
        if (action, target_url) not in have:
            await vyte.create_hook(action, target_url)
            created += 1
    if created:
        # Replicas starting together may each have created the same hooks: keep the oldest
        # of each (every replica picks the same one), delete the others.
        kept: set[tuple[str, str]] = set()
        for hook in sorted(await vyte.list_hooks(), key=lambda h: h.id):
            if hook.target_url != target_url or hook.action not in ACTIONS:
                continue
            if (hook.action, hook.target_url) in kept:
                with contextlib.suppress(vyte_errors.VyteNotFound):
                    await vyte.delete_hook(hook.id)
            kept.add((hook.action, hook.target_url))
    return created


async def keep_registering(
    vyte: VyteClient, target_url: str, report: Callable[[str], None] = lambda _: None
) -> None:
    """Register our hooks, retrying (1 s, doubling, at most 5 min apart) until Vyte takes them;
    `report` hears each outcome ("ok", or why not) for readiness to show; each failure is
    logged and counted (gateway_vyte_hook_registration_failures)."""
    metrics.HOOKS_REGISTERED.set(0)
    attempt = 0
    while True:
        attempt += 1
        try:
            created = await register_hooks(vyte, target_url)
        except vyte_errors.VyteError as err:
            delay = exponential(attempt, HOOK_RETRY_BASE, HOOK_RETRY_CAP, jitter=0.0)
            metrics.HOOK_REGISTRATION_FAILURES.labels(err.outcome).inc()
            report(f"not registered: {err.outcome}")
            log.warning(
                "hook_registration_failed",
                error=str(err),
                outcome=err.outcome,
                attempt=attempt,
                retry_in=delay,
            )
            await asyncio.sleep(delay)
            continue
        metrics.HOOKS_REGISTERED.set(1)
        report("ok")
        log.info("hooks_registered", created=created, attempts=attempt)
        return

"""The resync: re-read active bookings from Vyte and apply what changed, as a hook would.

Vyte's hooks are unsigned, may be lost, and are not redelivered; some changes (the times of
a still-requested event) are never pushed at all. Every RESYNC_INTERVAL seconds each active
booking is read again and handed to the inbound hooks' own apply path, so a change found
here sends the same webhooks, once, as one Vyte reported.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import structlog

from service import metrics
from service.domain.booking import Booking
from service.notify.inbound import VyteHooks
from service.notify.loop import being_cancelled
from service.store.base import Store, StoreUnavailable
from service.vyte import errors as vyte_errors
from service.vyte.client import VyteClient

log = structlog.get_logger("resync")

# Bookings claimed at a time; each claim is read over one TICK, so one process reads at most
# BATCH per TICK: a backlog (1,000 due after a restart) is spread out, not a burst, and the
# reads keep that spacing in the intervals after (each booking is due an interval after its
# last claim).
BATCH = 100
# The tick is this share of the interval (at most MAX_TICK seconds): how often a process
# looks for due bookings, and the time it spreads each claim over.
TICK_SHARE = 1 / 20
MAX_TICK = 5.0
# At most this many reads at once, and at most an eighth of VYTE_CONCURRENCY: availability
# queries keep the rest.
MAX_PERMITS = 4


def resync_permits(vyte_concurrency: int) -> int:
    """How many resync reads may be under way at once in one process."""
    return max(1, min(MAX_PERMITS, vyte_concurrency // 8))


class Resync:
    """One process's share of the resync: claim what is due, read it paced and bounded."""

    def __init__(
        self,
        vyte: VyteClient,
        store: Store,
        hooks: VyteHooks,
        *,
        interval: float,
        owner: str,
        permits: int,
    ) -> None:
        if interval <= 0:
            raise ValueError("a resync interval must be positive")
        self._vyte = vyte
        self._store = store
        self._hooks = hooks
        self._interval = interval
        self._owner = owner
        self._permits = asyncio.Semaphore(permits)
        self._tick = min(interval * TICK_SHARE, MAX_TICK)

    async def run(self) -> None:
        while True:
            try:
                read = await self.run_once()
            except StoreUnavailable:
                being_cancelled()
                log.warning("store_unavailable", worker="resync")
                read = 0
            except Exception:
                being_cancelled()
                # The resync is what catches lost hooks: log, then carry on.
                log.exception("worker_error", worker="resync")
                read = 0
            if not read:
                await asyncio.sleep(self._tick)

    async def run_once(self) -> int:
        """Claim the bookings due (this process alone reads them this interval), read each
        from Vyte and apply it, spread over a tick; returns how many were claimed."""
        claimed = await self._store.claim_resync(
            datetime.now(UTC), BATCH, self._owner, self._interval
        )
        if not claimed:
            return 0
        gap = self._tick / len(claimed)
        async with asyncio.TaskGroup() as group:
            for i, booking in enumerate(claimed):
                if i:
                    await asyncio.sleep(gap)
                await self._permits.acquire()
                group.create_task(self._read(booking))
        return len(claimed)

    async def _read(self, booking: Booking) -> None:
        try:
            result = await self._apply(booking)
        except Exception as err:
            # Never fatal: the booking is due again next interval.
            result = "failed"
            level = log.info if isinstance(err, vyte_errors.CircuitOpen) else log.warning
            level("resync_read_failed", booking_id=booking.id, error=str(err) or repr(err))
        finally:
            self._permits.release()
        metrics.RESYNC_READS.labels(result).inc()

    async def _apply(self, booking: Booking) -> str:
        try:
            event = await self._vyte.get_event(booking.id)
        except vyte_errors.VyteNotFound:
            log.warning("resync_event_gone", booking_id=booking.id)
            return "gone"
        change = await self._hooks.apply(event)
        if change == "unchanged":
            return "unchanged"
        log.info("resync_applied", booking_id=booking.id, change=change)
        return "changed"

"""The polling loop shared by background workers: work while there is work, else wait."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import structlog

from service.store.base import Store, StoreUnavailable

log = structlog.get_logger("workers")


async def poll(
    run_once: Callable[[], Awaitable[int]], wake: asyncio.Event, idle: float, name: str
) -> None:
    """Call `run_once` until it reports no work, then sleep `idle` seconds or until woken."""
    while True:
        try:
            busy = await run_once()
        except StoreUnavailable:
            log.warning("store_unavailable", worker=name)
            busy = 0
        except Exception:
            # A worker that died would stop every delivery or operation after it: log, then
            # carry on after the idle wait.
            log.exception("worker_error", worker=name)
            busy = 0
        if busy:
            continue
        wake.clear()
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation
        # that arrives as the wait ends, and the worker would outlive its app.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(idle):
                await wake.wait()


async def purge(store: Store, retention: timedelta, interval: float) -> None:
    """Every `interval` seconds, forget finished deliveries and operations older than
    `retention`, so the store does not grow without end."""
    while True:
        try:
            removed = await store.purge_finished(datetime.now(UTC) - retention)
        except StoreUnavailable:
            log.warning("store_unavailable", worker="purge")
        except Exception:
            log.exception("purge_failed")
        else:
            if removed:
                log.info("purged", records=removed, retention_days=retention / timedelta(days=1))
        await asyncio.sleep(interval)

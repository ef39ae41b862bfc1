"""The webhook dispatcher: delivers outbox messages, signed, with retries, in order per
booking and receiver, to many receivers at once, and only where the egress rules allow."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from urllib.parse import urlsplit

import aiohttp
import attrs
import structlog
from yarl import URL

from service import metrics, tracing
from service.domain.signatures import signature_header
from service.notify.connector import address_refused
from service.notify.egress import EgressPolicy, Refusal
from service.notify.loop import poll
from service.store.base import Delivery, DeliveryStatus, Store, StoreUnavailable

log = structlog.get_logger("webhooks")

DELIVERY_TIMEOUT = 15.0
# Below the total, so a receiver that cannot be reached fails as a connection, like one that
# refuses: the two are not told apart (a port scanner would use the difference).
CONNECT_TIMEOUT = 5.0
#: attempts in flight per process, and of those to one receiver (scheme, host and port): a
#: hung receiver holds at most its share, never the others' room
MAX_IN_FLIGHT = 64
MAX_PER_RECEIVER = 16
_BATCH = 50
_IDLE_POLL = 0.5
# Seconds a delivery waits when its receiver has its share in flight (at least this, at most
# as long as that receiver's oldest attempt has been running).
_MIN_DEFER = 0.25

_REFUSED = {
    Refusal.ADDRESS: "address not allowed",
    Refusal.HOST: "host not allowed by CALLBACK_HOSTS",
    Refusal.UNUSABLE: "unusable URL",
}


def next_state(
    delivery: Delivery, now: datetime, error: str | None, schedule: Sequence[float]
) -> Delivery:
    """The delivery after one attempt: delivered, retried later, or failed for good."""
    attempts = delivery.attempts + 1
    if error is None:
        return attrs.evolve(
            delivery,
            status=DeliveryStatus.DELIVERED,
            attempts=attempts,
            last_error=None,
            updated_at=now,
        )
    if attempts > len(schedule):
        return attrs.evolve(
            delivery,
            status=DeliveryStatus.FAILED,
            attempts=attempts,
            last_error=error,
            updated_at=now,
        )
    return attrs.evolve(
        delivery,
        attempts=attempts,
        last_error=error,
        next_attempt_at=now + timedelta(seconds=schedule[attempts - 1]),
        updated_at=now,
    )


def _loggable(url: str) -> str:
    """`url` without what may carry a receiver's secret: user info, query and fragment."""
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparsable URL)"
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


class Dispatcher:
    """Claims due deliveries from the store and POSTs them to their receivers.

    Each attempt runs on its own, so a slow receiver holds up nobody else; the store hands out
    only the oldest pending message of a (receiver, booking), so each receiver still hears of
    one booking's changes in version order.
    """

    def __init__(
        self,
        store: Store,
        session: aiohttp.ClientSession,
        secrets: Sequence[bytes],
        schedule: Sequence[float],
        owner: str,
        egress: EgressPolicy,
        *,
        max_in_flight: int = MAX_IN_FLIGHT,
        per_receiver: int = MAX_PER_RECEIVER,
    ) -> None:
        self._store = store
        self._session = session
        self._secrets = tuple(secrets)
        self._schedule = tuple(schedule)
        self._owner = owner
        self._egress = egress
        self._max_in_flight = max_in_flight
        self._per_receiver = per_receiver
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        # receiver -> when each of its attempts in flight started (monotonic seconds)
        self._in_flight: dict[str, list[float]] = {}

    def wake(self) -> None:
        """New deliveries were enqueued: look now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        try:
            await poll(self.run_once, self._wake, _IDLE_POLL, "webhooks")
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def run_once(self) -> int:
        """Start what is due now, as far as there is room; returns how many were claimed.

        It does not wait for the attempts: the end of each wakes the loop again (the next
        message for its booking may be waiting on it).
        """
        # On Python 3.11, asyncio.wait_for drops a cancellation that arrives just as the
        # awaited future completes, which poll's wait for `wake` can meet (every finished
        # attempt sets it); a store driver may also report one as an outage. The task
        # still counts the cancellation, so stop here instead of running on through shutdown.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError
        return await self._start_due()

    async def _start_due(self) -> int:
        room = self._max_in_flight - len(self._tasks)
        if room <= 0:
            return 0
        now = datetime.now(UTC)
        batch = await self._store.claim_deliveries(
            now, min(room, _BATCH), self._owner, lease=DELIVERY_TIMEOUT * 2 + 5
        )
        for delivery in batch:
            receiver = _receiver(delivery.url)
            started = self._in_flight.setdefault(receiver, [])
            if len(started) >= self._per_receiver:
                await self._defer(delivery, now, started)
            else:
                self._start(delivery, receiver, started)
        return len(batch)

    def _start(self, delivery: Delivery, receiver: str, started: list[float]) -> None:
        began = time.monotonic()
        started.append(began)
        task = asyncio.create_task(self._deliver(delivery), name=f"webhook-{delivery.id}")
        self._tasks.add(task)
        task.add_done_callback(partial(self._finished, receiver, began))

    def _finished(self, receiver: str, began: float, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        started = self._in_flight.get(receiver, [])
        if began in started:
            started.remove(began)
        if not started:
            self._in_flight.pop(receiver, None)
        self._wake.set()

    async def _defer(self, delivery: Delivery, now: datetime, started: list[float]) -> None:
        """Put off a delivery whose receiver has its share in flight. Not an attempt: it
        spends nothing of the retry schedule, and the store keeps its booking's order."""
        running_for = time.monotonic() - min(started)
        wait = min(DELIVERY_TIMEOUT, max(_MIN_DEFER, running_for))
        await self._store.update_delivery(
            attrs.evolve(delivery, next_attempt_at=now + timedelta(seconds=wait))
        )

    async def _deliver(self, delivery: Delivery) -> None:
        try:
            error = await self._post(delivery)
            outcome = "delivered" if error is None else "error"
            updated = next_state(delivery, datetime.now(UTC), error, self._schedule)
            if updated.status == DeliveryStatus.FAILED:
                outcome = "failed"
                log.warning(
                    "webhook_failed",
                    delivery=delivery.id,
                    url=_loggable(delivery.url),
                    error=error,
                )
            metrics.DELIVERIES.labels(outcome).inc()
            await self._store.update_delivery(updated)
        except StoreUnavailable:
            # Its lease runs out and it is claimed again: nothing is lost.
            log.warning("store_unavailable", worker="webhooks", delivery=delivery.id)
        except Exception:
            log.exception("webhook_error", delivery=delivery.id)

    @tracing.delivery_attempt
    async def _post(self, delivery: Delivery) -> str | None:
        # The rules as they are now, not as they were when the URL was accepted.
        refusal = self._egress.refusal(delivery.url)
        if refusal is not None:
            return _REFUSED[refusal]
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "webhook-id": delivery.id,
            "webhook-timestamp": str(timestamp),
        }
        if delivery.request_id is not None:
            headers["X-Request-ID"] = delivery.request_id
        tracing.inject(headers)
        if self._secrets:
            headers["webhook-signature"] = signature_header(
                self._secrets, delivery.id, timestamp, delivery.payload
            )
        started = time.monotonic()
        try:
            async with self._session.post(
                delivery.url,
                data=delivery.payload.encode(),
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT, sock_connect=CONNECT_TIMEOUT),
                allow_redirects=False,
            ) as resp:
                status = resp.status
        except aiohttp.ConnectionTimeoutError:
            return "connection failed"
        except TimeoutError:
            return f"no answer within {DELIVERY_TIMEOUT:.0f}s"
        except (aiohttp.ClientError, OSError) as err:
            # One coarse answer whatever the cause (refused, reset, unreachable, TLS): the
            # receiver's owner can look; a caller probing the network learns nothing.
            return "address not allowed" if address_refused(err) else "connection failed"
        except ValueError:
            # e.g. a host name the resolver cannot encode (UnicodeError): this receiver's
            # problem, not the dispatcher's.
            return "unusable URL"
        finally:
            log.info(
                "webhook_attempt",
                delivery=delivery.id,
                event_type=delivery.event_type,
                attempt=delivery.attempts + 1,
                duration_ms=round((time.monotonic() - started) * 1000, 1),
            )
        if 200 <= status < 300:
            return None
        return f"receiver answered {status}"


def _receiver(url: str) -> str:
    """Who answers `url`: its scheme, host and port."""
    try:
        return str(URL(url).origin())
    except (ValueError, TypeError):
        return url

"""The webhook dispatcher: delivers outbox messages, signed, with retries, in order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

import aiohttp
import attrs
import structlog

from service import metrics, tracing
from service.domain.signatures import signature_header
from service.notify.loop import poll
from service.store.base import Delivery, DeliveryStatus, Store

log = structlog.get_logger("webhooks")

DELIVERY_TIMEOUT = 15.0
_BATCH = 50
_IDLE_POLL = 0.5


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
    """Claims due deliveries from the store and POSTs them to their receivers."""

    def __init__(
        self,
        store: Store,
        session: aiohttp.ClientSession,
        secrets: Sequence[bytes],
        schedule: Sequence[float],
        owner: str,
    ) -> None:
        self._store = store
        self._session = session
        self._secrets = tuple(secrets)
        self._schedule = tuple(schedule)
        self._owner = owner
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """New deliveries were enqueued: look now rather than at the next poll."""
        self._wake.set()

    async def run(self) -> None:
        await poll(self.run_once, self._wake, _IDLE_POLL, "webhooks")

    async def run_once(self) -> int:
        """Deliver what is due now; returns how many deliveries were attempted."""
        now = datetime.now(UTC)
        batch = await self._store.claim_deliveries(
            now, _BATCH, self._owner, lease=DELIVERY_TIMEOUT * 2 + 5
        )
        if batch:
            await asyncio.gather(*(self._deliver(d) for d in batch))
        return len(batch)

    async def _deliver(self, delivery: Delivery) -> None:
        error = await self._post(delivery)
        outcome = "delivered" if error is None else "error"
        updated = next_state(delivery, datetime.now(UTC), error, self._schedule)
        if updated.status == DeliveryStatus.FAILED:
            outcome = "failed"
            log.warning(
                "webhook_failed", delivery=delivery.id, url=_loggable(delivery.url), error=error
            )
        metrics.DELIVERIES.labels(outcome).inc()
        await self._store.update_delivery(updated)

    @tracing.delivery_attempt
    async def _post(self, delivery: Delivery) -> str | None:
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
                timeout=aiohttp.ClientTimeout(total=DELIVERY_TIMEOUT),
                allow_redirects=False,
            ) as resp:
                status = resp.status
        except TimeoutError:
            return f"no answer within {DELIVERY_TIMEOUT:.0f}s"
        except (aiohttp.ClientError, OSError) as err:
            return f"connection failed: {type(err).__name__}"
        except ValueError as err:
            # e.g. a host name the resolver cannot encode (UnicodeError): this receiver's
            # problem, not the dispatcher's.
            return f"unusable URL: {type(err).__name__}"
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

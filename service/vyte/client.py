"""VyteClient: every upstream call, over one long-lived ClientSession.

Each call runs inside the current request budget (see `policy.budget`), behind
the per-host circuit breaker and the process-wide concurrency limit. GETs are
retried on transient failures; POST/PUT/DELETE never are.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from datetime import date
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar

import aiohttp
import attrs
import cattrs
import structlog

from service import metrics
from service.vyte import errors
from service.vyte.models import (
    Event,
    EventChanges,
    Hook,
    NewEvent,
    Slots,
    SlotsByDay,
    converter,
)
from service.vyte.policy import CircuitBreaker, backoff, remaining

T = TypeVar("T")
log = structlog.get_logger("vyte")

_MAX_ATTEMPTS = 3
_RETRY_BASE = 0.1
_RETRY_CAP = 2.0
# How long a request may wait for a free upstream slot before the process is "saturated".
_SATURATION_WAIT = 1.0


@attrs.frozen
class VyteOptions:
    base_url: str
    api_key: str
    timeout: float = 10.0
    concurrency: int = 64
    budget: float = 15.0
    breaker_threshold: int = 5
    breaker_cooldown: float = 10.0


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class VyteClient:
    """Typed access to Vyte API v2."""

    def __init__(self, session: aiohttp.ClientSession, options: VyteOptions) -> None:
        self._session = session
        self._options = options
        self._limit = asyncio.Semaphore(options.concurrency)
        self.breaker = CircuitBreaker(options.breaker_threshold, options.breaker_cooldown)
        #: monotonic time of the last answer Vyte gave (any status); None before the first
        self.last_answer_at: float | None = None

    # -- endpoints ------------------------------------------------------------------------
    async def auth_test(self) -> dict[str, Any]:
        data = await self._call("GET", "/v2/auth/test", endpoint="GET /v2/auth/test")
        return self._structure(data, dict[str, Any])

    async def slots(
        self,
        *,
        duration: int,
        first: date,
        last: date,
        timezone: str,
        users: str | None = None,
        emails: str | None = None,
    ) -> Slots:
        params = self._slot_params(duration, first, last, timezone, users, emails)
        data = await self._call("GET", "/v2/slots", params=params, endpoint="GET /v2/slots")
        return self._structure(data, Slots)

    async def slots_by_day(
        self,
        *,
        duration: int,
        first: date,
        last: date,
        timezone: str,
        users: str | None = None,
        emails: str | None = None,
    ) -> SlotsByDay:
        params = self._slot_params(duration, first, last, timezone, users, emails)
        data = await self._call(
            "GET", "/v2/slots/days", params=params, endpoint="GET /v2/slots/days"
        )
        return self._structure(data, SlotsByDay)

    async def create_event(self, event: NewEvent) -> Event:
        data = await self._call(
            "POST", "/v2/events", body=converter.unstructure(event), endpoint="POST /v2/events"
        )
        return self._structure(data, Event)

    async def get_event(self, event_id: str) -> Event:
        data = await self._call(
            "GET", f"/v2/events/{_segment(event_id)}", endpoint="GET /v2/events/{id}"
        )
        return self._structure(data, Event)

    async def list_events(self, **filters: str | int) -> list[Event]:
        params = {k: str(v) for k, v in filters.items()}
        data = await self._call("GET", "/v2/events", params=params, endpoint="GET /v2/events")
        return self._structure(data, list[Event])

    async def update_event(self, event_id: str, changes: EventChanges) -> Event:
        data = await self._call(
            "PUT",
            f"/v2/events/{_segment(event_id)}",
            body=converter.unstructure(changes),
            endpoint="PUT /v2/events/{id}",
        )
        return self._structure(data, Event)

    async def confirm_event(self, event_id: str) -> Event:
        data = await self._call(
            "POST",
            f"/v2/events/{_segment(event_id)}/confirm",
            endpoint="POST /v2/events/{id}/confirm",
        )
        return self._structure(data, Event)

    async def cancel_event(self, event_id: str) -> None:
        # Vyte answers a plain "OK", not JSON.
        await self._call(
            "POST",
            f"/v2/events/{_segment(event_id)}/cancel",
            endpoint="POST /v2/events/{id}/cancel",
            expect_json=False,
        )

    async def create_hook(self, action: str, target_url: str) -> Hook:
        data = await self._call(
            "POST",
            "/v2/hooks",
            body={"action": action, "target_url": target_url},
            endpoint="POST /v2/hooks",
        )
        return self._structure(data, Hook)

    async def list_hooks(self) -> list[Hook]:
        data = await self._call("GET", "/v2/hooks", endpoint="GET /v2/hooks")
        return self._structure(data, list[Hook])

    async def delete_hook(self, hook_id: str) -> None:
        await self._call(
            "DELETE",
            f"/v2/hooks/{_segment(hook_id)}",
            endpoint="DELETE /v2/hooks/{id}",
            expect_json=False,
        )

    # -- machinery ------------------------------------------------------------------------
    @staticmethod
    def _slot_params(
        duration: int, first: date, last: date, timezone: str, users: str | None, emails: str | None
    ) -> dict[str, str]:
        if (users is None) == (emails is None):
            raise ValueError("give exactly one of users or emails")
        params = {
            "duration": str(duration),
            "from": first.isoformat(),
            "to": last.isoformat(),
            "timezone": timezone,
        }
        if users is not None:
            params["users"] = users
        else:
            assert emails is not None
            params["emails"] = emails
        return params

    @staticmethod
    def _structure(data: Any, cls: type[T]) -> T:
        try:
            return converter.structure(data, cls)
        except (cattrs.BaseValidationError, ValueError, TypeError, KeyError, AttributeError):
            raise errors.VyteBadResponse(f"unexpected answer shape for {cls!r}") from None

    async def _call(
        self,
        method: str,
        path: str,
        *,
        endpoint: str,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        expect_json: bool = True,
    ) -> Any:
        retryable = method == "GET"
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(
                    method, path, endpoint, params, body, expect_json, attempt
                )
            except errors.VyteError as err:
                if not (retryable and err.transient) or attempt >= _MAX_ATTEMPTS:
                    raise
                if isinstance(err, errors.CircuitOpen | errors.Saturated):
                    raise
                delay = backoff(attempt, _RETRY_BASE, _RETRY_CAP)
                if isinstance(err, errors.VyteUnavailable) and err.retry_after is not None:
                    delay = err.retry_after
                # Retry only if waiting still leaves time for an attempt.
                if delay >= remaining(self._options.budget):
                    raise
                metrics.UPSTREAM_RETRIES.labels(endpoint).inc()
                await asyncio.sleep(delay)

    async def _attempt(
        self,
        method: str,
        path: str,
        endpoint: str,
        params: Mapping[str, str] | None,
        body: Any,
        expect_json: bool,
        attempt: int,
    ) -> Any:
        left = remaining(self._options.budget)
        if left <= 0:
            raise errors.VyteTimeout("request budget exhausted")
        self.breaker.before_call()
        metrics.BREAKER_STATE.set(_STATE_VALUE[self.breaker.state])
        try:
            await asyncio.wait_for(self._limit.acquire(), min(left, _SATURATION_WAIT))
        except TimeoutError:
            self.breaker.on_neutral()
            raise errors.Saturated(
                "too many upstream requests in flight", retry_after=1.0
            ) from None
        started = time.monotonic()
        outcome = "error"
        status: int | None = None
        try:
            result, status = await self._send(method, path, params, body, expect_json, left)
            outcome = "ok"
            self.breaker.on_success()
            return result
        except errors.VyteError as err:
            outcome = type(err).__name__
            status = err.status
            if err.transient:
                self.breaker.on_failure()
            else:
                self.breaker.on_success()
            if isinstance(err, errors.VyteAuthError):
                log.error("vyte_rejected_our_key", endpoint=endpoint, status=err.status)
            raise
        except BaseException:
            self.breaker.on_neutral()
            raise
        finally:
            self._limit.release()
            elapsed = time.monotonic() - started
            metrics.UPSTREAM_REQUESTS.labels(endpoint, outcome).inc()
            metrics.UPSTREAM_LATENCY.labels(endpoint).observe(elapsed)
            metrics.BREAKER_STATE.set(_STATE_VALUE[self.breaker.state])
            log.info(
                "upstream",
                endpoint=endpoint,
                status=status,
                outcome=outcome,
                attempt=attempt,
                duration_ms=round(elapsed * 1000, 1),
            )

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: Any,
        expect_json: bool,
        left: float,
    ) -> tuple[Any, int]:
        headers = {"Authorization": self._options.api_key, "Accept": "application/json"}
        request_id = structlog.contextvars.get_contextvars().get("request_id")
        if isinstance(request_id, str):
            headers["X-Request-ID"] = request_id
        timeout = aiohttp.ClientTimeout(total=min(self._options.timeout, left))
        url = self._options.base_url + path
        try:
            async with self._session.request(
                method, url, params=params, json=body, headers=headers, timeout=timeout
            ) as resp:
                text = await resp.text()
                self.last_answer_at = time.monotonic()
                _raise_for_status(resp.status, resp.headers.get("Retry-After"))
        except TimeoutError:
            raise errors.VyteTimeout(
                f"no answer within {min(self._options.timeout, left):.1f}s"
            ) from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as err:
            raise errors.VyteConnectionError(f"connection failed: {type(err).__name__}") from None
        except UnicodeDecodeError:
            raise errors.VyteBadResponse("answer is not text", status=200) from None
        if not expect_json:
            return text, resp.status
        try:
            return json.loads(text), resp.status
        except ValueError:
            raise errors.VyteBadResponse("answer is not JSON", status=resp.status) from None


_STATE_VALUE = {"closed": 0, "half_open": 1, "open": 2}


def _raise_for_status(status: int, retry_after: str | None) -> None:
    if 200 <= status < 300:
        return
    if status == 400:
        raise errors.VyteRejected("Vyte rejected the request", status=status)
    if status == 404:
        raise errors.VyteNotFound("Vyte does not know it", status=status)
    if status in (401, 403):
        raise errors.VyteAuthError("Vyte refused our API key", status=status)
    if status in (429, 503):
        raise errors.VyteUnavailable(
            "Vyte is unavailable", status=status, retry_after=retry_after_seconds(retry_after)
        )
    if status == 504:
        raise errors.VyteTimeout("Vyte timed out", status=status)
    raise errors.VyteServerError(f"Vyte answered {status}", status=status)


def _segment(value: str) -> str:
    """One safe path segment: ids are hex, but never let a value change the path."""
    if not value or not all(c.isalnum() or c in "-_" for c in value):
        raise errors.VyteNotFound("not a valid Vyte id", status=404)
    return value

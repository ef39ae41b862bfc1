"""VyteClient: every upstream call, over one long-lived ClientSession.

Each call runs inside the current request budget (see `service.budget`; a call
made outside any request gets one of its own), behind the per-host circuit breaker
and the process-wide concurrency limit. GETs are retried with full-jitter backoff on
connection errors, 429, 502, 503 and 504, honouring Retry-After while it fits in the
budget; POST/PUT/DELETE are never retried.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import weakref
from collections.abc import Mapping
from datetime import date
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

import aiohttp
import attrs
import cattrs
import orjson
import structlog

from service import metrics, tracing
from service.backoff import exponential
from service.budget import budget, remaining
from service.config import Settings
from service.logging import Loggers, current_request_id
from service.vyte import errors
from service.vyte.models import (
    Event,
    EventChanges,
    Hook,
    NewEvent,
    Slots,
    converter,
    slot_pairs,
)
from service.vyte.policy import STATE_VALUE, CircuitBreaker

T = TypeVar("T")
log = structlog.get_logger("vyte")

#: upstream answers worth another try of an idempotent call
RETRY_STATUSES = frozenset({429, 502, 503, 504})
#: the longest Retry-After believed at all (protects against bogus HTTP dates)
RETRY_AFTER_LIMIT = 3600.0
# A retry is pointless unless this much of the budget is left for its attempt.
_MIN_ATTEMPT = 0.25


# What Settings leaves unset is Settings' own default: one place for every default.
_DEFAULTS = Settings()


@attrs.frozen
class VyteOptions:
    base_url: str
    api_key: str = attrs.field(repr=False)
    #: seconds per attempt
    timeout: float = _DEFAULTS.vyte_timeout
    #: upstream calls in flight per process
    concurrency: int = _DEFAULTS.vyte_concurrency
    #: seconds a call may take, retries and waits included, when no tighter budget is set
    budget: float = _DEFAULTS.request_budget
    breaker_threshold: int = _DEFAULTS.breaker_threshold
    breaker_cooldown: float = _DEFAULTS.breaker_cooldown
    #: attempts of an idempotent call (the first one included)
    attempts: int = 3
    #: full-jitter exponential backoff between attempts: first delay up to `backoff_base`
    backoff_base: float = 0.1
    backoff_cap: float = 2.0
    #: the longest Retry-After waited for inside a request; a longer one is passed on at once
    max_retry_after: float = 5.0
    #: how long a call may wait for one of the `concurrency` slots before it is refused
    queue_wait: float = 1.0

    @classmethod
    def from_settings(cls, settings: Settings) -> VyteOptions:
        """The options the service's settings give (VYTE_*, REQUEST_BUDGET, BREAKER_*)."""
        if settings.vyte_api_key is None:
            raise ValueError("no Vyte API key (Settings require one unless --sandbox)")
        return cls(
            base_url=settings.vyte_base_url,
            api_key=settings.vyte_api_key,
            timeout=settings.vyte_timeout,
            concurrency=settings.vyte_concurrency,
            budget=settings.request_budget,
            breaker_threshold=settings.breaker_threshold,
            breaker_cooldown=settings.breaker_cooldown,
        )


def retry_after_seconds(value: str | None) -> float | None:
    """Parse a Retry-After header: delta-seconds or an HTTP date (capped at an hour)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds) and seconds != math.inf:
        return None
    return min(max(0.0, seconds), RETRY_AFTER_LIMIT)


def is_retryable(err: errors.VyteError) -> bool:
    """Whether an idempotent call may be tried again after `err` (DESIGN §4)."""
    if isinstance(err, errors.CircuitOpen | errors.Saturated):
        return False
    return isinstance(err, errors.VyteConnectionError) or err.status in RETRY_STATUSES


class VyteClient:
    """Typed access to Vyte API v2."""

    def __init__(self, session: aiohttp.ClientSession, options: VyteOptions) -> None:
        self._session = session
        self._options = options
        self._limit = asyncio.Semaphore(options.concurrency)
        base = urlsplit(options.base_url)
        self.host = base.netloc
        # What each call's span names: the server and the path under the base URL's.
        self._server = (base.hostname or "", base.port or (443 if base.scheme == "https" else 80))
        self._path_prefix = base.path.rstrip("/")
        #: one breaker per client, and one client per upstream host
        self.breaker = CircuitBreaker(
            options.breaker_threshold, options.breaker_cooldown, listener=self._breaker_changed
        )
        #: monotonic time of the last answer Vyte gave (any status); None before the first
        self.last_answer_at: float | None = None
        breaker = weakref.ref(self.breaker)

        def circuit_state() -> float:
            current = breaker()
            return STATE_VALUE[current.state] if current is not None else 0

        metrics.BREAKER_STATE.labels(self.host).set_function(circuit_state)

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
        data = await self._slots_answer(duration, first, last, timezone, users, emails)
        return self._structure(data, Slots)

    async def slot_windows(
        self,
        *,
        duration: int,
        first: date,
        last: date,
        timezone: str,
        users: str | None = None,
        emails: str | None = None,
    ) -> list[tuple[str, str]]:
        """`slots`, as the (start, end) texts of its windows only: what availability reads,
        without a typed object per window and instant."""
        data = await self._slots_answer(duration, first, last, timezone, users, emails)
        try:
            return slot_pairs(data)
        except _SHAPE_ERRORS:
            raise _bad_shape(Slots) from None

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
        # Vyte's reference answers {"hooks": [...]}, its webhook guide a bare array.
        if isinstance(data, dict) and isinstance(data.get("hooks"), list):
            data = data["hooks"]
        return self._structure(data, list[Hook])

    async def delete_hook(self, hook_id: str) -> None:
        await self._call(
            "DELETE",
            f"/v2/hooks/{_segment(hook_id)}",
            endpoint="DELETE /v2/hooks/{id}",
            expect_json=False,
        )

    # -- machinery ------------------------------------------------------------------------
    async def _slots_answer(
        self,
        duration: int,
        first: date,
        last: date,
        timezone: str,
        users: str | None,
        emails: str | None,
    ) -> Any:
        """The /v2/slots answer as JSON: what `slots` and `slot_windows` read."""
        params = self._slot_params(duration, first, last, timezone, users, emails)
        return await self._call("GET", "/v2/slots", params=params, endpoint="GET /v2/slots")

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
        except _SHAPE_ERRORS:
            raise _bad_shape(cls) from None

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
        """One logical call: attempts within the request budget, retried only for GETs."""
        with budget(self._options.budget):
            attempt = 0
            while True:
                attempt += 1
                try:
                    return await self._attempt(
                        method, path, endpoint, params, body, expect_json, attempt
                    )
                except errors.VyteError as err:
                    delay = self._retry_delay(method, err, attempt)
                    if delay is None:
                        raise
                    metrics.UPSTREAM_RETRIES.labels(endpoint, err.outcome).inc()
                    log.info(
                        "upstream_retry",
                        endpoint=endpoint,
                        attempt=attempt,
                        reason=err.outcome,
                        status=err.status,
                        delay_ms=round(delay * 1000, 1),
                    )
                    await asyncio.sleep(delay)

    def _retry_delay(self, method: str, err: errors.VyteError, attempt: int) -> float | None:
        """How long to wait before trying again, or None to give up now and pass `err` on."""
        options = self._options
        if method != "GET" or attempt >= options.attempts or not is_retryable(err):
            return None
        delay = exponential(attempt, options.backoff_base, options.backoff_cap)
        if isinstance(err, errors.VyteUnavailable) and err.retry_after is not None:
            if err.retry_after > options.max_retry_after:
                return None
            delay = max(delay, err.retry_after)
        # Vyte's Retry-After is honoured only while the wait still leaves time for an
        # attempt; otherwise the caller hears it (as a 503 with Retry-After) at once.
        if delay + min(_MIN_ATTEMPT, options.timeout) >= remaining(options.budget):
            return None
        return delay

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
        options = self._options
        try:
            if remaining(options.budget) <= 0:
                raise errors.VyteTimeout("request budget exhausted")
            probe = self.breaker.before_call()
        except errors.VyteError as err:
            self._record(endpoint, err.outcome, None, attempt, None)
            raise
        try:
            await self._acquire(remaining(options.budget))
            left = remaining(options.budget)
            if left <= 0:
                self._limit.release()
                raise errors.VyteTimeout("request budget exhausted")
        except errors.VyteError as err:
            self.breaker.on_neutral(probe)
            self._record(endpoint, err.outcome, None, attempt, None)
            raise
        except BaseException:
            self.breaker.on_neutral(probe)
            raise
        metrics.UPSTREAM_IN_FLIGHT.inc()
        started = time.monotonic()
        outcome = "cancelled"
        status: int | None = None
        try:
            result, status = await self._send(
                method, path, params, body, expect_json, min(options.timeout, left)
            )
        except errors.VyteError as err:
            outcome = err.outcome
            status = err.status
            if err.transient:
                self.breaker.on_failure(probe)
            else:
                # A refusal still proves Vyte is up and answering.
                self.breaker.on_success()
            if isinstance(err, errors.VyteAuthError):
                log.error("vyte_rejected_our_key", endpoint=endpoint, status=err.status)
            raise
        except BaseException:
            self.breaker.on_neutral(probe)
            raise
        else:
            outcome = "ok"
            self.breaker.on_success()
            return result
        finally:
            self._limit.release()
            metrics.UPSTREAM_IN_FLIGHT.dec()
            self._record(endpoint, outcome, status, attempt, time.monotonic() - started)

    async def _acquire(self, left: float) -> None:
        """Take one of the `concurrency` slots, waiting a bounded time (never a long queue)."""
        if not self._limit.locked():
            # A free slot is taken at once: no timer to arm and cancel (every call of a fan-out
            # below VYTE_CONCURRENCY comes this way).
            await self._limit.acquire()
            return
        try:
            async with asyncio.timeout(max(0.0, min(self._options.queue_wait, left))):
                await self._limit.acquire()
        except TimeoutError:
            raise errors.Saturated(
                "too many upstream requests in flight", retry_after=1.0
            ) from None

    @staticmethod
    def _record(
        endpoint: str, outcome: str, status: int | None, attempt: int, elapsed: float | None
    ) -> None:
        """Metrics and the log line of one attempt (`elapsed` None: it was never sent)."""
        metrics.observe_upstream(endpoint, outcome, elapsed)
        Loggers.upstream.info(
            "upstream",
            endpoint=endpoint,
            status=status,
            outcome=outcome,
            attempt=attempt,
            duration_ms=round(elapsed * 1000, 1) if elapsed is not None else 0.0,
            sent=elapsed is not None,
        )

    def _breaker_changed(self, old: str, new: str) -> None:
        metrics.BREAKER_TRANSITIONS.labels(self.host, new).inc()
        if new == "open":
            log.warning(
                "circuit_opened",
                host=self.host,
                previous=old,
                failures=self.breaker.failures,
                cooldown=self.breaker.cooldown,
            )
        else:
            log.info("circuit_" + new, host=self.host, previous=old)

    async def _send(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: Any,
        expect_json: bool,
        time_limit: float,
    ) -> tuple[Any, int]:
        headers = {"Authorization": self._options.api_key, "Accept": "application/json"}
        request_id = current_request_id()
        if request_id is not None:
            headers["X-Request-ID"] = request_id
        url = self._options.base_url + path
        host, port = self._server
        span = tracing.upstream_started(method, self._path_prefix + path, host, port, headers)
        status: int | None = None
        try:
            try:
                async with self._session.request(
                    method,
                    url,
                    params=params,
                    json=body,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=time_limit),
                ) as resp:
                    status = resp.status
                    # JSON is read from the bytes (orjson checks the UTF-8 itself); only
                    # answers that are not JSON are decoded as text.
                    raw = await resp.read() if expect_json else None
                    text = await resp.text() if raw is None else ""
                    self.last_answer_at = time.monotonic()
            except BaseException as err:
                tracing.upstream_ended(span, status, err)
                raise
        except TimeoutError:
            raise errors.VyteTimeout(f"no answer within {time_limit:.1f}s") from None
        except (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, OSError) as err:
            raise errors.VyteConnectionError(f"connection failed: {type(err).__name__}") from None
        except aiohttp.ClientError as err:
            raise errors.VyteBadResponse(f"unreadable answer: {type(err).__name__}") from None
        except UnicodeDecodeError:
            raise errors.VyteBadResponse("answer is not text", status=200) from None
        tracing.upstream_ended(span, status, None)
        _raise_for_status(status, resp.headers.get("Retry-After"))
        if raw is None:
            return text, resp.status
        return _json(raw, resp.status), resp.status


# What reading an answer of the wrong shape raises, by cattrs or by hand.
_SHAPE_ERRORS = (cattrs.BaseValidationError, ValueError, TypeError, KeyError, AttributeError)


def _bad_shape(cls: type) -> errors.VyteBadResponse:
    return errors.VyteBadResponse(f"unexpected answer shape for {cls!r}")


def _json(raw: bytes, status: int) -> Any:
    """The answer's JSON: orjson, or the standard library for what orjson refuses (numbers
    beyond 64 bits, NaN), as before."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(raw)
    except ValueError:
        raise errors.VyteBadResponse("answer is not JSON", status=status) from None


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

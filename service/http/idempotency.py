"""Idempotency-Key: replay a POST's first answer, refuse reuse and overlap (DESIGN §3.2)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web

from service.errors import (
    FieldError,
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    ServiceError,
    ValidationFailed,
)
from service.http.problems import problem_for
from service.store.base import (
    IDEMPOTENCY_TTL,
    IdempotencyState,
    Store,
    StoredResponse,
    StoreUnavailable,
)

log = structlog.get_logger("idempotency")

HEADER = "Idempotency-Key"
TTL = IDEMPOTENCY_TTL
_KEPT_HEADERS = ("Content-Type", "Location", "Preference-Applied")


def fingerprint(method: str, path: str, body: bytes) -> str:
    """Identity of a request: method, path and body (JSON compared by value)."""
    try:
        canonical = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, UnicodeDecodeError):
        canonical = body
    digest = hashlib.sha256()
    for part in (method.encode(), path.encode(), canonical):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def kept_for_replay(response: web.Response) -> StoredResponse:
    """What a replay of `response` answers: its status, body and the headers that matter."""
    assert response.text is not None
    kept = tuple((h, response.headers[h]) for h in _KEPT_HEADERS if h in response.headers)
    return StoredResponse(status=response.status, body=response.text, headers=kept)


def idempotency_key(request: web.Request) -> str | None:
    key = request.headers.get(HEADER)
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not key.isascii() or not key.isprintable():
        raise ValidationFailed([FieldError(HEADER, "must be 1 to 255 printable ASCII characters")])
    return key


async def run_idempotent(
    request: web.Request,
    store: Store,
    caller: str,
    lease: float,
    handle: Callable[[], Awaitable[web.Response]],
    unknown_lease: float | None = None,
) -> web.Response:
    """Run `handle` once per (caller, Idempotency-Key); replay its answer after.

    With `unknown_lease`, a failure whose outcome is unknown (a create a reconciler now
    decides) keeps the key in flight that long, so the reconciler's answer is what a
    retry replays, instead of freeing the key for a second try."""
    key = idempotency_key(request)
    if key is None:
        return await handle()
    body = await request.read()
    mark = fingerprint(request.method, request.path, body)
    existing = await store.begin_idempotent(caller, key, mark, lease)
    if existing is not None:
        if existing.fingerprint != mark:
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used with another request",
            )
        if existing.state == IdempotencyState.IN_FLIGHT or existing.response is None:
            raise IdempotencyKeyInFlight(
                "the first request with this Idempotency-Key is still running",
                headers={"Retry-After": "1"},
            )
        stored = existing.response
        response = web.Response(status=stored.status, text=stored.body)
        for name, value in stored.headers:
            response.headers[name] = value
        response.headers["Idempotent-Replayed"] = "true"
        return response
    try:
        response = await handle()
    except IdempotencyKeyInFlight:
        # An earlier request under this key is still undecided: nothing to keep for ours.
        await store.abandon_idempotent(caller, key)
        raise
    except ServiceError as err:
        response = problem_for(err, request.path)
        if err.outcome_unknown and unknown_lease is not None:
            # Claimed again for the long lease (the old claim goes first: a claim is
            # only ever taken, never extended).
            await store.abandon_idempotent(caller, key)
            await store.begin_idempotent(caller, key, mark, unknown_lease)
            return response
    except BaseException:
        await store.abandon_idempotent(caller, key)
        raise
    if response.status >= 500:
        await store.abandon_idempotent(caller, key)
        return response
    stored = kept_for_replay(response)
    try:
        await store.finish_idempotent(caller, key, stored, TTL)
    except StoreUnavailable:
        # The work is done and recorded; only its replay could not be kept. Answering 503
        # would hide a success: a retry meets the in-flight marker until its lease ends.
        log.warning("idempotency_record_lost", key=key, status=response.status)
    return response

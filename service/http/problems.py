"""RFC 9457 problem+json responses: every error a caller sees is shaped here."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import structlog
from aiohttp import web

from service.errors import FieldError, ServiceError, ServiceUnavailable
from service.http.resources import participant_states
from service.store.base import StoreUnavailable

log = structlog.get_logger("http")
STORE_RETRY_AFTER = 1  # seconds a caller waits after a 503 for an unreachable store

PROBLEM_TYPE = "application/problem+json"

_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Payload too large",
    415: "Unsupported media type",
    500: "Internal error",
    503: "Service unavailable",
}
_SLUGS = {
    404: "not-found",
    405: "method-not-allowed",
    413: "payload-too-large",
    415: "unsupported-media-type",
    500: "internal-error",
}


def problem_response(
    status: int,
    *,
    slug: str,
    title: str,
    detail: str,
    errors: Sequence[FieldError] = (),
    headers: Mapping[str, str] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> web.Response:
    body: dict[str, Any] = {
        "type": f"/problems/{slug}",
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors:
        body["errors"] = [{"field": e.field, "message": e.message} for e in errors]
    if extra:
        body.update(extra)
    return web.Response(
        status=status,
        text=json.dumps(body),
        content_type=PROBLEM_TYPE,
        headers=dict(headers or {}),
    )


def from_service_error(err: ServiceError) -> web.Response:
    extra = {"participants": participant_states(err.participants)} if err.participants else None
    return problem_response(
        err.status,
        slug=err.slug,
        title=err.title,
        detail=err.detail,
        errors=err.errors,
        headers=err.headers,
        extra=extra,
    )


def problem_for(exc: Exception, path: str) -> web.Response:
    """The one place an error becomes the problem a caller sees."""
    if isinstance(exc, ServiceError):
        return from_service_error(exc)
    if isinstance(exc, StoreUnavailable):
        # Nothing was accepted: the caller may retry once the store is back.
        log.warning("store_unavailable", path=path, error=str(exc))
        return from_service_error(
            ServiceUnavailable(
                "the booking store is unavailable; retry shortly",
                headers={"Retry-After": str(STORE_RETRY_AFTER)},
            )
        )
    if isinstance(exc, web.HTTPException):
        return from_http_exception(exc)
    log.error("unhandled_error", path=path, exc_info=exc)
    return problem_response(
        500, slug="internal-error", title="Internal error", detail="unexpected error"
    )


def from_http_exception(exc: web.HTTPException) -> web.Response:
    """aiohttp's own errors (404 route, 405, 413 ...) as problems, keeping e.g. Allow."""
    status = exc.status
    keep = {k: v for k, v in exc.headers.items() if k.lower() in ("allow", "retry-after")}
    return problem_response(
        status,
        slug=_SLUGS.get(status, "http-error"),
        title=_TITLES.get(status, exc.reason),
        detail=exc.reason if status != 404 else "no such resource",
        headers=keep,
    )

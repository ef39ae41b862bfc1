"""Request context (id, access log, metrics), problems, bearer auth and the request budget."""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Mapping

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from service import metrics
from service.budget import budget
from service.errors import Unauthorized
from service.http.parsing import UnreadableBody
from service.http.problems import problem_for

log = structlog.get_logger("http")
access_log = structlog.get_logger("access")

REQUEST_ID = "X-Request-ID"
CALLER: web.RequestKey[str] = web.RequestKey("caller", str)


def _valid_request_id(value: str | None) -> bool:
    return value is not None and 1 <= len(value) <= 128 and value.isascii() and value.isprintable()


def _route_of(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bind the request id into every log line, echo it, and write the access line."""
    incoming = request.headers.get(REQUEST_ID)
    # A generated id is 128 random bits in hex, as opaque as a uuid4 and cheaper to make.
    request_id = (
        incoming if incoming is not None and _valid_request_id(incoming) else os.urandom(16).hex()
    )
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers[REQUEST_ID] = request_id
        return response
    finally:
        elapsed = time.perf_counter() - started
        route = _route_of(request)
        metrics.observe_request(request.method, route, status, elapsed)
        access_log.info(
            "request",
            method=request.method,
            route=route,
            path=request.path,
            status=status,
            duration_ms=round(elapsed * 1000, 2),
            caller=request.get(CALLER),
        )


@web.middleware
async def problems(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every error becomes application/problem+json; no traceback ever leaves."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return problem_for(exc, request.path)
    except UnreadableBody as exc:
        response = problem_for(exc, request.path)
        # Where this body ends on the wire is unknown: the connection cannot carry more.
        response.force_close()
        return response
    except Exception as exc:
        return problem_for(exc, request.path)


def request_budget(seconds: float) -> Middleware:
    """Give each request `seconds` for its upstream work, retries and waits included."""

    @web.middleware
    async def limit(request: web.Request, handler: Handler) -> web.StreamResponse:
        with budget(seconds):
            return await handler(request)

    return limit


def bearer_auth(tokens: Mapping[str, str], exempt_prefixes: tuple[str, ...]) -> Middleware:
    """Require `Authorization: Bearer <token>` on /v1 routes; bind the caller's name."""
    candidates = [(t.encode(), caller) for t, caller in tokens.items()]

    @web.middleware
    async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if not path.startswith("/v1/") or path.startswith(exempt_prefixes):
            return await handler(request)
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        caller = None
        if scheme.lower() == "bearer" and given:
            presented = given.strip().encode()
            # Compare against every token so timing says nothing about which one matched.
            for token, name in candidates:
                if hmac.compare_digest(presented, token):
                    caller = name
        if caller is None:
            raise Unauthorized(
                "a valid bearer token is required",
                headers={"WWW-Authenticate": 'Bearer realm="booking-gateway"'},
            )
        request[CALLER] = caller
        structlog.contextvars.bind_contextvars(caller=caller)
        return await handler(request)

    return auth

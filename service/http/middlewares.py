"""The request edge, in one middleware: request id, access log, metrics, problems, bearer
auth and the request budget."""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable, Mapping

import structlog
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from service import metrics
from service.budget import budget
from service.errors import Unauthorized
from service.http import tracing as http_tracing
from service.http.parsing import UnreadableBody
from service.http.problems import problem_for
from service.logging import Loggers

log = structlog.get_logger("http")

REQUEST_ID = "X-Request-ID"
CALLER: web.RequestKey[str] = web.RequestKey("caller", str)

_clear_contextvars = structlog.contextvars.clear_contextvars
_bind_contextvars = structlog.contextvars.bind_contextvars


def _valid_request_id(value: str | None) -> bool:
    return value is not None and 1 <= len(value) <= 128 and value.isascii() and value.isprintable()


def _route_of(request: web.Request) -> str:
    route = request.match_info.route
    resource = route.resource
    return resource.canonical if resource is not None else "unmatched"


def bearer_caller(
    tokens: Mapping[str, str], exempt_prefixes: tuple[str, ...]
) -> Callable[[web.Request], str | None]:
    """The caller a request's `Authorization: Bearer <token>` names: None for what needs no
    token (outside /v1, `exempt_prefixes`), Unauthorized when a /v1 route has no valid one."""
    candidates = [(t.encode(), caller) for t, caller in tokens.items()]

    def caller_of(request: web.Request) -> str | None:
        path = request.path
        if not path.startswith("/v1/") or path.startswith(exempt_prefixes):
            return None
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
        return caller

    return caller_of


def request_edge(
    tokens: Mapping[str, str], exempt_prefixes: tuple[str, ...], budget_seconds: float
) -> Middleware:
    """One layer for what every request goes through (aiohttp wraps each middleware in calls
    of its own, which /livez paid for five times), in this order, outermost first:

    - the request's span (service/http/tracing.py), current until the access line is written;
    - the request id: the caller's X-Request-ID when valid, else a new one; bound into every
      log line of the request and echoed on the answer;
    - the access line and the request metrics, once the answer is known;
    - problems: every error becomes application/problem+json, no traceback ever leaves;
    - bearer auth on /v1 routes, binding the caller's name;
    - the budget: `budget_seconds` for the request's upstream work, retries and waits included.
    """
    caller_of = bearer_caller(tokens, exempt_prefixes)

    @web.middleware
    async def edge(request: web.Request, handler: Handler) -> web.StreamResponse:
        _clear_contextvars()  # first: the span is one context variable less to look through
        span, new_trace = http_tracing.enter(request)
        request_id = request.headers.get(REQUEST_ID)
        if request_id is None or not _valid_request_id(request_id):
            # 128 random bits in hex: the id of the trace the request starts (one draw for
            # both), else drawn for it.
            request_id = new_trace or os.urandom(16).hex()
        _bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        try:
            try:
                caller = caller_of(request)
                if caller is not None:
                    request[CALLER] = caller
                    _bind_contextvars(caller=caller)
                with budget(budget_seconds):
                    response = await handler(request)
            except web.HTTPException as exc:
                if exc.status < 400:
                    status = exc.status
                    raise
                response = problem_for(exc, request.path)
            except UnreadableBody as exc:
                response = problem_for(exc, request.path)
                # Where this body ends on the wire is unknown: the connection cannot carry more.
                response.force_close()
            except Exception as exc:
                response = problem_for(exc, request.path)
            status = response.status
            response.headers[REQUEST_ID] = request_id
            return response
        finally:
            try:
                elapsed = time.perf_counter() - started
                route = _route_of(request)
                metrics.observe_request(request.method, route, status, elapsed)
                Loggers.access.info(
                    "request",
                    method=request.method,
                    route=route,
                    path=request.path,
                    status=status,
                    duration_ms=round(elapsed * 1000, 2),
                    caller=request.get(CALLER),
                )
            finally:
                http_tracing.leave(span, status, request_id)

    return edge

"""The request span middleware: the web edge of service/tracing.py."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from service import tracing


def _route(request: web.Request) -> str | None:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else None


@web.middleware
async def request_span(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Each request in its own span. Put it first, so every log line of the request (the
    access line too) carries the span's trace and span ids."""
    span = tracing.start_server_span(
        request.method,
        _route(request),
        request.path,
        request.headers.get(tracing.TRACEPARENT),
        request.headers.get(tracing.TRACESTATE),
    )
    status = 500
    response: web.StreamResponse | None = None
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        span.end(status, response.headers.get("X-Request-ID") if response is not None else None)

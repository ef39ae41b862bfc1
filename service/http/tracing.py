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
    headers = request.headers
    traceparent = headers.get(tracing.TRACEPARENT)
    tracestate = headers.get(tracing.TRACESTATE) if traceparent else None
    path = request.path
    if not tracing.records_requests(path):
        # Without an exporter (and on probes): only the ids, nothing to record at the end.
        token = tracing.enter_unrecorded_span(traceparent, tracestate)
        try:
            return await handler(request)
        finally:
            tracing.leave_unrecorded_span(token)
    span = tracing.start_server_span(request.method, _route(request), path, traceparent, tracestate)
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

"""The request's span: the web edge of service/tracing.py, entered and left by the request
edge (service/http/middlewares.py) around everything else a request does, its access line
included, so every log line of the request carries the span's trace and span ids."""

from __future__ import annotations

from contextvars import Token

from aiohttp import web
from opentelemetry.trace import Span

from service import tracing

#: what `enter` gives and `leave` takes back
Entered = tracing.ServerSpan | Token[Span | None]


def _route(request: web.Request) -> str | None:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else None


def enter(request: web.Request) -> Entered:
    """Make the request's span current: it continues the caller's `traceparent`, else starts
    a trace. Without an exporter (and on probes) it is only ids, with nothing to record."""
    headers = request.headers
    traceparent = headers.get(tracing.TRACEPARENT)
    tracestate = headers.get(tracing.TRACESTATE) if traceparent else None
    path = request.path
    if not tracing.records_requests(path):
        return tracing.enter_unrecorded_span(traceparent, tracestate)
    return tracing.start_server_span(request.method, _route(request), path, traceparent, tracestate)


def leave(entered: Entered, status: int, request_id: str | None) -> None:
    """End what `enter` made current, recording the answer's status when it is recorded."""
    if isinstance(entered, tracing.ServerSpan):
        entered.end(status, request_id)
    else:
        tracing.leave_unrecorded_span(entered)

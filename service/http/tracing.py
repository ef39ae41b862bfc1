"""The request's span: the web edge of service/tracing.py, entered and left by the request
edge (service/http/middlewares.py) around everything else a request does, its access line
included, so every log line of the request carries the span's trace and span ids."""

from __future__ import annotations

from contextvars import Token

from aiohttp import web

from service import tracing
from service.otlp.context import TRACEPARENT, TRACESTATE
from service.otlp.spans import RequestSpan

#: what `enter` gives and `leave` takes back
Entered = tracing.ServerSpan | RequestSpan | Token[tracing.Current]


def _route(request: web.Request) -> str | None:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else None


def enter(request: web.Request) -> tuple[Entered, str | None]:
    """Make the request's span current: it continues the caller's `traceparent`, else starts
    a trace. Without an exporter (and on probes) it is only ids, with nothing to record.
    Gives what `leave` takes, and the new trace's id when the request starts one (None when
    it continues the caller's trace): random enough to be the request id too."""
    headers = request.headers
    if TRACEPARENT not in headers and not tracing.Active.recording:
        return tracing.enter_new_trace()  # most requests without an exporter
    traceparent = headers.get(TRACEPARENT)
    tracestate = headers.get(TRACESTATE) if traceparent else None
    if tracing.Active.recording:  # it decides what to record: never probes and scrapes
        return tracing.start_server_span(
            request.method, _route(request), request.path, traceparent, tracestate
        )
    return tracing.enter_unrecorded_span(traceparent, tracestate)


def leave(entered: Entered, status: int, request_id: str | None) -> None:
    """End what `enter` made current, recording the answer's status when it is recorded."""
    if isinstance(entered, Token):
        tracing.leave_unrecorded_span(entered)
    else:
        tracing.leave_server_span(entered, status, request_id)

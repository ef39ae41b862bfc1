"""Trace context and spans: W3C `traceparent` in and out, spans for requests, Vyte calls, store
calls, operations and webhook deliveries, exported over OTLP only when OTEL_* ask for it.

With no exporter configured, spans record nothing but still get fresh ids, so the trace context
reaches logs, Vyte and webhook receivers at the cost of a random number or two per span. With
one, spans are recorded and posted in batches by service.otlp (its own thread). The current
span is the gateway's own context variable, not OpenTelemetry's context API.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextvars import ContextVar, Token
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import structlog
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    NonRecordingSpan,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)
from opentelemetry.util.types import Attributes

from service.otlp.spans import (
    ZERO_SPAN,
    ZERO_TRACE,
    QuietSpan,
    RecordingSpan,
    RecordingTracer,
    RequestSpan,
    new_ids,
    new_span_hex,
    quiet_child,
    quiet_root,
)
from service.store.base import Delivery, Operation, Store, UnresolvedCreate

log = structlog.get_logger("tracing")

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
#: Probes and scrapes: their log lines carry trace ids, but they are never exported (a
#: kubelet probing every few seconds would bury every real trace).
QUIET_PATHS = frozenset({"/livez", "/readyz", "/metrics"})

# version-traceid-parentid-flags; later versions may append fields after another "-".
_TRACEPARENT = re.compile(
    r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[ -~]*)?", re.ASCII
)
# A Vyte id in a path becomes `{id}`, so span names stay few.
_VYTE_ID = re.compile(r"^(/v2/(?:events|hooks)/)[^/]+")
_ID_TEMPLATE = r"\g<1>{id}"

# W3C allows 32 members (a receiver must take at least 512 characters); a longer header is
# cut here, which leaves it malformed, so it is dropped rather than parsed at any length.
_MAX_TRACESTATE = 4096
_API_LOG = logging.getLogger("opentelemetry.trace.span")

S = TypeVar("S")
StoreT = TypeVar("StoreT", bound=Store)


# -- ids and the trace context on the wire ------------------------------------------------


def _traceparent_fields(traceparent: str | None) -> tuple[str, str, int] | None:
    """The trace id and parent id (hex) and the sampled flag of a valid `traceparent`
    header, or None when it is absent or invalid (then a new trace starts, as W3C trace
    context says)."""
    if not traceparent:
        return None
    match = _TRACEPARENT.fullmatch(traceparent.strip())
    if match is None:
        return None
    version, trace_hex, span_hex, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    if trace_hex == ZERO_TRACE or span_hex == ZERO_SPAN:  # all-zero ids are invalid
        return None
    return trace_hex, span_hex, int(flags, 16) & TraceFlags.SAMPLED


def parse_traceparent(traceparent: str | None, tracestate: str | None = None) -> SpanContext | None:
    """The remote parent named by a `traceparent` header, or None when absent or invalid."""
    fields = _traceparent_fields(traceparent)
    if fields is None:
        return None
    trace_hex, span_hex, sampled = fields
    return SpanContext(
        int(trace_hex, 16),
        int(span_hex, 16),
        is_remote=True,
        trace_flags=TraceFlags(sampled),
        trace_state=_tracestate(tracestate) if tracestate else TraceState(),
    )


def _tracestate(header: str) -> TraceState:
    """The caller's `tracestate`, or an empty one when it is malformed (W3C: then drop it).
    The API would log the bad header once per request, echoing the caller's bytes."""
    quiet = _API_LOG.disabled
    _API_LOG.disabled = True
    try:
        return TraceState.from_header([header[:_MAX_TRACESTATE]])
    finally:
        _API_LOG.disabled = quiet


def format_traceparent(span_context: SpanContext) -> str:
    return (
        f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}"
        f"-{span_context.trace_flags:02x}"
    )


def _stored_parent(trace_context: str | None) -> SpanContext | None:
    """The parent a context `current_trace_context` gave names (None: a new trace starts)."""
    traceparent, _, tracestate = (trace_context or "").partition("\n")
    return parse_traceparent(traceparent, tracestate or None)


def _headers_of(span: trace.Span) -> tuple[str, str] | None:
    """(`traceparent`, `tracestate`) naming `span` as the parent, or None for an invalid one."""
    if isinstance(span, QuietSpan):  # a RequestSpan too: its hex ids as they are
        flags = "01" if span.sampled else "00"
        return f"00-{span.trace_hex}-{span.span_hex}-{flags}", span.tracestate()
    context = span.get_span_context()
    if not context.is_valid:
        return None
    return format_traceparent(context), context.trace_state.to_header()


def current_trace_context() -> str | None:
    """The trace context of the current span, to store with deliveries, operations and
    unresolved creates so their work continues this trace later, in any replica, also after a
    restart: its `traceparent`, then, when it carries one, a newline and its `tracestate`
    (a header value never holds a newline)."""
    headers = _headers_of(current_span())
    if headers is None:
        return None
    traceparent, state = headers
    return f"{traceparent}\n{state}" if state else traceparent


def inject(headers: MutableMapping[str, str], span: trace.Span | None = None) -> None:
    """Add `span` (by default the current one) as the parent to outgoing `headers`."""
    ids = _headers_of(current_span() if span is None else span)
    if ids is None:
        return
    headers[TRACEPARENT] = ids[0]
    if ids[1]:
        headers[TRACESTATE] = ids[1]


# -- tracers ---------------------------------------------------------------------------------


class _Tracer(Protocol):
    def start(
        self,
        name: str,
        parent: SpanContext | None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
    ) -> trace.Span:
        """A span, the child of `parent` (None: the root of a new trace)."""


class PropagatingTracer:
    """Spans that record nothing and export nothing, with fresh ids: a child keeps its
    parent's trace id, sampled flag and tracestate, so callers further down see one trace."""

    def start(
        self,
        name: str,
        parent: SpanContext | None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
    ) -> trace.Span:
        return quiet_child(parent)


class _OtelTracer:
    """Another OpenTelemetry tracer (e.g. the SDK's, in tests) as a `_Tracer`: the parent goes
    to it in a Context, the way that API takes one."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def start(
        self,
        name: str,
        parent: SpanContext | None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
    ) -> trace.Span:
        context = Context()
        if parent is not None and parent.is_valid:
            context = trace.set_span_in_context(NonRecordingSpan(parent), context)
        return self._tracer.start_span(name, context=context, kind=kind, attributes=attributes)


_PROPAGATING = PropagatingTracer()


class _Active:
    """The tracer spans come from: the exporter's while exporting, else the propagating one."""

    tracer: _Tracer = _PROPAGATING


def _child(name: str, kind: SpanKind, attributes: Attributes = None) -> trace.Span:
    """A Vyte or store call's span, a child of the current one: it is recorded only when its
    parent is (or when it has none), so an unsampled or quiet request costs the exporter
    nothing."""
    parent = current_span()
    if type(parent) is QuietSpan:
        return parent.child()
    context = parent.get_span_context()
    if context.is_valid and not parent.is_recording():
        return quiet_child(context)
    return _Active.tracer.start(name, context if context.is_valid else None, kind, attributes)


def use_tracer(tracer: _Tracer | trace.Tracer | None) -> None:
    """Make `tracer` the source of spans: the exporter's RecordingTracer, or any OpenTelemetry
    tracer (an SDK TracerProvider's); None: record nothing."""
    if tracer is None:
        _Active.tracer = _PROPAGATING
    elif isinstance(tracer, trace.Tracer):
        _Active.tracer = _OtelTracer(tracer)
    else:
        _Active.tracer = tracer


# -- the current span ----------------------------------------------------------------------------

# The span current in this task: the gateway keeps its own (OpenTelemetry's context API would
# copy a Context on every switch and look it up through two layers on every log line).
_CURRENT: ContextVar[trace.Span | None] = ContextVar("span", default=None)


def current_span() -> trace.Span:
    """The current span, or the invalid span outside any trace."""
    return _CURRENT.get() or trace.INVALID_SPAN


@contextlib.contextmanager
def using(span: trace.Span) -> Iterator[trace.Span]:
    """`span` current inside the block (not ended at its end)."""
    token = _CURRENT.set(span)
    try:
        yield span
    finally:
        _CURRENT.reset(token)


def _hex_ids(span: trace.Span) -> tuple[str, str] | None:
    """(trace id, span id) in hex, or None for an invalid span."""
    if isinstance(span, QuietSpan):  # a RequestSpan too
        return span.trace_hex, span.span_hex
    if type(span) is RecordingSpan:
        return span.hex_ids()
    context = span.get_span_context()
    if not context.is_valid:  # then the ids fit 128 and 64 bits
        return None
    return context.trace_id.to_bytes(16).hex(), context.span_id.to_bytes(8).hex()


# -- spans -------------------------------------------------------------------------------------


class ServerSpan:
    """A recorded request's span, current while the request is handled (see
    service/http/tracing.py)."""

    __slots__ = ("method", "route", "span", "token")

    def __init__(
        self, span: trace.Span, token: Token[trace.Span | None], method: str, route: str | None
    ) -> None:
        self.span = span
        self.token = token
        self.method = method
        self.route = route

    def end(self, status: int, request_id: str | None) -> None:
        span = self.span
        try:
            if type(span) is RequestSpan:
                span.end_request(self.method, self.route, status, request_id)
            elif span.is_recording():
                attributes: dict[str, str | int] = {
                    "http.request.method": self.method,
                    # The route, never the path: the inbound hook path holds a secret token.
                    "http.route": self.route or "unmatched",
                    "http.response.status_code": status,
                }
                if request_id:
                    attributes["http.request.id"] = request_id
                span.set_attributes(attributes)
                if status >= 500:
                    span.set_status(Status(StatusCode.ERROR))
                span.end()
        finally:
            _CURRENT.reset(self.token)


def records_requests(path: str) -> bool:
    """Whether a request to `path` gets a recorded span: only while exporting, and never
    for probes and scrapes (QUIET_PATHS)."""
    return _Active.tracer is not _PROPAGATING and path not in QUIET_PATHS


def _quiet_request(traceparent: str | None, tracestate: str | None) -> QuietSpan:
    """An unrecorded request span: it continues a valid incoming `traceparent` (kept as its
    hex), else it starts a trace."""
    fields = _traceparent_fields(traceparent)
    if fields is None:
        return quiet_root()
    state = _tracestate(tracestate) if tracestate else None
    return QuietSpan(fields[0], new_span_hex(), bool(fields[2]), state)


def enter_unrecorded_span(
    traceparent: str | None, tracestate: str | None
) -> Token[trace.Span | None]:
    """Make an unrecorded request span current (every request without an exporter): only
    ids, continuing an incoming `traceparent`, else a new trace; the token is for `leave_`."""
    if traceparent is None:  # the usual request: a new trace
        trace_hex, span_hex = new_ids()
        return _CURRENT.set(QuietSpan(trace_hex, span_hex, False, None))
    return _CURRENT.set(_quiet_request(traceparent, tracestate))


def leave_unrecorded_span(token: Token[trace.Span | None]) -> None:
    _CURRENT.reset(token)


def start_server_span(
    method: str, route: str | None, path: str, traceparent: str | None, tracestate: str | None
) -> ServerSpan:
    """Start the request's span and make it current: it continues an incoming `traceparent`,
    else starts a trace. Probes and scrapes (QUIET_PATHS) get ids but are never recorded."""
    if path in QUIET_PATHS:
        span: trace.Span = _quiet_request(traceparent, tracestate)
    else:
        tracer = _Active.tracer
        if type(tracer) is RecordingTracer:  # the exporter's: the cheap request span
            fields = _traceparent_fields(traceparent)
            state = _tracestate(tracestate) if fields is not None and tracestate else None
            span = tracer.start_request(fields, state)
        else:
            parent = parse_traceparent(traceparent, tracestate)
            name = f"{method} {route}" if route else method
            span = tracer.start(name, parent, SpanKind.SERVER)
    return ServerSpan(span, _CURRENT.set(span), method, route)


# -- Vyte calls --------------------------------------------------------------------------------


def _upstream_name(method: str, path: str) -> str:
    return f"{method} {_VYTE_ID.sub(_ID_TEMPLATE, path)}"


def upstream_started(
    method: str, path: str, host: str, port: int, headers: MutableMapping[str, str]
) -> trace.Span:
    """The CLIENT span of one HTTP attempt to Vyte (so the fan-out shows as parallel children
    of the request), named as its parent in `headers`; `upstream_ended` ends it."""
    parent = _CURRENT.get()
    span: trace.Span
    if type(parent) is QuietSpan:  # the usual case without an exporter: ids only, no name
        span = parent.child()
    else:
        span = _child(_upstream_name(method, path), SpanKind.CLIENT)
    if span.is_recording():
        # No query string: it names participants (emails).
        span.set_attributes(
            {
                "http.request.method": method,
                "server.address": host,
                "server.port": port,
                "url.path": path,
                "peer.service": "vyte",
            }
        )
    inject(headers, span)
    return span


def upstream_ended(span: trace.Span, status: int | None, error: BaseException | None) -> None:
    """End an upstream span: with Vyte's status when it answered, and the error when the call
    failed (before an answer, or while reading it)."""
    if type(span) is QuietSpan:
        return
    if span.is_recording():
        if status is not None:
            span.set_attribute("http.response.status_code", status)
            if status >= 400:
                span.set_status(Status(StatusCode.ERROR))
        if error is not None:
            span.set_attribute("error.type", type(error).__name__)
            span.set_status(Status(StatusCode.ERROR, type(error).__name__))
    span.end()


# -- store calls -------------------------------------------------------------------------------

# Not given spans: the readiness probe and close (noise), and the read every availability
# query makes, cached ones too (its time shows in the request span; a span of its own would
# be most of what exporting costs on the warm path, see bench/RESULTS.md).
_UNTRACED_STORE_CALLS = frozenset({"ping", "close", "active_bookings", "booking_marks"})


def _store_methods() -> tuple[str, ...]:
    return tuple(
        name
        for name, member in vars(Store).items()
        if inspect.iscoroutinefunction(member) and name not in _UNTRACED_STORE_CALLS
    )


def trace_store(store: StoreT) -> StoreT:
    """Give each call of `store` a span, when made inside a trace (a request, an operation):
    background polls that find nothing to do stay out of the traces."""
    system = "redis" if "redis" in type(store).__module__ else "sqlite"
    for name in _store_methods():
        method = getattr(store, name, None)
        if method is not None and inspect.iscoroutinefunction(method):
            setattr(store, name, _traced_store_call(f"store {name}", system, method))
    return store


def _traced_store_call(
    name: str, system: str, method: Callable[..., Awaitable[Any]]
) -> Callable[..., Awaitable[Any]]:
    attributes: Attributes = {"db.system.name": system, "db.operation.name": name[6:]}

    @functools.wraps(method)
    async def call(*args: Any, **kwargs: Any) -> Any:
        current = _CURRENT.get()
        if current is None or type(current) is QuietSpan:  # nothing to record
            return await method(*args, **kwargs)
        span = _child(name, SpanKind.CLIENT, attributes)
        try:
            return await method(*args, **kwargs)
        except BaseException as err:
            if span.is_recording():
                span.set_status(Status(StatusCode.ERROR, type(err).__name__))
            raise
        finally:
            span.end()

    return call


def _loggable(url: str) -> str:
    try:
        parts = urlsplit(url)
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparsable URL)"
    return f"{parts.scheme}://{parts.hostname or ''}{port}{parts.path}"


def delivery_attempt(
    post: Callable[[S, Delivery], Awaitable[str | None]],
) -> Callable[[S, Delivery], Awaitable[str | None]]:
    """Decorates the dispatcher's one attempt to POST a delivery (returning its error or None):
    a span continuing the trace of the change that caused the delivery, current while the
    attempt runs so its `traceparent` header and log lines name it."""

    @functools.wraps(post)
    async def attempt(self: S, delivery: Delivery) -> str | None:
        span = _Active.tracer.start(
            f"webhook {delivery.event_type}",
            _stored_parent(delivery.trace_context),
            SpanKind.CLIENT,
        )
        token = _CURRENT.set(span)
        try:
            error = await post(self, delivery)
        except BaseException as err:
            if span.is_recording():
                span.set_status(Status(StatusCode.ERROR, type(err).__name__))
            raise
        else:
            if span.is_recording():
                span.set_attributes(
                    {
                        "webhook.id": delivery.id,
                        "webhook.event_type": delivery.event_type,
                        "webhook.attempt": delivery.attempts + 1,
                        "url.full": _loggable(delivery.url),
                    }
                )
                if error is not None:
                    span.set_status(Status(StatusCode.ERROR, error))
            return error
        finally:
            span.end()
            _CURRENT.reset(token)

    return attempt


def operation_attempt(
    apply: Callable[[S, Operation], Awaitable[None]],
) -> Callable[[S, Operation], Awaitable[None]]:
    """Decorates the worker's attempt at an accepted operation: a span continuing the trace
    of the request that accepted it, so its Vyte calls and webhooks belong to that trace."""

    @functools.wraps(apply)
    async def attempt(self: S, op: Operation) -> None:
        span = _Active.tracer.start(
            f"operation {op.type}", _stored_parent(op.trace_context), SpanKind.INTERNAL
        )
        if span.is_recording():
            span.set_attributes({"operation.id": op.id, "operation.attempt": op.attempts + 1})
        token = _CURRENT.set(span)
        try:
            await apply(self, op)
        finally:
            span.end()
            _CURRENT.reset(token)

    return attempt


def unresolved_look(
    look: Callable[[S, UnresolvedCreate], Awaitable[None]],
) -> Callable[[S, UnresolvedCreate], Awaitable[None]]:
    """Decorates the reconciler's look for a create whose outcome is unknown: a span
    continuing the trace of the request that sent the create, so the search in Vyte and
    the webhook of a found event belong to that trace."""

    @functools.wraps(look)
    async def attempt(self: S, record: UnresolvedCreate) -> None:
        span = _Active.tracer.start(
            "unresolved create look", _stored_parent(record.trace_context), SpanKind.INTERNAL
        )
        if span.is_recording():
            span.set_attributes(
                {"unresolved.id": record.id, "unresolved.attempt": record.attempts + 1}
            )
        token = _CURRENT.set(span)
        try:
            await look(self, record)
        finally:
            span.end()
            _CURRENT.reset(token)

    return attempt


# -- logs --------------------------------------------------------------------------------------


def add_trace_ids(
    logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: `trace_id` and `span_id` of the current span, when there is one."""
    span = _CURRENT.get()
    if span is None:
        return event
    ids = _hex_ids(span)
    if ids is not None:
        event.setdefault("trace_id", ids[0])
        event.setdefault("span_id", ids[1])
    return event

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
)
from opentelemetry.util.types import Attributes

from service.otlp.context import (
    TRACEPARENT,
    TRACESTATE,
    format_traceparent,
    parse_traceparent,
    read_tracestate,
    remote_parent,
    traceparent_fields,
)
from service.otlp.spans import (
    QuietSpan,
    RecordingSpan,
    RecordingTracer,
    RequestSpan,
    new_ids,
    new_span_hex,
    new_trace_pool,
    quiet_child,
    quiet_root,
)
from service.store.base import Delivery, Operation, Store, UnresolvedCreate

log = structlog.get_logger("tracing")

#: Probes and scrapes: their log lines carry trace ids, but they are never exported (a
#: kubelet probing every few seconds would bury every real trace).
QUIET_PATHS = frozenset({"/livez", "/readyz", "/metrics"})

# A Vyte id in a path becomes `{id}`, so span names stay few.
_VYTE_ID = re.compile(r"^(/v2/(?:events|hooks)/)[^/]+")
_ID_TEMPLATE = r"\g<1>{id}"

S = TypeVar("S")
StoreT = TypeVar("StoreT", bound=Store)


# -- the trace context on the wire (service.otlp.context) ----------------------------------


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


class Active:
    """The tracer spans come from: the exporter's while exporting, else the propagating one
    (`recording` says which; set it with `use_tracer`)."""

    tracer: _Tracer = _PROPAGATING
    recording = False


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
    return Active.tracer.start(name, context if context.is_valid else None, kind, attributes)


def use_tracer(tracer: _Tracer | trace.Tracer | None) -> None:
    """Make `tracer` the source of spans: the exporter's RecordingTracer, or any OpenTelemetry
    tracer (an SDK TracerProvider's); None: record nothing."""
    if tracer is None:
        Active.tracer = _PROPAGATING
    elif isinstance(tracer, trace.Tracer):
        Active.tracer = _OtelTracer(tracer)
    else:
        Active.tracer = tracer
    Active.recording = Active.tracer is not _PROPAGATING


# -- the current span ----------------------------------------------------------------------------

#: What is current: a span; or a new trace's (trace id, span id) in hex, which is how an
#: unrecorded request span that continues no trace is held (most requests without an exporter:
#: no object is made for them unless something asks for the span); or None, outside any trace.
Current = trace.Span | tuple[str, str] | None

# The span current in this task: the gateway keeps its own (OpenTelemetry's context API would
# copy a Context on every switch and look it up through two layers on every log line).
_CURRENT: ContextVar[Current] = ContextVar("span", default=None)
_QUIET = (QuietSpan, tuple)  # what records nothing, so nothing is recorded under it


def current_span() -> trace.Span:
    """The current span, or the invalid span outside any trace."""
    span = _CURRENT.get()
    if span is None:
        return trace.INVALID_SPAN
    if isinstance(span, tuple):  # the same ids each time, in a new object
        return QuietSpan(span[0], span[1], False, None)
    return span


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
    """A request's span from another tracer (the SDK's, in tests) or a probe's quiet one
    while exporting, current while the request is handled (see service/http/tracing.py);
    the exporter's own tracer gives a RequestSpan instead, which holds the same."""

    __slots__ = ("method", "route", "span", "token")

    def __init__(
        self, span: trace.Span, token: Token[Current], method: str, route: str | None
    ) -> None:
        self.span = span
        self.token = token
        self.method = method
        self.route = route

    def end(self, status: int, request_id: str | None) -> None:
        span = self.span
        try:
            if span.is_recording():
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


def _quiet_request(fields: tuple[str, str, int] | None, tracestate: str | None) -> QuietSpan:
    """An unrecorded request span: it continues a valid incoming `traceparent` (its parsed
    fields, kept as hex), else it starts a trace."""
    if fields is None:
        return quiet_root()
    state = read_tracestate(tracestate) if tracestate else None
    return QuietSpan(fields[0], new_span_hex(), bool(fields[2]), state)


_take_new_ids = new_trace_pool.pop


def enter_new_trace() -> tuple[Token[Current], str]:
    """Make a new trace's unrecorded request span current, held as its ids (most requests
    without an exporter); gives the token for `leave_unrecorded_span` and the trace id."""
    try:
        ids = _take_new_ids()  # the pool's own pop: a Python call less
    except IndexError:
        ids = new_ids()  # refills it
    return _CURRENT.set(ids), ids[0]


def enter_unrecorded_span(
    traceparent: str | None, tracestate: str | None
) -> tuple[Token[Current], str | None]:
    """Make an unrecorded request span current (every request without an exporter): only
    ids, continuing an incoming `traceparent`, else a new trace. Gives the token for
    `leave_unrecorded_span`, and the new trace's id (None when the trace is the caller's)."""
    if traceparent is None:
        return enter_new_trace()
    fields = traceparent_fields(traceparent)
    span = _quiet_request(fields, tracestate)
    return _CURRENT.set(span), span.trace_hex if fields is None else None


#: leave what `enter_unrecorded_span` entered, given its token (the context variable's own
#: method: one Python call less on every request)
leave_unrecorded_span = _CURRENT.reset


def start_server_span(
    method: str, route: str | None, path: str, traceparent: str | None, tracestate: str | None
) -> tuple[ServerSpan | RequestSpan, str | None]:
    """Start the request's span and make it current: it continues an incoming `traceparent`,
    else starts a trace (then its id comes back too). Probes and scrapes (QUIET_PATHS) get
    ids but are never recorded. `leave_server_span` ends it."""
    fields = traceparent_fields(traceparent)
    tracer = Active.tracer
    if type(tracer) is RecordingTracer and path not in QUIET_PATHS:  # the cheap request span
        state = read_tracestate(tracestate) if fields is not None and tracestate else None
        started = tracer.start_request(fields, state, method, route)
        token = _CURRENT.set(started)
        if type(started) is RequestSpan:
            started.token = token
            return started, None if fields is not None else started.trace_hex
        span: trace.Span = started  # unsampled: quiet
    elif path in QUIET_PATHS:
        span = _quiet_request(fields, tracestate)
        token = _CURRENT.set(span)
    else:
        parent = remote_parent(fields, tracestate)  # parsed once, above
        span = tracer.start(f"{method} {route}" if route else method, parent, SpanKind.SERVER)
        token = _CURRENT.set(span)
    ids = None if fields is not None else _hex_ids(span)
    return ServerSpan(span, token, method, route), ids[0] if ids else None


def leave_server_span(
    entered: ServerSpan | RequestSpan, status: int, request_id: str | None
) -> None:
    """End what `start_server_span` started, with the answer's status, and leave it."""
    if isinstance(entered, RequestSpan):
        try:
            entered.end_request(status, request_id)
        finally:
            _CURRENT.reset(entered.token)
    else:
        entered.end(status, request_id)


# -- Vyte calls --------------------------------------------------------------------------------


def upstream_started(
    method: str, path: str, host: str, port: int, headers: MutableMapping[str, str]
) -> trace.Span:
    """The CLIENT span of one HTTP attempt to Vyte (so the fan-out shows as parallel children
    of the request), named as its parent in `headers`; `upstream_ended` ends it."""
    parent = _CURRENT.get()
    span: trace.Span
    if isinstance(parent, tuple):  # the usual case without an exporter: ids only, no name
        span = QuietSpan(parent[0], new_span_hex(), False, None)
    elif type(parent) is QuietSpan:
        span = parent.child()
    else:
        span = _child(f"{method} {_VYTE_ID.sub(_ID_TEMPLATE, path)}", SpanKind.CLIENT)
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
        if current is None or type(current) in _QUIET:  # nothing to record
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
        span = Active.tracer.start(
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


@contextlib.contextmanager
def _continuing(name: str, trace_context: str | None, attributes: Attributes) -> Iterator[None]:
    """An INTERNAL span continuing a stored trace context, current inside the block."""
    span = Active.tracer.start(name, _stored_parent(trace_context), SpanKind.INTERNAL)
    if attributes and span.is_recording():
        span.set_attributes(attributes)
    try:
        with using(span):
            yield
    finally:
        span.end()


def operation_attempt(
    apply: Callable[[S, Operation], Awaitable[None]],
) -> Callable[[S, Operation], Awaitable[None]]:
    """Decorates the worker's attempt at an accepted operation: a span continuing the trace
    of the request that accepted it, so its Vyte calls and webhooks belong to that trace."""

    @functools.wraps(apply)
    async def attempt(self: S, op: Operation) -> None:
        attributes: Attributes = {"operation.id": op.id, "operation.attempt": op.attempts + 1}
        with _continuing(f"operation {op.type}", op.trace_context, attributes):
            await apply(self, op)

    return attempt


def unresolved_look(
    look: Callable[[S, UnresolvedCreate], Awaitable[None]],
) -> Callable[[S, UnresolvedCreate], Awaitable[None]]:
    """Decorates the reconciler's look for a create whose outcome is unknown: a span
    continuing the trace of the request that sent the create, so the search in Vyte and
    the webhook of a found event belong to that trace."""

    @functools.wraps(look)
    async def attempt(self: S, record: UnresolvedCreate) -> None:
        attributes: Attributes = {
            "unresolved.id": record.id,
            "unresolved.attempt": record.attempts + 1,
        }
        with _continuing("unresolved create look", record.trace_context, attributes):
            await look(self, record)

    return attempt


# -- logs --------------------------------------------------------------------------------------


def add_trace_ids(
    logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: `trace_id` and `span_id` of the current span, when there is one."""
    span = _CURRENT.get()
    if type(span) is tuple:  # most requests' span: its ids
        trace_hex, span_hex = span
    elif span is None:
        return event
    else:
        ids = _hex_ids(span)  # type: ignore[arg-type]  # a tuple is the first case
        if ids is None:
            return event
        trace_hex, span_hex = ids
    event.setdefault("trace_id", trace_hex)
    event.setdefault("span_id", span_hex)
    return event

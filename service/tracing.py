"""Trace context and spans: W3C `traceparent` in and out, spans for requests, Vyte calls, store
calls, operations and webhook deliveries, exported over OTLP only when OTEL_* ask for it.

With no exporter configured, spans record nothing but still get fresh ids, so the trace context
reaches logs, Vyte and webhook receivers at the cost of two random numbers per span. With one,
spans are recorded and posted in batches by service.otlp (its own thread).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import os
import re
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from types import SimpleNamespace
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import aiohttp
import attrs
import structlog
from opentelemetry import context as otel_context
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

from service.otlp.spans import new_id
from service.store.base import Delivery, Operation, Store, UnresolvedCreate

log = structlog.get_logger("tracing")

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
#: Probes and scrapes: their log lines carry trace ids, but they are never exported (a
#: kubelet probing every few seconds would bury every real trace).
QUIET_PATHS = frozenset({"/livez", "/readyz", "/metrics"})
SERVICE_NAME = "booking-gateway"
#: seconds the last spans may take to leave at shutdown
FLUSH_SECONDS = 3.0

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


def parse_traceparent(traceparent: str | None, tracestate: str | None = None) -> SpanContext | None:
    """The remote parent named by a `traceparent` header, or None when absent or invalid
    (then a new trace starts, as W3C trace context says)."""
    if not traceparent:
        return None
    match = _TRACEPARENT.fullmatch(traceparent.strip())
    if match is None:
        return None
    version, trace_hex, span_hex, flags, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if not trace_id or not span_id:
        return None
    state = _tracestate(tracestate) if tracestate else TraceState()
    return SpanContext(
        trace_id,
        span_id,
        is_remote=True,
        trace_flags=TraceFlags(int(flags, 16) & TraceFlags.SAMPLED),
        trace_state=state,
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


def _parent(traceparent: str | None, tracestate: str | None = None) -> Context:
    """A context whose span is the remote parent, or an empty one (a new trace starts, even
    if something else happens to be current)."""
    remote = parse_traceparent(traceparent, tracestate)
    if remote is None:
        return Context()
    return trace.set_span_in_context(NonRecordingSpan(remote), Context())


def current_trace_context() -> str | None:
    """The trace context of the current span, to store with deliveries, operations and
    unresolved creates so their work continues this trace later, in any replica, also after a
    restart: its `traceparent`, then, when it carries one, a newline and its `tracestate`
    (a header value never holds a newline)."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    traceparent = format_traceparent(span_context)
    state = span_context.trace_state.to_header()
    return f"{traceparent}\n{state}" if state else traceparent


def _stored_parent(trace_context: str | None) -> Context:
    """`_parent` of a context `current_trace_context` gave (None: a new trace starts)."""
    traceparent, _, tracestate = (trace_context or "").partition("\n")
    return _parent(traceparent, tracestate or None)


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current span as the parent to outgoing `headers`."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return
    headers[TRACEPARENT] = format_traceparent(span_context)
    state = span_context.trace_state.to_header()
    if state:
        headers[TRACESTATE] = state


# -- tracers ---------------------------------------------------------------------------------


class _Tracer(Protocol):
    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
    ) -> trace.Span: ...


class PropagatingTracer:
    """Spans that record nothing and export nothing, with fresh ids: a child keeps its
    parent's trace id, sampled flag and tracestate, so callers further down see one trace."""

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
    ) -> trace.Span:
        return _propagated(trace.get_current_span(context).get_span_context())


def _propagated(parent: SpanContext | None) -> NonRecordingSpan:
    """A span that records nothing: a child of `parent` when valid, else a new trace's root."""
    if parent is not None and parent.is_valid:
        flags, state = parent.trace_flags, parent.trace_state
        return NonRecordingSpan(SpanContext(parent.trace_id, new_id(64), False, flags, state))
    return NonRecordingSpan(SpanContext(new_id(128), new_id(64), is_remote=False))


_PROPAGATING = PropagatingTracer()


class _Active:
    """The tracer spans come from: the SDK's while exporting, else the propagating one."""

    tracer: _Tracer = _PROPAGATING


def _child_tracer() -> _Tracer:
    """Where a Vyte or store call's span comes from: it is recorded only when its parent is
    (or when it has none), so an unsampled or quiet request costs the SDK nothing."""
    parent = trace.get_current_span()
    if parent.get_span_context().is_valid and not parent.is_recording():
        return _PROPAGATING
    return _Active.tracer


def use_tracer(tracer: _Tracer | None) -> None:
    """Make `tracer` (e.g. an SDK TracerProvider's) the source of spans; None: record nothing."""
    _Active.tracer = tracer or _PROPAGATING


# -- export ------------------------------------------------------------------------------------


def _names(environ: Mapping[str, str], key: str) -> set[str]:
    return {n.strip().lower() for n in environ.get(key, "").split(",") if n.strip()}


def exporter_configured(environ: Mapping[str, str]) -> bool:
    """Whether the standard OTEL_* variables ask for an OTLP trace exporter: an OTLP endpoint,
    or OTEL_TRACES_EXPORTER=otlp; never with OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = _names(environ, "OTEL_TRACES_EXPORTER")
    if "none" in exporters:
        return False
    if exporters:
        unsupported = exporters - {"otlp"}
        if unsupported:
            log.warning("tracing_exporter_unsupported", exporters=sorted(unsupported))
        return "otlp" in exporters
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def _protocol(environ: Mapping[str, str]) -> str:
    return (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()


def _safe_endpoint(environ: Mapping[str, str]) -> str:
    """Where spans go, for the start-up line: scheme, host and port only."""
    url = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or "http://localhost:4318"
    )
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"
    except ValueError:
        return "(unparsable URL)"


async def export(app: object) -> AsyncIterator[None]:
    """cleanup_ctx: while the app runs, spans go to the OTLP/HTTP endpoint the OTEL_*
    variables name (read from the process environment, as the SDK itself reads them);
    they are flushed when it stops."""
    environ = os.environ
    if not exporter_configured(environ):
        yield
        return
    if _protocol(environ) != "http/protobuf":
        log.warning(
            "tracing_protocol_unsupported", protocol=_protocol(environ), supported="http/protobuf"
        )
        yield
        return
    # Imported only when exporting. The SDK gives the resource (OTEL_SERVICE_NAME,
    # OTEL_RESOURCE_ATTRIBUTES); spans, their encoding and export are service.otlp's, at a
    # fraction of the SDK's cost per span (bench/RESULTS.md).
    from opentelemetry.sdk.resources import Resource

    from service.otlp.export import BatchExporter, settings
    from service.otlp.spans import RecordingTracer, sampler

    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    exporter = BatchExporter(settings(environ), resource.attributes, SERVICE_NAME)
    use_tracer(RecordingTracer(sampler(environ), exporter.add))
    exporter.start()
    log.info("tracing_export", endpoint=_safe_endpoint(environ), protocol="http/protobuf")
    try:
        yield
    finally:
        use_tracer(None)
        await _flush(exporter.shutdown, exporter.abort)


async def _flush(shutdown: Callable[[], object], abort: Callable[[], object]) -> None:
    """Flush what is left, for at most FLUSH_SECONDS: a collector that is down would otherwise
    hold the exporter in its retries for its whole timeout, past the pod's grace period."""
    flushing = threading.Thread(target=shutdown, name="otlp-flush", daemon=True)
    flushing.start()
    await asyncio.to_thread(flushing.join, FLUSH_SECONDS)
    if flushing.is_alive():
        log.warning("tracing_flush_abandoned", after_seconds=FLUSH_SECONDS)
        abort()  # ends the exporter's retries; the spans still queued are dropped
        await asyncio.to_thread(flushing.join, 1.0)


# -- spans -------------------------------------------------------------------------------------


@attrs.frozen
class ServerSpan:
    """A request's span, current while the request is handled (see service/http/tracing.py)."""

    span: trace.Span
    token: object
    method: str
    route: str | None

    def end(self, status: int, request_id: str | None) -> None:
        span = self.span
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
        otel_context.detach(self.token)  # type: ignore[arg-type]


def records_requests(path: str) -> bool:
    """Whether a request to `path` gets a recorded span: only while exporting, and never
    for probes and scrapes (QUIET_PATHS)."""
    return _Active.tracer is not _PROPAGATING and path not in QUIET_PATHS


def enter_unrecorded_span(traceparent: str | None, tracestate: str | None) -> object:
    """Make an unrecorded request span current (every request without an exporter): only
    ids, continuing an incoming `traceparent`, else a new trace; the token is for `leave_`."""
    remote = parse_traceparent(traceparent, tracestate) if traceparent else None
    return otel_context.attach(trace.set_span_in_context(_propagated(remote), Context()))


def leave_unrecorded_span(token: object) -> None:
    otel_context.detach(token)  # type: ignore[arg-type]


def start_server_span(
    method: str, route: str | None, path: str, traceparent: str | None, tracestate: str | None
) -> ServerSpan:
    """Start the request's span and make it current: it continues an incoming `traceparent`,
    else starts a trace. Probes and scrapes (QUIET_PATHS) get ids but are never recorded."""
    tracer = _PROPAGATING if path in QUIET_PATHS else _Active.tracer
    parent = _parent(traceparent, tracestate)
    name = f"{method} {route}" if route else method
    span = tracer.start_span(name, context=parent, kind=SpanKind.SERVER)
    token = otel_context.attach(trace.set_span_in_context(span, parent))
    return ServerSpan(span, token, method, route)


def _upstream_name(method: str, path: str) -> str:
    return f"{method} {_VYTE_ID.sub(_ID_TEMPLATE, path)}"


async def _upstream_start(
    session: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestStartParams
) -> None:
    url = params.url
    span = _child_tracer().start_span(_upstream_name(params.method, url.path), kind=SpanKind.CLIENT)
    if span.is_recording():
        # No query string: it names participants (emails).
        span.set_attributes(
            {
                "http.request.method": params.method,
                "server.address": url.host or "",
                "server.port": url.port or 0,
                "url.path": url.path,
                "peer.service": "vyte",
            }
        )
    ctx.span = span
    params.headers[TRACEPARENT] = format_traceparent(span.get_span_context())
    state = span.get_span_context().trace_state.to_header()
    if state:
        params.headers[TRACESTATE] = state


async def _upstream_end(
    session: aiohttp.ClientSession, ctx: SimpleNamespace, params: aiohttp.TraceRequestEndParams
) -> None:
    span: trace.Span = ctx.span
    if span.is_recording():
        status = params.response.status
        span.set_attribute("http.response.status_code", status)
        if status >= 400:
            span.set_status(Status(StatusCode.ERROR))
    span.end()


async def _upstream_failed(
    session: aiohttp.ClientSession,
    ctx: SimpleNamespace,
    params: aiohttp.TraceRequestExceptionParams,
) -> None:
    span: trace.Span = ctx.span
    if span.is_recording():
        span.set_attribute("error.type", type(params.exception).__name__)
        span.set_status(Status(StatusCode.ERROR, type(params.exception).__name__))
    span.end()


def client_trace_configs() -> list[aiohttp.TraceConfig]:
    """For the Vyte ClientSession: one CLIENT span per HTTP attempt (so the fan-out shows as
    parallel children of the request), and a child `traceparent` on every call."""
    config: aiohttp.TraceConfig = aiohttp.TraceConfig()
    config.on_request_start.append(_upstream_start)
    config.on_request_end.append(_upstream_end)
    config.on_request_exception.append(_upstream_failed)
    return [config]


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
        if not trace.get_current_span().get_span_context().is_valid:
            return await method(*args, **kwargs)
        span = _child_tracer().start_span(name, kind=SpanKind.CLIENT, attributes=attributes)
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
        span = _Active.tracer.start_span(
            f"webhook {delivery.event_type}",
            context=_stored_parent(delivery.trace_context),
            kind=SpanKind.CLIENT,
        )
        token = otel_context.attach(trace.set_span_in_context(span))
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
            otel_context.detach(token)

    return attempt


def operation_attempt(
    apply: Callable[[S, Operation], Awaitable[None]],
) -> Callable[[S, Operation], Awaitable[None]]:
    """Decorates the worker's attempt at an accepted operation: a span continuing the trace
    of the request that accepted it, so its Vyte calls and webhooks belong to that trace."""

    @functools.wraps(apply)
    async def attempt(self: S, op: Operation) -> None:
        span = _Active.tracer.start_span(
            f"operation {op.type}", context=_stored_parent(op.trace_context), kind=SpanKind.INTERNAL
        )
        if span.is_recording():
            span.set_attributes({"operation.id": op.id, "operation.attempt": op.attempts + 1})
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            await apply(self, op)
        finally:
            span.end()
            otel_context.detach(token)

    return attempt


def unresolved_look(
    look: Callable[[S, UnresolvedCreate], Awaitable[None]],
) -> Callable[[S, UnresolvedCreate], Awaitable[None]]:
    """Decorates the reconciler's look for a create whose outcome is unknown: a span
    continuing the trace of the request that sent the create, so the search in Vyte and
    the webhook of a found event belong to that trace."""

    @functools.wraps(look)
    async def attempt(self: S, record: UnresolvedCreate) -> None:
        span = _Active.tracer.start_span(
            "unresolved create look",
            context=_stored_parent(record.trace_context),
            kind=SpanKind.INTERNAL,
        )
        if span.is_recording():
            span.set_attributes(
                {"unresolved.id": record.id, "unresolved.attempt": record.attempts + 1}
            )
        token = otel_context.attach(trace.set_span_in_context(span))
        try:
            await look(self, record)
        finally:
            span.end()
            otel_context.detach(token)

    return attempt


# -- logs --------------------------------------------------------------------------------------


def add_trace_ids(
    logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: `trace_id` and `span_id` of the current span, when there is one."""
    span_context = trace.get_current_span().get_span_context()
    if span_context.is_valid:  # then the ids fit 128 and 64 bits; to_bytes().hex() is quickest
        event.setdefault("trace_id", span_context.trace_id.to_bytes(16).hex())
        event.setdefault("span_id", span_context.span_id.to_bytes(8).hex())
    return event

"""The gateway's spans: the quiet one every request gets (ids only, nothing recorded), and the
ones it records when exporting (what it uses of `trace.Span`, a tracer that makes ids as the
quiet ones are made, and the OTEL_TRACES_SAMPLER rules)."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Mapping, Sequence
from contextvars import Token
from types import TracebackType
from typing import Any, NamedTuple

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
from opentelemetry.util.types import Attributes, AttributeValue

log = structlog.get_logger("tracing")

#: whether to record a span, given its parent (invalid for a new trace) and trace id
Decide = Callable[[SpanContext, int], bool]


class Sampler:
    """An OTEL_TRACES_SAMPLER rule: `decide` (also the call) says whether to record a span;
    `roots` is its answer for every new trace when that does not depend on the trace id,
    else None (so a new request's span need not turn its hex id into an int to ask)."""

    __slots__ = ("decide", "roots")

    def __init__(self, decide: Decide, roots: bool | None) -> None:
        self.decide = decide
        self.roots = roots

    def __call__(self, parent: SpanContext, trace_id: int) -> bool:
        return self.decide(parent, trace_id)


_SAMPLED = TraceFlags(TraceFlags.SAMPLED)
_NOT_SAMPLED = TraceFlags(TraceFlags.DEFAULT)
LOW_64 = (1 << 64) - 1
#: attributes and events kept per span, as the SDK's OTEL_*_COUNT_LIMIT defaults
_MAX_ATTRIBUTES = 128
_MAX_EVENTS = 128


def new_id(bits: int) -> int:
    """A random W3C trace (128 bits) or span (64 bits) id."""
    while True:  # an all-zero id is invalid in W3C trace context
        value = random.getrandbits(bits)
        if value:
            return value


# -- spans that record nothing -------------------------------------------------------------


class QuietSpan(NonRecordingSpan):
    """A span that records nothing, held as the hex ids a log line and a `traceparent` header
    use; its SpanContext is made only when something asks for it."""

    __slots__ = ("_state", "sampled", "span_hex", "trace_hex")

    def __init__(self, trace_hex: str, span_hex: str, sampled: bool, state: TraceState | None):
        self.trace_hex = trace_hex
        self.span_hex = span_hex
        self.sampled = sampled
        self._state = state
        self._context = None  # type: ignore[assignment]

    def get_span_context(self) -> SpanContext:
        context = self._context
        if context is None:
            context = self._context = SpanContext(
                int(self.trace_hex, 16),
                int(self.span_hex, 16),
                is_remote=False,
                trace_flags=_SAMPLED if self.sampled else _NOT_SAMPLED,
                trace_state=self._state,
            )
        return context

    def child(self) -> QuietSpan:
        return QuietSpan(self.trace_hex, new_span_hex(), self.sampled, self._state)

    def tracestate(self) -> str:
        return self._state.to_header() if self._state else ""


class RequestRecord(NamedTuple):
    """An ended request span, as its OTLP encoding needs it (service.otlp.encoding)."""

    trace_hex: str
    span_hex: str
    parent_hex: str  # an incoming traceparent's span id (a remote parent); "" for a root
    state: str  # the tracestate header, "" for none
    start: int
    end: int
    method: str
    route: str | None
    status: int
    request_id: str | None


class RequestSpan(QuietSpan):
    """A recorded request span (SERVER), held as little as a quiet one: hex ids, its
    parent's span id, its start, the request's method and route, and the token that made it
    current. It is the parent of recorded Vyte and store calls while open; `end_request`
    turns it into one RequestRecord for the exporter. A RecordingSpan with a dict of
    attributes, ended through the API, cost twice as much per request.

    Its fields are fixed: the span API's `end`, `set_attribute`, `set_status` change nothing
    (as on any quiet span); only service.tracing.leave_server_span ends it, with the
    answer's status."""

    __slots__ = ("_ended", "_sink", "method", "parent_hex", "route", "start", "token")

    def __init__(
        self,
        trace_hex: str,
        span_hex: str,
        state: TraceState | None,
        parent_hex: str,
        sink: Callable[[RequestRecord], None],
        method: str,
        route: str | None,
    ) -> None:
        self.trace_hex = trace_hex  # QuietSpan's fields, set here (a call less per request)
        self.span_hex = span_hex
        self.sampled = True
        self._state = state
        self._context = None  # type: ignore[assignment]
        self.parent_hex = parent_hex
        self._sink = sink
        self.method = method
        self.route = route
        #: what made it current, for service.tracing to reset when it ends
        self.token: Token[Any] = None  # type: ignore[assignment]
        self._ended = False
        self.start = time.time_ns()

    def is_recording(self) -> bool:
        return not self._ended

    def end_request(self, status: int, request_id: str | None) -> None:
        """End the span with the answer's status (once; later calls change nothing)."""
        if self._ended:
            return
        self._ended = True
        state = self._state
        # tuple.__new__: a NamedTuple's own constructor costs ten times as much.
        self._sink(
            _new_record(
                RequestRecord,
                (
                    self.trace_hex,
                    self.span_hex,
                    self.parent_hex,
                    state.to_header() if state else "",
                    self.start,
                    time.time_ns(),
                    self.method,
                    self.route,
                    status,
                    request_id,
                ),
            )
        )


_new_record = tuple.__new__
ZERO_TRACE, ZERO_SPAN = "0" * 32, "0" * 16

# Hex ids come from pools refilled a few hundred at a time, each refill one read of the
# system's random bytes written as hex with a space between ids and split: a fraction of
# what drawing, writing and slicing per id cost, which was a third of a request's quiet span
# (bench.tracing --instructions). Random enough for a request id too.
_POOL = 256
#: a new trace's (trace id, span id), to `pop` (new_ids refills it when empty)
new_trace_pool: list[tuple[str, str]] = []
_span_hexes: list[str] = []


def _draw(count: int, size: int) -> list[str]:
    """`count` random ids of `size` bytes, in hex."""
    return os.urandom(count * size).hex(" ", size).split()


def _refill_traces() -> None:
    traces, spans = _draw(_POOL, 16), _draw(_POOL, 8)
    pairs = list(zip(traces, spans, strict=True))
    if ZERO_TRACE in traces or ZERO_SPAN in spans:  # invalid in W3C trace context
        pairs = [ids for ids in pairs if ids[0] != ZERO_TRACE and ids[1] != ZERO_SPAN]
    new_trace_pool.extend(pairs)


def _refill_spans() -> None:
    spans = _draw(_POOL, 8)
    _span_hexes.extend(span for span in spans if span != ZERO_SPAN)


def _forget_ids() -> None:
    """A forked child starts with pools of its own, not its parent's ids."""
    new_trace_pool.clear()
    _span_hexes.clear()


os.register_at_fork(after_in_child=_forget_ids)


def new_ids() -> tuple[str, str]:
    """A new trace's random W3C trace id (128 bits) and span id (64 bits), in hex."""
    while True:  # another thread may take the last of a refill
        try:
            return new_trace_pool.pop()
        except IndexError:
            _refill_traces()


def new_span_hex() -> str:
    """A random W3C span id (64 bits), in hex."""
    while True:
        try:
            return _span_hexes.pop()
        except IndexError:
            _refill_spans()


def quiet_root() -> QuietSpan:
    return QuietSpan(*new_ids(), False, None)


def quiet_child(parent: SpanContext | None) -> QuietSpan:
    """An unrecorded span: a child of `parent` when valid, else a new trace's root."""
    if parent is None or not parent.is_valid:
        return quiet_root()
    return QuietSpan(
        parent.trace_id.to_bytes(16).hex(),
        new_span_hex(),
        parent.trace_flags.sampled,
        parent.trace_state,
    )


# -- sampling ----------------------------------------------------------------------------------


def _ratio(rate: float) -> Callable[[int], bool]:
    """The spec's TraceIdRatioBased rule: the trace id's low 64 bits under rate * 2^64, so every
    service sampling at a rate keeps the same traces."""
    bound = round(rate * (LOW_64 + 1))
    return lambda trace_id: trace_id & LOW_64 < bound


def _rate(arg: str | None) -> float:
    if arg is None or not arg.strip():
        return 1.0
    try:
        rate = float(arg)
    except ValueError:
        rate = -1.0
    if not 0.0 <= rate <= 1.0:
        log.warning("tracing_sampler_arg_invalid", value=arg, using=1.0)
        return 1.0
    return rate


def sampler(environ: Mapping[str, str]) -> Sampler:
    """The sampler OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG name (default, as in the SDK:
    parentbased_always_on). A parent-based one follows a valid parent's sampled flag."""
    default = "parentbased_always_on"
    name = environ.get("OTEL_TRACES_SAMPLER", "").strip().lower() or default
    root_name = name.removeprefix("parentbased_")
    roots: dict[str, Callable[[int], bool]] = {
        "always_on": lambda trace_id: True,
        "always_off": lambda trace_id: False,
    }
    if root_name == "traceidratio":
        roots["traceidratio"] = _ratio(_rate(environ.get("OTEL_TRACES_SAMPLER_ARG")))
    if root_name not in roots:
        log.warning("tracing_sampler_unsupported", sampler=name, using=default)
        name, root_name = default, "always_on"
    root = roots[root_name]
    fixed = {"always_on": True, "always_off": False}.get(root_name)
    if name.startswith("parentbased_"):

        def parent_based(parent: SpanContext, trace_id: int) -> bool:
            if parent.is_valid:
                return bool(parent.trace_flags & TraceFlags.SAMPLED)
            return root(trace_id)

        return Sampler(parent_based, fixed)
    return Sampler(lambda parent, trace_id: root(trace_id), fixed)


# -- spans -------------------------------------------------------------------------------------


class RecordingSpan(trace.Span):
    """What the gateway uses of a span, recorded: ended, it goes to `sink` (the exporter's
    queue). Like the SDK's span it ignores changes once ended, and a status once OK."""

    __slots__ = (
        "_attributes",
        "_context",
        "_end",
        "_events",
        "_hex",
        "_remote_parent",
        "_sink",
        "_start",
        "dropped_attributes",
        "dropped_events",
        "kind",
        "name",
        "parent_id",
        "status_code",
        "status_message",
    )

    def __init__(
        self,
        name: str,
        context: SpanContext,
        parent: SpanContext | None,
        kind: SpanKind,
        attributes: Attributes,
        sink: Callable[[RecordingSpan], None],
    ) -> None:
        self.name = name
        self._context = context
        self.parent_id = parent.span_id if parent is not None else 0
        self._remote_parent = parent is not None and parent.is_remote
        self.kind = kind
        self._attributes: dict[str, AttributeValue] = dict(attributes) if attributes else {}
        self._events: list[tuple[str, int, Attributes]] | None = None  # most spans have none
        self.dropped_attributes = self.dropped_events = 0
        self.status_code = StatusCode.UNSET
        self.status_message = ""
        self._sink = sink
        self._hex: tuple[str, str] | None = None
        self._end = 0
        self._start = time.time_ns()

    # -- what the exporter reads
    @property
    def attributes(self) -> Mapping[str, AttributeValue]:
        return self._attributes

    @property
    def events(self) -> Sequence[tuple[str, int, Attributes]]:
        return self._events or ()

    @property
    def start_time(self) -> int:
        return self._start

    @property
    def end_time(self) -> int:
        return self._end

    @property
    def remote_parent(self) -> bool:
        return self._remote_parent

    def hex_ids(self) -> tuple[str, str]:
        """The trace and span ids in hex, as log lines and `traceparent` headers write them
        (made once: every log line of a request asks)."""
        ids = self._hex
        if ids is None:
            context = self._context
            # to_bytes().hex() is quicker than formatting the ints
            ids = self._hex = (
                context.trace_id.to_bytes(16).hex(),
                context.span_id.to_bytes(8).hex(),
            )
        return ids

    # -- the trace.Span API
    def get_span_context(self) -> SpanContext:
        return self._context

    def is_recording(self) -> bool:
        return not self._end

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        if self._end:
            return
        attributes = self._attributes
        if key not in attributes and len(attributes) >= _MAX_ATTRIBUTES:
            self.dropped_attributes += 1
            return
        attributes[key] = value

    def set_attributes(self, attributes: Mapping[str, AttributeValue]) -> None:
        if len(self._attributes) + len(attributes) <= _MAX_ATTRIBUTES and not self._end:
            self._attributes.update(attributes)
            return
        for key, value in attributes.items():
            self.set_attribute(key, value)

    def set_status(self, status: Status | StatusCode, description: str | None = None) -> None:
        if isinstance(status, Status):
            code, description = status.status_code, status.description
        else:
            code = status
        if self._end or code is StatusCode.UNSET or self.status_code is StatusCode.OK:
            return
        self.status_code = code
        self.status_message = (description or "") if code is StatusCode.ERROR else ""

    def add_event(
        self, name: str, attributes: Attributes = None, timestamp: int | None = None
    ) -> None:
        if self._end:
            return
        if self._events is None:
            self._events = []
        if len(self._events) >= _MAX_EVENTS:
            self.dropped_events += 1
            return
        self._events.append((name, timestamp or time.time_ns(), attributes))

    def record_exception(
        self,
        exception: BaseException,
        attributes: Attributes = None,
        timestamp: int | None = None,
        escaped: bool = False,
    ) -> None:
        recorded = {
            "exception.type": type(exception).__name__,
            "exception.message": str(exception),
            **(attributes or {}),
        }
        self.add_event("exception", recorded, timestamp)

    def update_name(self, name: str) -> None:
        if not self._end:
            self.name = name

    def end(self, end_time: int | None = None) -> None:
        if self._end:
            return
        self._end = end_time or time.time_ns()
        self._sink(self)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        if exc_val is not None and not self._end:
            self.record_exception(exc_val, escaped=True)
            self.set_status(Status(StatusCode.ERROR, f"{type(exc_val).__name__}: {exc_val}"))
        self.end()


class RecordingTracer:
    """Spans with ids made as service.tracing.PropagatingTracer makes them (a child keeps its
    parent's trace id and tracestate), recorded when `sample` says so, else with the sampled
    flag off and recording nothing."""

    def __init__(
        self, sample: Sampler, sink: Callable[[RecordingSpan | RequestRecord], None]
    ) -> None:
        self._sample = sample.decide
        self._roots = sample.roots
        self._sink = sink

    def start_request(
        self,
        parent: tuple[str, str, int] | None,
        state: TraceState | None,
        method: str,
        route: str | None,
    ) -> QuietSpan:
        """A request's span: the child of an incoming `traceparent`'s (trace id, parent id,
        sampled flag) with its tracestate, else a new trace's root; a RequestSpan when
        sampled, else a quiet span that keeps the trace going."""
        if parent is None:
            trace_hex, span_hex = new_ids()
            sampled = self._roots
            if sampled is None:
                sampled = self._sample(trace.INVALID_SPAN_CONTEXT, int(trace_hex, 16))
            parent_hex, state = "", None
        else:
            trace_hex, parent_hex, flags = parent
            span_hex = new_span_hex()
            remote = SpanContext(
                int(trace_hex, 16),
                int(parent_hex, 16),
                is_remote=True,
                trace_flags=TraceFlags(flags),
                trace_state=state,
            )
            sampled = self._sample(remote, remote.trace_id)
        if not sampled:
            return QuietSpan(trace_hex, span_hex, False, state)
        return RequestSpan(trace_hex, span_hex, state, parent_hex, self._sink, method, route)

    def start(
        self,
        name: str,
        parent: SpanContext | None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
    ) -> trace.Span:
        """A span, the child of `parent` (None or invalid: the root of a new trace)."""
        if parent is not None and parent.is_valid:
            trace_id, state = parent.trace_id, parent.trace_state
        else:
            parent, trace_id, state = None, new_id(128), None
        sampled = self._sample(parent or trace.INVALID_SPAN_CONTEXT, trace_id)
        own = SpanContext(
            trace_id,
            new_id(64),
            is_remote=False,
            trace_flags=_SAMPLED if sampled else _NOT_SAMPLED,
            trace_state=state,
        )
        if not sampled:
            return NonRecordingSpan(own)
        return RecordingSpan(name, own, parent, kind, attributes, self._sink)

    def start_span(
        self,
        name: str,
        context: Context | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
        attributes: Attributes = None,
    ) -> trace.Span:
        """`start` as OpenTelemetry's Tracer API takes it: the parent is the span in
        `context`, or OpenTelemetry's current one."""
        return self.start(
            name, trace.get_current_span(context).get_span_context(), kind, attributes
        )

"""W3C trace context on the wire: the `traceparent` and `tracestate` headers, read and written."""

from __future__ import annotations

import logging
import re

from opentelemetry.trace import SpanContext, TraceFlags, TraceState

from service.otlp.spans import ZERO_SPAN, ZERO_TRACE

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"
# version-traceid-parentid-flags; later versions may append fields after another "-".
_TRACEPARENT = re.compile(
    r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[ -~]*)?", re.ASCII
)
# W3C allows 32 members (a receiver must take at least 512 characters); a longer header is
# cut here, which leaves it malformed, so it is dropped rather than parsed at any length.
_MAX_TRACESTATE = 4096
_API_LOG = logging.getLogger("opentelemetry.trace.span")


def traceparent_fields(traceparent: str | None) -> tuple[str, str, int] | None:
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
    return remote_parent(traceparent_fields(traceparent), tracestate)


def remote_parent(
    fields: tuple[str, str, int] | None, tracestate: str | None
) -> SpanContext | None:
    """The remote parent a parsed `traceparent` (`traceparent_fields`) names, if any."""
    if fields is None:
        return None
    trace_hex, span_hex, sampled = fields
    return SpanContext(
        int(trace_hex, 16),
        int(span_hex, 16),
        is_remote=True,
        trace_flags=TraceFlags(sampled),
        trace_state=read_tracestate(tracestate) if tracestate else TraceState(),
    )


def read_tracestate(header: str) -> TraceState:
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

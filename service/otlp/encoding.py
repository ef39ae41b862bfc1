"""OTLP protobuf, written by hand: an ExportTraceServiceRequest of recorded spans."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence

from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.util.types import Attributes

from service.otlp.spans import LOW_64, RecordingSpan, RequestRecord

# opentelemetry/proto/collector/trace/v1 ExportTraceServiceRequest, with only the fields these
# spans fill. A tag byte is (field number << 3) | wire type (0 varint, 1 fixed64, 2 bytes, 5
# fixed32); the test suite decodes what this writes with opentelemetry-proto.

_BYTE = [bytes((i,)) for i in range(0x80)]
_TIMES = struct.Struct("<BQBQ")  # Span.start_time_unix_nano (7) and end_time_unix_nano (8)
_FIXED64 = struct.Struct("<Q")
_DOUBLE = struct.Struct("<d")
_IDS = struct.Struct(">BBQQBBQ")  # Span.trace_id (1) and span_id (2), big-endian bytes
_PARENT = struct.Struct(">BBQ")  # Span.parent_span_id (4)
# Span.flags (16, a two-byte tag, then a fixed32), as the SDK sets them: SpanFlags says that
# whether the parent is remote is known (0x100), and whether it is (0x200)
_LOCAL_PARENT = struct.pack("<BBI", 0x85, 0x01, 0x100)
_REMOTE_PARENT = struct.pack("<BBI", 0x85, 0x01, 0x300)
# SPAN_KIND_INTERNAL is 1; by id, as an enum member hashes in Python code
_KIND = {id(kind): b"\x30" + _BYTE[kind.value + 1] for kind in SpanKind}
_STATUS_CODE = {StatusCode.OK: b"\x18\x01", StatusCode.ERROR: b"\x18\x02"}
_CACHE_LIMIT = 4096  # attribute keys and span names are few; past this, encode each time
#: values kept per attribute key: a key with more distinct values (a request id) is encoded
#: each time
_DISTINCT = 64
_keys: dict[str, bytes] = {}
_names: dict[str, bytes] = {}
_span_attributes: dict[str, dict[object, bytes]] = {}


def _varint(value: int) -> bytes:
    if value < 0x80:
        return _BYTE[value]
    if value < 0x4000:  # a span's length: two bytes
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return tag + _varint(len(payload)) + payload


def _string(tag: bytes, text: str, cache: dict[str, bytes]) -> bytes:
    encoded = cache.get(text)
    if encoded is None:
        encoded = _field(tag, text.encode("utf-8", "replace"))
        if len(cache) < _CACHE_LIMIT:
            cache[text] = encoded
    return encoded


def _any_value(value: object) -> bytes | None:
    """An AnyValue, or None for a type attributes cannot hold."""
    kind = type(value)
    if kind is str:
        return _field(b"\x0a", value.encode("utf-8", "replace"))  # type: ignore[attr-defined]
    if kind is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if kind is int:
        return b"\x18" + _varint(value & LOW_64)  # type: ignore[operator]
    if kind is float:
        return b"\x21" + _DOUBLE.pack(value)
    if isinstance(value, bool | int | float | str) and not isinstance(value, bytes):
        base = next(t for t in (bool, int, float, str) if isinstance(value, t))
        return _any_value(base(value))  # an IntEnum, a str subclass ...
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        items = [_any_value(item) for item in value]
        array = b"".join(_field(b"\x0a", item) for item in items if item is not None)
        return _field(b"\x2a", array)  # ArrayValue.values (1)
    return None


def _key_values(tag: bytes, attributes: Mapping[str, object] | None) -> list[bytes]:
    """Repeated KeyValue fields (key 1, value 2) under `tag`."""
    encoded = []
    for key, value in (attributes or {}).items():
        any_value = _any_value(value)
        if any_value is not None:
            encoded.append(_field(tag, _string(b"\x0a", key, _keys) + _field(b"\x12", any_value)))
    return encoded


def _span_attribute(key: str, value: object) -> bytes | None:
    """One Span.attributes (9) field. Most values repeat (a method, a route, a status), so
    str and int ones are kept, encoded, per key (not bool or float: True == 1 == 1.0)."""
    kind = type(value)
    cached = kind is str or kind is int
    values = _span_attributes.get(key)
    if cached and values is not None:
        encoded = values.get(value)
        if encoded is not None:
            return encoded
    any_value = _any_value(value)
    if any_value is None:
        return None
    encoded = _field(b"\x4a", _string(b"\x0a", key, _keys) + _field(b"\x12", any_value))
    if cached:
        if values is None and len(_span_attributes) < _CACHE_LIMIT:
            values = _span_attributes[key] = {}
        if values is not None and len(values) < _DISTINCT:
            values[value] = encoded
    return encoded


def _event(name: str, timestamp: int, attributes: Attributes) -> bytes:
    return _field(
        b"\x5a",  # Span.events (11): time (1), name (2), attributes (3)
        b"\x09"
        + _FIXED64.pack(timestamp)
        + _string(b"\x12", name, _names)
        + b"".join(_key_values(b"\x1a", attributes)),
    )


def encode_span(span: RecordingSpan) -> bytes:
    """One Span message."""
    context = span._context
    trace_id = context.trace_id
    parts = [_IDS.pack(0x0A, 16, trace_id >> 64, trace_id & LOW_64, 0x12, 8, context.span_id)]
    if context.trace_state:
        parts.append(_field(b"\x1a", context.trace_state.to_header().encode()))
    if span.parent_id:
        parts.append(_PARENT.pack(0x22, 8, span.parent_id))
    parts.append(_string(b"\x2a", span.name, _names))
    parts.append(_KIND[id(span.kind)])
    parts.append(_TIMES.pack(0x39, span._start, 0x41, span._end))
    for key, value in span._attributes.items():
        attribute = _span_attribute(key, value)
        if attribute is not None:
            parts.append(attribute)
    if span.dropped_attributes:
        parts.append(b"\x50" + _varint(span.dropped_attributes))
    for event in span._events or ():
        parts.append(_event(*event))
    if span.dropped_events:
        parts.append(b"\x60" + _varint(span.dropped_events))
    if span.status_code is not StatusCode.UNSET:
        message = span.status_message.encode("utf-8", "replace")
        status = (_field(b"\x12", message) if message else b"") + _STATUS_CODE[span.status_code]
        parts.append(_field(b"\x7a", status))
    parts.append(_REMOTE_PARENT if span._remote_parent else _LOCAL_PARENT)
    return b"".join(parts)


_SERVER = _KIND[id(SpanKind.SERVER)]
_ERROR_STATUS = _field(b"\x7a", _STATUS_CODE[StatusCode.ERROR])
#: a request span's name and kind, its method, route and status attributes, and its status,
#: by (method, route, status): few, so each is written once
_request_parts: dict[tuple[str, str | None, int], tuple[bytes, bytes, bytes]] = {}
_REQUEST_ID_KEY = _string(b"\x0a", "http.request.id", _keys)  # 17 bytes
#: the length prefixes of most messages: a list index is cheaper than a call
_SHORT = [_varint(n) for n in range(1024)]


def _request_parts_of(method: str, route: str | None, status: int) -> tuple[bytes, bytes, bytes]:
    key = (method, route, status)
    parts = _request_parts.get(key)
    if parts is None:
        attributes = (
            ("http.request.method", method),
            # The route, never the path: the inbound hook path holds a secret token.
            ("http.route", route or "unmatched"),
            ("http.response.status_code", status),
        )
        parts = (
            _string(b"\x2a", f"{method} {route}" if route else method, _names) + _SERVER,
            b"".join(_span_attribute(k, v) or b"" for k, v in attributes),
            _ERROR_STATUS if status >= 500 else b"",
        )
        if len(_request_parts) < _CACHE_LIMIT:
            _request_parts[key] = parts
    return parts


def _request_id(request_id: str) -> bytes:
    """The http.request.id attribute: one per request, so written each time."""
    value = request_id.encode("utf-8", "replace")
    size = len(value)
    if size > 106:  # then a length takes more than a byte
        return _span_attribute("http.request.id", request_id) or b""
    # Span.attributes (9): KeyValue, its key (1) and value (2): AnyValue.string_value (1)
    return b"".join(
        (
            b"\x4a",
            _BYTE[size + 21],
            _REQUEST_ID_KEY,
            b"\x12",
            _BYTE[size + 2],
            b"\x0a",
            _BYTE[size],
            value,
        )
    )


def encode_request_span(record: RequestRecord) -> bytes:
    """One Span message for a request's span: what `encode_span` writes for the SERVER span
    service.tracing records, from the few fields of a RequestRecord."""
    trace_hex, span_hex, parent_hex, state, start, end, method, route, status, rid = record
    ids = f"0a10{trace_hex}1208{span_hex}"  # trace_id (1) and span_id (2), tags in hex
    if state:
        head = bytes.fromhex(ids) + _field(b"\x1a", state.encode())
        if parent_hex:
            head += bytes.fromhex(f"2208{parent_hex}")  # parent_span_id (4)
    else:
        head = bytes.fromhex(f"{ids}2208{parent_hex}" if parent_hex else ids)
    name_kind, attributes, error = _request_parts_of(method, route, status)
    return b"".join(
        (
            head,
            name_kind,
            _TIMES.pack(0x39, start, 0x41, end),
            attributes,
            _request_id(rid) if rid else b"",
            error,
            # Only an incoming traceparent names a request span's parent: a remote one.
            _REMOTE_PARENT if parent_hex else _LOCAL_PARENT,
        )
    )


def encode_resource(attributes: Mapping[str, object]) -> bytes:
    """ResourceSpans.resource (1): a Resource with its attributes (1)."""
    return _field(b"\x0a", b"".join(_key_values(b"\x0a", attributes)))


def encode_scope(name: str, version: str = "") -> bytes:
    """ScopeSpans.scope (1): an InstrumentationScope, name (1) and version (2)."""
    scope = _field(b"\x0a", name.encode())
    if version:
        scope += _field(b"\x12", version.encode())
    return _field(b"\x0a", scope)


def encode_request(
    resource: bytes, scope: bytes, spans: Iterable[RecordingSpan | RequestRecord]
) -> bytes:
    """An ExportTraceServiceRequest: one ResourceSpans holding one ScopeSpans of `spans`."""
    parts = [scope]
    for span in spans:
        encoded = (
            encode_span(span) if isinstance(span, RecordingSpan) else encode_request_span(span)
        )
        size = len(encoded)
        parts += (b"\x12", _SHORT[size] if size < 1024 else _varint(size), encoded)  # spans (2)
    scope_spans = b"".join(parts)
    return _field(b"\x0a", resource + _field(b"\x12", scope_spans))

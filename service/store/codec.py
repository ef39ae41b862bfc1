"""JSON encoding of the records a store keeps, shared by every backend.

Datetimes are written as ISO 8601 in UTC and always read back timezone-aware UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TypeVar

from cattrs.preconf.json import JsonConverter, make_converter

T = TypeVar("T")


def as_utc(moment: datetime) -> datetime:
    """`moment` as an aware UTC datetime; a naive datetime is a bug, never a guess."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()} cannot be stored")
    return moment.astimezone(UTC)


def _parse_datetime(value: object, _: object) -> datetime:
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO 8601 string, got {type(value).__name__}")
    return as_utc(datetime.fromisoformat(value))


def _make_converter() -> JsonConverter:
    converter = make_converter()
    converter.register_unstructure_hook(datetime, lambda moment: as_utc(moment).isoformat())
    converter.register_structure_hook(datetime, _parse_datetime)
    return converter


converter = _make_converter()


def dumps(record: object) -> str:
    """Compact JSON of an attrs record (Booking, StoredResponse, Delivery, ...)."""
    return converter.dumps(record, separators=(",", ":"), ensure_ascii=False)


def loads(text: str | bytes, cls: type[T]) -> T:
    """The record of type `cls` that `dumps` wrote."""
    return converter.loads(text, cls)

"""How every backend encodes what it keeps: instants as integer microseconds, records as JSON.

Instants in indexes and columns are integer microseconds since the Unix epoch (UTC):
exact, and compared numerically. Datetimes inside JSON records are ISO 8601 in UTC.
Both are always read back timezone-aware UTC.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Final, TypeVar

from cattrs.preconf.json import JsonConverter, make_converter

T = TypeVar("T")


def as_utc(moment: datetime) -> datetime:
    """`moment` as an aware UTC datetime; a naive datetime is a bug, never a guess."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"naive datetime {moment.isoformat()} cannot be stored")
    return moment.astimezone(UTC)


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def to_us(moment: datetime) -> int:
    """`moment` as integer microseconds since the epoch."""
    return (as_utc(moment) - _EPOCH) // _MICROSECOND


def from_us(value: int | str) -> datetime:
    """The instant `to_us` encoded (a decimal string is accepted, as Redis answers)."""
    return _EPOCH + timedelta(microseconds=int(value))


def from_ms(value: int | str) -> datetime:
    """An instant given in milliseconds since the epoch (the Redis clock)."""
    return _EPOCH + timedelta(milliseconds=int(value))


def after_us(moment: datetime, seconds: float) -> int:
    """`seconds` after `moment`, as `to_us` encodes it."""
    return to_us(moment + timedelta(seconds=seconds))


def ms(seconds: float) -> int:
    """A duration as whole milliseconds, at least one (what PEXPIRE takes)."""
    return max(1, math.ceil(seconds * 1000))


def now() -> datetime:
    return datetime.now(UTC)


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

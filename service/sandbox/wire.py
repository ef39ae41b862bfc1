"""Vyte's wire conventions: ObjectId-style ids, UTC timestamps, errors and body parsing."""

from __future__ import annotations

import itertools
import os
import re
import time
from datetime import UTC, datetime
from typing import Any, TypeAlias
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

OBJECT_ID = re.compile(r"^[0-9a-f]{24}$")

JSON: TypeAlias = dict[str, Any]

_machine = os.urandom(5).hex()
_counter = itertools.count(int.from_bytes(os.urandom(3), "big"))


class VyteError(Exception):
    """An error Vyte reports with a status code; the body is informative only."""

    status = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(VyteError):
    status = 400


class Unauthorized(VyteError):
    status = 401


class NotFound(VyteError):
    status = 404


def new_object_id() -> str:
    """A MongoDB-style id: creation second, a per-process random part and a counter."""
    return f"{int(time.time()) & 0xFFFFFFFF:08x}{_machine}{next(_counter) & 0xFFFFFF:06x}"


def now() -> datetime:
    """The current instant at the millisecond precision Vyte stores."""
    current = datetime.now(UTC)
    return current.replace(microsecond=current.microsecond // 1000 * 1000)


def timestamp(instant: datetime) -> str:
    """`2020-09-02T08:00:00.000Z`, the form Vyte returns for stored instants."""
    utc = instant.astimezone(UTC)
    return f"{utc:%Y-%m-%dT%H:%M:%S}.{utc.microsecond // 1000:03d}Z"


def local_time(instant: datetime, zone: ZoneInfo) -> str:
    """`2020-10-01T09:00:00+02:00`, the form of slot boundaries."""
    return instant.astimezone(zone).isoformat(timespec="seconds")


def zone_named(name: object, field: str) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise BadRequest(f"{field} must be an IANA time zone name")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as err:
        raise BadRequest(f"{field}: unknown time zone {name!r}") from err


def optional_str(body: JSON, key: str, field: str) -> str | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"{field} must be a string")
    return value


def optional_bool(body: JSON, key: str, field: str, default: bool) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise BadRequest(f"{field} must be a boolean")
    return value


def objects(value: object, field: str, *, single_allowed: bool) -> list[JSON]:
    """A list of JSON objects; some Vyte fields also take a lone object in place of a list."""
    if value is None:
        return []
    if single_allowed and isinstance(value, dict):
        return [value]
    if not isinstance(value, list):
        raise BadRequest(f"{field} must be a list")
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise BadRequest(f"{field}[{index}] must be an object")
    return value

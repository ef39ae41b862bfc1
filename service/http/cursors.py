"""Listing cursors: where the next page starts, opaque to callers and tamper-evident.

A cursor is `base64url(position "." filters-digest, MAC)`: the (start, id) of the last booking
listed, a digest of the caller and filters it was issued for, and an HMAC-SHA256 over both.
The MAC key is derived from the configuration every replica shares (API_TOKENS and
WEBHOOK_SECRET), so any replica takes another's cursor; rotating either retires the cursors
issued before (400: start the listing again).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta

from service.commands import BookingQuery
from service.config import Settings
from service.errors import FieldError, ValidationFailed

_MAC_BYTES = 16
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def cursor_key(settings: Settings) -> bytes:
    """The MAC key: the same on every replica of one configuration, secret like its tokens."""
    material = hashlib.sha256(b"booking-gateway listing cursor v1")
    for token, caller in sorted(settings.api_tokens.items()):
        for part in (token.encode(), caller.encode()):
            material.update(len(part).to_bytes(4, "big") + part)
    for secret in settings.webhook_secrets:
        material.update(len(secret).to_bytes(4, "big") + secret)
    return material.digest()


def _us(moment: datetime) -> int:
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _filters(caller: str, query: BookingQuery) -> str:
    """What a cursor is bound to: the caller and every filter (not the page size)."""
    bounds = [None if b is None else _us(b) for b in (query.start_from, query.start_to)]
    text = json.dumps(
        [caller, query.organizer, sorted(query.statuses), *bounds], separators=(",", ":")
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_BYTES]


def issue(key: bytes, caller: str, query: BookingQuery, after: tuple[datetime, str]) -> str:
    """The cursor of the page that follows `after` for this caller and these filters."""
    start, booking_id = after
    payload = f"{_us(start)}.{booking_id}.{_filters(caller, query)}".encode()
    return base64.urlsafe_b64encode(payload + _mac(key, payload)).decode().rstrip("=")


def _refused(message: str) -> ValidationFailed:
    return ValidationFailed([FieldError("cursor", message)])


def read(key: bytes, caller: str, query: BookingQuery, cursor: str) -> tuple[datetime, str]:
    """The position `cursor` names; 400 for a cursor this gateway did not issue, or one
    issued to another caller or for other filters."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError):
        raise _refused("not a cursor issued by this gateway") from None
    payload, mac = raw[:-_MAC_BYTES], raw[-_MAC_BYTES:]
    if len(raw) <= _MAC_BYTES or not hmac.compare_digest(mac, _mac(key, payload)):
        raise _refused("not a cursor issued by this gateway")
    start_us, booking_id, filters = payload.decode().split(".")
    if filters != _filters(caller, query):
        raise _refused("issued for other filters: keep the filters while paging")
    return _EPOCH + timedelta(microseconds=int(start_us)), booking_id

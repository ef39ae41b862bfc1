"""Rows of the SQLite store as records, and records as row parameters."""

from __future__ import annotations

import json
import sqlite3
from typing import Any, Final

from service.store import codec
from service.store.base import (
    Delivery,
    DeliveryStatus,
    IdempotencyRecord,
    IdempotencyState,
    Operation,
    OperationStatus,
    OperationType,
    StoredResponse,
    Subscription,
    UnresolvedCreate,
)


def optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def delivery_from(row: sqlite3.Row) -> Delivery:
    return Delivery(
        id=str(row["id"]),
        event_type=str(row["event_type"]),
        url=str(row["url"]),
        payload=str(row["payload"]),
        booking_id=optional_str(row["booking_id"]),
        status=DeliveryStatus(row["status"]),
        attempts=int(row["attempts"]),
        next_attempt_at=codec.from_us(row["next_attempt_us"]),
        last_error=optional_str(row["last_error"]),
        created_at=codec.from_us(row["created_us"]),
        updated_at=codec.from_us(row["updated_us"]),
        request_id=optional_str(row["request_id"]),
        caller=optional_str(row["caller"]),
        trace_context=optional_str(row["trace_context"]),
    )


def operation_from(row: sqlite3.Row) -> Operation:
    return Operation(
        id=str(row["id"]),
        type=OperationType(row["type"]),
        status=OperationStatus(row["status"]),
        caller=str(row["caller"]),
        booking_id=optional_str(row["booking_id"]),
        request=str(row["request"]),
        attempts=int(row["attempts"]),
        last_error=optional_str(row["last_error"]),
        maybe_sent=bool(row["maybe_sent"]),
        next_attempt_at=codec.from_us(row["next_attempt_us"]),
        created_at=codec.from_us(row["created_us"]),
        updated_at=codec.from_us(row["updated_us"]),
        request_id=optional_str(row["request_id"]),
        trace_context=optional_str(row["trace_context"]),
    )


def subscription_from(row: sqlite3.Row) -> Subscription:
    events: list[str] = json.loads(row["events"])
    return Subscription(
        id=str(row["id"]),
        url=str(row["url"]),
        events=tuple(events),
        caller=str(row["caller"]),
        created_at=codec.from_us(row["created_us"]),
    )


def idempotency_from(row: sqlite3.Row) -> IdempotencyRecord:
    response = row["response"]
    return IdempotencyRecord(
        caller=str(row["caller"]),
        key=str(row["key"]),
        fingerprint=str(row["fingerprint"]),
        state=IdempotencyState(row["state"]),
        response=None if response is None else codec.loads(response, StoredResponse),
        expires_at=codec.from_us(row["expires_us"]),
    )


def delivery_params(delivery: Delivery) -> tuple[object, ...]:
    return (
        delivery.id,
        delivery.event_type,
        delivery.url,
        delivery.payload,
        delivery.booking_id,
        delivery.status.value,
        delivery.attempts,
        codec.to_us(delivery.next_attempt_at),
        delivery.last_error,
        codec.to_us(delivery.created_at),
        codec.to_us(delivery.updated_at),
        delivery.request_id,
        delivery.caller,
        delivery.trace_context,
    )


INSERT_DELIVERY: Final = """
    INSERT INTO deliveries (id, event_type, url, payload, booking_id, status, attempts,
                            next_attempt_us, last_error, created_us, updated_us, request_id,
                            caller, trace_context)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (id) DO NOTHING
"""


def unresolved_from(row: sqlite3.Row) -> UnresolvedCreate:
    return UnresolvedCreate(
        id=str(row["id"]),
        caller=str(row["caller"]),
        command=str(row["command"]),
        idempotency_key=optional_str(row["idempotency_key"]),
        hold_id=str(row["hold_id"]),
        organizer=str(row["organizer"]),
        start=codec.from_us(row["start_us"]),
        end=codec.from_us(row["end_us"]),
        deadline=codec.from_us(row["deadline_us"]),
        next_check_at=codec.from_us(row["next_attempt_us"]),
        attempts=int(row["attempts"]),
        last_error=optional_str(row["last_error"]),
        created_at=codec.from_us(row["created_us"]),
        updated_at=codec.from_us(row["updated_us"]),
        request_id=optional_str(row["request_id"]),
        trace_context=optional_str(row["trace_context"]),
    )

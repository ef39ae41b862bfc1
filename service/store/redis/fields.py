"""Records of the Redis store as hash fields and script arguments, and back."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Final

from service.domain.booking import Booking
from service.store import codec
from service.store.base import (
    Delivery,
    DeliveryStatus,
    Operation,
    OperationStatus,
    OperationType,
    Subscription,
    UnresolvedCreate,
    organizer_key,
)

# Listing keys are "<start>:<id>", the start shifted to be positive and written with a
# fixed width, so that their byte order is the (start, id) order.
_LIST_SHIFT: Final = 10**18
_LIST_WIDTH: Final = 20


def _pairs(values: dict[str, str | None]) -> tuple[list[str], list[str]]:
    """Field/value strings to set, and the names of fields to delete (None values)."""
    fields: list[str] = []
    gone: list[str] = []
    for name, value in values.items():
        if value is None:
            gone.append(name)
        else:
            fields += (name, value)
    return fields, gone


def insert_args(record_id: str, group: str, values: dict[str, str | None]) -> list[str]:
    """What the Lua insert() reads: a new record has no field for a None value."""
    fields, _ = _pairs(values)
    return [record_id, group, str(len(fields)), *fields]


def update_args(record_id: str, group: str | None, values: dict[str, str | None]) -> list[str]:
    """What the Lua update() reads; group None keeps the record in its group."""
    fields, gone = _pairs(values)
    regroup = ["0", ""] if group is None else ["1", group]
    return [record_id, *regroup, str(len(fields)), *fields, str(len(gone)), *gone]


def flat_hash(flat: Sequence[str]) -> dict[str, str]:
    items = iter(flat)
    return dict(zip(items, items, strict=True))


def delivery_group(delivery: Delivery) -> str:
    """One booking's messages to one URL; '' for a delivery that has no order to keep."""
    if delivery.booking_id is None:
        return ""
    return json.dumps([delivery.url, delivery.booking_id], ensure_ascii=False)


def operation_group(operation: Operation) -> str:
    if operation.booking_id is None:
        return ""
    return json.dumps(operation.booking_id, ensure_ascii=False)


def _delivery_insert_args(delivery: Delivery) -> list[str]:
    values: dict[str, str | None] = {
        "id": delivery.id,
        "event_type": delivery.event_type,
        "url": delivery.url,
        "payload": delivery.payload,
        "booking_id": delivery.booking_id,
        "status": delivery.status.value,
        "attempts": str(delivery.attempts),
        "next_attempt_at": str(codec.to_us(delivery.next_attempt_at)),
        "last_error": delivery.last_error,
        "created_at": str(codec.to_us(delivery.created_at)),
        "updated_at": str(codec.to_us(delivery.updated_at)),
        "request_id": delivery.request_id,
        "caller": delivery.caller,
        "trace_context": delivery.trace_context,
    }
    return insert_args(delivery.id, delivery_group(delivery), values)


def deliveries_args(deliveries: Sequence[Delivery]) -> list[str]:
    """What a script's insert loop reads: the count, then each delivery's insert()."""
    args = [str(len(deliveries))]
    for delivery in deliveries:
        args += _delivery_insert_args(delivery)
    return args


def delivery_from(f: dict[str, str]) -> Delivery:
    return Delivery(
        id=f["id"],
        event_type=f["event_type"],
        url=f["url"],
        payload=f["payload"],
        booking_id=f.get("booking_id"),
        status=DeliveryStatus(f["status"]),
        attempts=int(f["attempts"]),
        next_attempt_at=codec.from_us(f["next_attempt_at"]),
        last_error=f.get("last_error"),
        created_at=codec.from_us(f["created_at"]),
        updated_at=codec.from_us(f["updated_at"]),
        request_id=f.get("request_id"),
        caller=f.get("caller"),
        trace_context=f.get("trace_context"),
    )


def operation_values(operation: Operation) -> dict[str, str | None]:
    return {
        "type": operation.type.value,
        "status": operation.status.value,
        "caller": operation.caller,
        "booking_id": operation.booking_id,
        "request": operation.request,
        "attempts": str(operation.attempts),
        "last_error": operation.last_error,
        "maybe_sent": "1" if operation.maybe_sent else "0",
        "next_attempt_at": str(codec.to_us(operation.next_attempt_at)),
        "updated_at": str(codec.to_us(operation.updated_at)),
    }


def operation_from(f: dict[str, str]) -> Operation:
    return Operation(
        id=f["id"],
        type=OperationType(f["type"]),
        status=OperationStatus(f["status"]),
        caller=f["caller"],
        booking_id=f.get("booking_id"),
        request=f["request"],
        attempts=int(f["attempts"]),
        last_error=f.get("last_error"),
        maybe_sent=f["maybe_sent"] == "1",
        next_attempt_at=codec.from_us(f["next_attempt_at"]),
        created_at=codec.from_us(f["created_at"]),
        updated_at=codec.from_us(f["updated_at"]),
        request_id=f.get("request_id"),
        trace_context=f.get("trace_context"),
    )


def subscription_identity(subscription: Subscription) -> str:
    """What two subscriptions of one caller share when they are the same (`same_as`)."""
    return json.dumps([subscription.url, sorted(set(subscription.events))], ensure_ascii=False)


def list_prefix(start: datetime) -> str:
    """The part of a listing key that orders by start."""
    return f"{codec.to_us(start) + _LIST_SHIFT:0{_LIST_WIDTH}d}"


def list_key(start: datetime, booking_id: str) -> str:
    return f"{list_prefix(start)}:{booking_id}"


def list_position(key: str) -> tuple[datetime, str]:
    """The (start, id) a listing key stands for."""
    return codec.from_us(int(key[:_LIST_WIDTH]) - _LIST_SHIFT), key[_LIST_WIDTH + 1 :]


def put_booking_args(booking: Booking, expected_version: int | None) -> list[str]:
    """What the Lua put_booking() reads (deliveries not included)."""
    return [
        booking.id,
        "" if expected_version is None else str(expected_version),
        str(booking.version),
        booking.organizer,
        organizer_key(booking.organizer),
        booking.caller or "",
        str(codec.to_us(booking.start)),
        str(codec.to_us(booking.end)),
        booking.status.value,
        "1" if booking.active else "0",
        codec.dumps(booking),
        list_key(booking.start, booking.id),
    ]


def unresolved_insert_args(record: UnresolvedCreate) -> list[str]:
    """What the Lua insert() reads for an unresolved create (a queue item of no group)."""
    values: dict[str, str | None] = {
        "id": record.id,
        "status": "pending",  # in its queue until finished, then deleted
        "caller": record.caller,
        "command": record.command,
        "idempotency_key": record.idempotency_key,
        "hold_id": record.hold_id,
        "organizer": record.organizer,
        "start": str(codec.to_us(record.start)),
        "end": str(codec.to_us(record.end)),
        "deadline": str(codec.to_us(record.deadline)),
        "next_attempt_at": str(codec.to_us(record.next_check_at)),
        "attempts": str(record.attempts),
        "last_error": record.last_error,
        "created_at": str(codec.to_us(record.created_at)),
        "updated_at": str(codec.to_us(record.updated_at)),
        "request_id": record.request_id,
        "trace_context": record.trace_context,
    }
    return insert_args(record.id, "", values)


def unresolved_from(f: dict[str, str]) -> UnresolvedCreate:
    return UnresolvedCreate(
        id=f["id"],
        caller=f["caller"],
        command=f["command"],
        idempotency_key=f.get("idempotency_key"),
        hold_id=f["hold_id"],
        organizer=f["organizer"],
        start=codec.from_us(f["start"]),
        end=codec.from_us(f["end"]),
        deadline=codec.from_us(f["deadline"]),
        next_check_at=codec.from_us(f["next_attempt_at"]),
        attempts=int(f["attempts"]),
        last_error=f.get("last_error"),
        created_at=codec.from_us(f["created_at"]),
        updated_at=codec.from_us(f["updated_at"]),
        request_id=f.get("request_id"),
        trace_context=f.get("trace_context"),
    )

"""Records of the Redis store as hash fields and script arguments, and back."""

from __future__ import annotations

import json
from collections.abc import Sequence

from service.store import codec
from service.store.base import (
    Delivery,
    DeliveryStatus,
    Operation,
    OperationStatus,
    OperationType,
    Subscription,
)


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


def _deliveryinsert_args(delivery: Delivery) -> list[str]:
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
    }
    return insert_args(delivery.id, delivery_group(delivery), values)


def deliveries_args(deliveries: Sequence[Delivery]) -> list[str]:
    """What a script's insert loop reads: the count, then each delivery's insert()."""
    args = [str(len(deliveries))]
    for delivery in deliveries:
        args += _deliveryinsert_args(delivery)
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
    )


def subscription_identity(subscription: Subscription) -> str:
    """What two subscriptions of one caller share when they are the same (`same_as`)."""
    return json.dumps([subscription.url, sorted(set(subscription.events))], ensure_ascii=False)

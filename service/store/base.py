"""The Store protocol every backend implements, and the records it keeps.

One protocol, several backends (SQLite embedded, Redis shared); the contract
suite in tests/unit/test_store_contract.py is what "implements" means.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

import attrs

from service.domain.booking import Booking

# Seconds an Idempotency-Key (and what a create under it left for its retries) is kept.
IDEMPOTENCY_TTL = 24 * 3600.0


class StoreUnavailable(Exception):
    """The store cannot be reached; the request needs it, so it fails with 503."""


class IdempotencyState(StrEnum):
    IN_FLIGHT = "in_flight"
    DONE = "done"


@attrs.frozen
class StoredResponse:
    """A response kept for idempotent replay."""

    status: int
    body: str
    headers: tuple[tuple[str, str], ...] = ()


@attrs.frozen
class IdempotencyRecord:
    caller: str
    key: str
    fingerprint: str
    state: IdempotencyState
    response: StoredResponse | None
    expires_at: datetime


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


@attrs.frozen
class Delivery:
    """One webhook message to one URL; `id` is the stable `webhook-id`."""

    id: str
    event_type: str
    url: str
    payload: str  # the exact JSON body: signatures cover the same bytes on every attempt
    booking_id: str | None
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    # The X-Request-ID of the request that caused the change, sent along with every attempt.
    request_id: str | None = None
    # The caller whose URL this is (the booking's or the subscription's): only it lists and
    # re-sends the delivery.
    caller: str | None = None


@attrs.frozen
class Subscription:
    id: str
    url: str
    events: tuple[str, ...]
    caller: str
    created_at: datetime


class OperationType(StrEnum):
    CREATE = "create"
    CONFIRM = "confirm"
    CANCEL = "cancel"


class OperationStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


@attrs.frozen
class Operation:
    """An accepted asynchronous request, applied to Vyte by a worker."""

    id: str
    type: OperationType
    status: OperationStatus
    caller: str
    booking_id: str | None
    request: str  # JSON of what to apply (the validated create body, or nothing for confirm/cancel)
    attempts: int
    last_error: str | None
    # True once a create may have reached Vyte: look for the event before re-sending.
    maybe_sent: bool
    next_attempt_at: datetime
    created_at: datetime
    updated_at: datetime
    # The X-Request-ID of the accepting request: the worker works under it.
    request_id: str | None = None


@runtime_checkable
class SharedCache(Protocol):
    """A cache every replica sees (the Redis store); entries expire by themselves."""

    async def cache_get(self, key: str) -> tuple[str, float] | None:
        """The value under `key` and the seconds it has left, or None."""

    async def cache_set(self, key: str, value: str, ttl: float) -> None: ...


class Store(Protocol):
    """Durable state of the gateway. Every method is atomic on its own."""

    async def ping(self) -> None:
        """Raise StoreUnavailable when the backend cannot serve requests."""

    async def close(self) -> None: ...

    # -- bookings ---------------------------------------------------------------------
    async def get_booking(self, booking_id: str) -> Booking | None: ...

    async def put_booking(
        self,
        booking: Booking,
        *,
        expected_version: int | None,
        release_hold: str | None = None,
        deliveries: Sequence[Delivery] = (),
    ) -> bool:
        """Write `booking` if the stored version is `expected_version` (None: absent).

        In the same atomic step, release the hold `release_hold` and enqueue
        `deliveries`. Returns False, changing nothing, when the version check fails.
        """

    async def active_bookings(
        self, organizers: Collection[str], start: datetime, end: datetime
    ) -> list[Booking]:
        """Requested or confirmed bookings of these organizers that overlap [start, end),
        ordered by (start, id): one round trip for all of an availability query's people."""

    # -- no double booking --------------------------------------------------------------
    async def acquire_hold(
        self, organizer: str, start: datetime, end: datetime, hold_id: str, ttl: float
    ) -> bool:
        """Reserve [start, end) for `organizer` unless an unexpired hold or an active
        booking overlaps it. The hold lapses after `ttl` seconds if never released.

        A hold taken again under its own id is renewed (for the new range), so a retry
        never has to let go of its own hold, even for a moment, to take it back."""

    async def release_hold(self, hold_id: str) -> None: ...

    # -- idempotency ----------------------------------------------------------------------
    async def begin_idempotent(
        self, caller: str, key: str, fingerprint: str, lease: float
    ) -> IdempotencyRecord | None:
        """Claim (caller, key): None when this call now owns it (an in-flight marker
        that lapses after `lease` seconds), else the record already there."""

    async def finish_idempotent(
        self, caller: str, key: str, response: StoredResponse, ttl: float
    ) -> None:
        """Store the final response for `ttl` seconds."""

    async def abandon_idempotent(self, caller: str, key: str) -> None:
        """Forget the in-flight marker (the answer was not worth keeping, e.g. a 5xx)."""

    # -- outbox ---------------------------------------------------------------------------
    async def enqueue_deliveries(self, deliveries: Sequence[Delivery]) -> None: ...

    async def claim_deliveries(
        self, now: datetime, limit: int, owner: str, lease: float
    ) -> list[Delivery]:
        """Due pending deliveries, claimed for `lease` seconds by `owner`.

        Per (url, booking_id) only the oldest pending delivery is eligible, so one
        booking's events reach a receiver in order.
        """

    async def update_delivery(self, delivery: Delivery) -> None:
        """Save the outcome of an attempt and drop the claim."""

    async def get_delivery(self, delivery_id: str) -> Delivery | None: ...

    async def list_deliveries(
        self, status: DeliveryStatus | None, limit: int, caller: str | None = None
    ) -> list[Delivery]:
        """The newest deliveries first, of `status` and `caller` when given."""

    # -- subscriptions ----------------------------------------------------------------------
    async def add_subscription(self, subscription: Subscription) -> None: ...

    async def list_subscriptions(self) -> list[Subscription]: ...

    async def delete_subscription(self, subscription_id: str) -> bool: ...

    # -- asynchronous operations ------------------------------------------------------------
    async def add_operation(self, operation: Operation) -> None: ...

    async def get_operation(self, operation_id: str) -> Operation | None: ...

    async def claim_operations(
        self, now: datetime, limit: int, owner: str, lease: float
    ) -> list[Operation]:
        """Due pending operations, claimed for `lease` seconds by `owner`.

        Per booking_id only the oldest pending operation is eligible (operations
        with no booking_id yet are independent), so confirm-then-cancel keeps order.
        """

    async def update_operation(
        self, operation: Operation, deliveries: Sequence[Delivery] = ()
    ) -> None:
        """Save the operation's new state and drop the claim; in the same atomic step,
        enqueue `deliveries` (the webhooks that announce it)."""

    async def purge_finished(self, before: datetime) -> int:
        """Forget deliveries delivered or failed and operations succeeded or failed whose
        last change is older than `before`; returns how many records went."""

    async def pending_counts(self) -> tuple[int, int]:
        """How many deliveries and how many operations are pending, in the whole store."""

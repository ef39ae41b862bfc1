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

from service.domain.booking import Booking, BookingStatus

# Seconds an Idempotency-Key (and what a create under it left for its retries) is kept.
IDEMPOTENCY_TTL = 24 * 3600.0


def organizer_key(organizer: str) -> str:
    """How organizers are compared: emails case-insensitively (ids are lower-case hex)."""
    return organizer.lower()


class StoreUnavailable(Exception):
    """The store cannot be reached; the request needs it, so it fails with 503."""


class SubscriptionLimitReached(Exception):
    """The caller already holds as many subscriptions as it may (409 subscription-limit)."""

    def __init__(self, caller: str, limit: int) -> None:
        super().__init__(f"caller {caller!r} already holds {limit} subscriptions")
        self.caller = caller
        self.limit = limit


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
    # The W3C `traceparent` of the change that caused it: each attempt continues that trace.
    trace_context: str | None = None


@attrs.frozen
class Subscription:
    id: str
    url: str
    events: tuple[str, ...]
    caller: str
    created_at: datetime

    def same_as(self, other: Subscription) -> bool:
        """Whether `other` asks for the same thing: same caller, URL and set of events."""
        return (
            self.caller == other.caller
            and self.url == other.url
            and set(self.events) == set(other.events)
        )


class OperationType(StrEnum):
    CREATE = "create"
    CONFIRM = "confirm"
    CANCEL = "cancel"
    RESCHEDULE = "reschedule"


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
    # The W3C `traceparent` of the accepting request: the worker continues its trace.
    trace_context: str | None = None


@attrs.frozen
class BookingPage:
    """One page of a booking listing, in (start, id) order.

    `next_after` is where the next page starts (pass it as `after`), None when nothing
    follows. A page may hold fewer than `limit` bookings and still have a `next_after`:
    a backend may stop looking after a bounded number of records that did not match.
    """

    bookings: list[Booking]
    next_after: tuple[datetime, str] | None


@attrs.frozen
class UnresolvedCreate:
    """A create whose outcome is unknown: Vyte may hold its event, or may not.

    Kept until a reconciler decides: the event found in Vyte (then it becomes the
    caller's booking) or not found by `deadline` (then its hold is released). While
    it exists its hold does not lapse, so nothing else is booked into its time.
    """

    id: str
    caller: str
    command: str  # JSON of the validated create command (store.codec)
    idempotency_key: str | None
    hold_id: str
    organizer: str
    start: datetime
    end: datetime
    deadline: datetime  # now + UNKNOWN_OUTCOME_TIMEOUT when recorded
    next_check_at: datetime  # when the reconciler may look (again)
    attempts: int  # looks made so far
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    request_id: str | None = None
    trace_context: str | None = None


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
    async def get_booking(self, booking_id: str) -> Booking | None:
        """The booking with this id, with its owner (`caller`; None: adopted from Vyte or
        written before owners existed, so only admins see it)."""

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

    async def booking_marks(self, organizers: Sequence[str]) -> tuple[str, ...]:
        """For each of `organizers`, in order, a mark that changes whenever a booking of
        theirs is written (any status, any replica), by the time that write has returned;
        "" for one whose bookings were never written while the store kept marks.

        An availability answer computed after reading the marks can be reused while they
        stay the same: no write came since that could change its own-booking part. A mark
        never comes back after a change, not even across restarts (the SQLite store keeps
        them in its process, which is the only one writing its file; the Redis store keeps
        them beside the bookings)."""

    async def list_bookings(
        self,
        *,
        caller: str | None,
        organizer: str | None = None,
        statuses: Collection[BookingStatus] | None = None,
        start_from: datetime | None = None,
        start_to: datetime | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int = 50,
    ) -> BookingPage:
        """Bookings in (start, id) order, at most `limit` of them, from an index.

        `caller` None lists every booking (admins), else only those it owns. `organizer`
        is compared case-insensitively; `statuses` None or empty means any. Only bookings
        with `start_from <= start < start_to` (each bound optional) and (start, id)
        strictly after `after` are listed: keyset paging, so a booking that exists
        throughout a walk with the same start is listed exactly once, whatever else is
        written meanwhile.
        """

    # -- no double booking --------------------------------------------------------------
    async def acquire_hold(
        self,
        organizer: str,
        start: datetime,
        end: datetime,
        hold_id: str,
        ttl: float,
        *,
        ignore_booking: str | None = None,
    ) -> bool:
        """Reserve [start, end) for `organizer` unless an unexpired hold or an active
        booking overlaps it. The hold lapses after `ttl` seconds if never released.

        A hold taken again under its own id is renewed (for the new range), so a retry
        never has to let go of its own hold, even for a moment, to take it back; a hold
        tied to an unresolved create stays tied (it does not start to lapse).

        `ignore_booking` names a booking whose own current time counts as free (a
        reschedule moving it into time that overlaps where it is now). Other holds
        always count: two reschedules, or a create and a reschedule, into overlapping
        time get one hold between them. Writing the rescheduled booking with
        `put_booking(..., release_hold=hold_id)` frees its old time in the same step."""

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
    async def add_subscription(
        self, subscription: Subscription, limit: int | None = None
    ) -> tuple[Subscription, bool]:
        """Add `subscription` unless its caller already has the same one (`same_as`).

        Returns (the subscription now stored, True) when added, or (the existing
        identical one, False). Raises SubscriptionLimitReached, adding nothing, when the
        caller already holds `limit` subscriptions (None: no limit). One atomic step,
        so concurrent adds never pass the limit or store a duplicate.
        """

    async def list_subscriptions(self, caller: str | None = None) -> list[Subscription]:
        """Subscriptions in the order they were added: all of them, or `caller`'s own."""

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

    # -- creates whose outcome is unknown ----------------------------------------------------
    async def add_unresolved(self, record: UnresolvedCreate) -> bool:
        """Record `record` durably and tie its hold to it, in one step.

        The hold `record.hold_id` stops lapsing until `finish_unresolved`; a hold that
        lapsed already is taken again for [record.start, record.end) when that time is
        still free. Returns whether the hold is held now (False: the time went to another
        hold or booking meanwhile; the record is written all the same, so the reconciler
        still looks for the event). A record id already stored is left as it is.
        """

    async def get_unresolved(self, record_id: str) -> UnresolvedCreate | None: ...

    async def claim_unresolved(
        self, now: datetime, limit: int, owner: str, lease: float
    ) -> list[UnresolvedCreate]:
        """Records whose `next_check_at` has come, oldest first, claimed for `lease`
        seconds by `owner`: while the lease runs no other replica gets them."""

    async def update_unresolved(self, record: UnresolvedCreate) -> None:
        """Save a look that decided nothing (attempts, next_check_at, last_error) and drop
        the claim; the record and its hold stay."""

    async def finish_unresolved(
        self,
        record_id: str,
        *,
        booking: Booking | None = None,
        expected_version: int | None = None,
        deliveries: Sequence[Delivery] = (),
        response: StoredResponse | None = None,
    ) -> bool:
        """Close the record in one atomic step.

        With `booking` (the event was found): write it as `put_booking` would (version
        check against `expected_version`), enqueue `deliveries` and, when the record has
        an idempotency key and `response` is given, keep `response` for that key's replay
        for IDEMPOTENCY_TTL. Without `booking` (not found by the deadline): nothing is
        written. Either way the record goes and its hold is released. Returns False,
        changing nothing, when the version check fails or the record is gone.

        `response` is kept only while the key's record is there (its in-flight marker has
        not lapsed), as `finish_idempotent` does.
        """

    # -- resync -----------------------------------------------------------------------------
    async def claim_resync(
        self, now: datetime, limit: int, owner: str, interval: float
    ) -> list[Booking]:
        """Up to `limit` active bookings (requested or confirmed, ending after `now`) not
        handed out in the last `interval` seconds, least recently handed out first (then
        by id; a new booking counts as never handed out); each
        is now handed to `owner` and to nobody else until `interval` has passed.

        Work is proportional to what is handed out: a booking that ended leaves the
        rotation (written again, it rejoins). `interval` must be positive (ValueError)."""

    async def purge_finished(self, before: datetime) -> int:
        """Forget deliveries delivered or failed and operations succeeded or failed whose
        last change is older than `before`; returns how many records went."""

    async def pending_counts(self) -> tuple[int, int]:
        """How many deliveries and how many operations are pending, in the whole store."""

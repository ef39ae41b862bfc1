"""Bookings: check the slot, hold it, create in Vyte; read, confirm, cancel."""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import attrs

from service.availability import AvailabilityService
from service.budget import claim_lease
from service.commands import NewBooking, encode_booking
from service.config import Settings
from service.domain.booking import (
    Booking,
    BookingStatus,
    TransitionRefused,
    plan_transition,
)
from service.domain.participant import parse_timezone
from service.errors import (
    BookingCancelled,
    BookingNotFound,
    Conflict,
    FieldError,
    IdempotencyKeyInFlight,
    SlotUnavailable,
    ValidationFailed,
)
from service.logging import current_request_id
from service.ports import Outbox
from service.store.base import IDEMPOTENCY_TTL, Store, StoredResponse, UnresolvedCreate
from service.tracing import current_trace_context
from service.vyte import errors as vyte_errors
from service.vyte.client import VyteClient
from service.vyte.mapping import (
    booking_from_event,
    event_times,
    new_event,
    status_of,
    surely_not_created,
    upstream_problem,
)
from service.vyte.models import Event

_BOOKING_ID = re.compile(r"^[0-9a-fA-F]{24}$")

# What a create under a key leaves for the reconciler to answer with, once it knows.
Answer = Callable[[Booking], StoredResponse]


def look_interval(unknown_outcome_timeout: float) -> float:
    """Seconds between two looks in Vyte for a create whose outcome is unknown: a few
    seconds, and many looks within even a short UNKNOWN_OUTCOME_TIMEOUT."""
    return min(2.0, max(0.05, unknown_outcome_timeout / 20))


def check_booking_id(booking_id: str) -> str:
    if not _BOOKING_ID.match(booking_id):
        raise BookingNotFound(f"no booking {booking_id[:64]!r}")
    return booking_id.lower()


@attrs.define
class _Sending:
    """Whether a create may have reached Vyte (sent, and not refused)."""

    maybe_sent: bool = False


class BookingService:
    """The booking use-cases; every change is stored with its outbound webhooks."""

    def __init__(
        self,
        vyte: VyteClient,
        store: Store,
        availability: AvailabilityService,
        settings: Settings,
        outbox: Outbox,
    ) -> None:
        self._vyte = vyte
        self._store = store
        self._availability = availability
        self._settings = settings
        self._outbox = outbox
        # Told when a create's outcome became unknown: the reconciler looks at once.
        self.on_unknown: Callable[[], None] = lambda: None

    async def save(
        self,
        booking: Booking,
        event_type: str,
        expected_version: int | None,
        *,
        release_hold: str | None = None,
        subscriptions: bool = True,
        unresolved: str | None = None,
        answer: StoredResponse | None = None,
    ) -> bool:
        """Write `booking` with the webhooks announcing it (`event_type`), if the stored
        version is still `expected_version`; once committed, they are sent at once.

        `unresolved` names the record of a create this booking settles: closed (its hold
        released, `answer` kept for its key) in the same step."""
        deliveries = await self._outbox.plan(
            event_type, booking, booking.updated_at, subscriptions=subscriptions
        )
        saved = False
        if unresolved is not None:
            saved = await self._store.finish_unresolved(
                unresolved,
                booking=booking,
                expected_version=expected_version,
                deliveries=deliveries,
                response=answer,
            )
        if not saved:
            # No record (gone, or never written): a plain write.
            saved = await self._store.put_booking(
                booking,
                expected_version=expected_version,
                release_hold=release_hold,
                deliveries=deliveries,
            )
        if saved and deliveries:
            self._outbox.due()
        return saved

    @property
    def hold_ttl(self) -> float:
        # Long enough to cover the whole request; a crashed replica's hold lapses after it.
        return claim_lease(self._settings.request_budget, self._settings.vyte_timeout)

    async def check_slot(self, req: NewBooking) -> None:
        """409 unless [start, end) lies inside the organizer's fresh Vyte windows."""
        zone = parse_timezone(req.timezone)
        assert zone is not None
        minutes = math.ceil((req.end - req.start).total_seconds() / 60)
        try:
            free = await self._availability.free_windows(
                req.organizer,
                duration=max(5, minutes),
                first=req.start.astimezone(zone).date(),
                last=req.end.astimezone(zone).date(),
                timezone=req.timezone,
                fresh=True,
            )
        except (vyte_errors.VyteRejected, vyte_errors.VyteNotFound):
            raise ValidationFailed(
                [FieldError("organizer", "Vyte does not know this organizer")]
            ) from None
        except vyte_errors.VyteError as err:
            raise upstream_problem(err) from err
        start, end = int(req.start.timestamp()), int(req.end.timestamp())
        if not any(s <= start and end <= e for s, e in free):
            raise SlotUnavailable("the organizer is not free for the whole slot")

    async def create(
        self,
        caller: str,
        req: NewBooking,
        hold: str | None = None,
        sending: _Sending | None = None,
        *,
        key: str | None = None,
        answer: Answer | None = None,
    ) -> Booking:
        """Check, hold, create in Vyte, record. `hold` names the hold (default: a new id);
        `sending` learns whether the event may have reached Vyte.

        Before anything is sent, the create is recorded as unresolved, its hold tied to
        the record: if its outcome is never learnt here (Vyte's answer lost, this process
        killed), a reconciler looks for the event in Vyte until it knows, and the slot
        stays taken meanwhile. `key` and `answer` say where the reconciler's finding is
        kept for replay (an Idempotency-Key, or an operation's marker)."""
        if req.check_availability:
            await self.check_slot(req)
        hold = hold or uuid.uuid4().hex
        if not await self._store.acquire_hold(
            req.organizer.key, req.start, req.end, hold, self.hold_ttl
        ):
            raise SlotUnavailable("the slot overlaps another booking of this organizer")
        record = self._unresolved(caller, req, hold, key)
        if not await self._store.add_unresolved(record):
            await self._store.finish_unresolved(record.id)
            raise SlotUnavailable("the slot overlaps another booking of this organizer")
        return await self._send(caller, req, record, sending or _Sending(), answer)

    def _unresolved(
        self, caller: str, req: NewBooking, hold: str, key: str | None
    ) -> UnresolvedCreate:
        now = datetime.now(UTC)
        timeout = self._settings.unknown_outcome_timeout
        return UnresolvedCreate(
            id=hold,
            caller=caller,
            command=encode_booking(req),
            idempotency_key=key,
            hold_id=hold,
            organizer=req.organizer.key,
            start=req.start,
            end=req.end,
            deadline=now + timedelta(seconds=timeout),
            # A create usually answers well within this; a slower one is looked for while
            # it runs, which finds it as soon as Vyte has it.
            next_check_at=now + timedelta(seconds=look_interval(timeout)),
            attempts=0,
            last_error=None,
            created_at=now,
            updated_at=now,
            request_id=current_request_id(),
            trace_context=current_trace_context(),
        )

    async def _send(
        self,
        caller: str,
        req: NewBooking,
        record: UnresolvedCreate,
        sending: _Sending,
        answer: Answer | None,
    ) -> Booking:
        sending.maybe_sent = True
        try:
            event = await self._vyte.create_event(new_event(req))
        except (vyte_errors.VyteRejected, vyte_errors.VyteNotFound) as err:
            sending.maybe_sent = False
            await self._store.finish_unresolved(record.id)
            raise ValidationFailed([FieldError("organizer", "Vyte refused the event")]) from err
        except vyte_errors.VyteError as err:
            problem = upstream_problem(err)
            if surely_not_created(err):
                sending.maybe_sent = False
                await self._store.finish_unresolved(record.id)
            else:
                # Vyte may have stored the event, or may still be storing it: the record
                # keeps the slot and the reconciler starts looking now. Nothing re-sends it
                # until the reconciler has decided it absent.
                problem.outcome_unknown = True
                now = datetime.now(UTC)
                await self._store.update_unresolved(
                    attrs.evolve(record, next_check_at=now, last_error=str(err), updated_at=now)
                )
                self.on_unknown()
            raise problem from err
        return await self.record_created(caller, req, event, record.hold_id, answer=answer)

    async def create_keyed(self, caller: str, req: NewBooking, key: str) -> Booking:
        """A synchronous create under an Idempotency-Key, safe to retry after any failure.

        The create is recorded under the key: while its outcome is unknown a retry is told
        to wait (the key is in flight) and the reconciler keeps the answer for its replay.
        A marker kept as long as the key says an earlier try may have reached Vyte: then
        a retry after the record was settled looks for that event before sending.
        """
        digest = hashlib.sha256(f"{caller}\0{key}".encode()).hexdigest()[:32]
        hold = f"key-{digest}"
        if await self._store.get_unresolved(hold) is not None:
            raise IdempotencyKeyInFlight(
                "the outcome of the first request with this Idempotency-Key is not known yet",
                headers={"Retry-After": str(math.ceil(self.look_every))},
            )
        # "\n" cannot occur in a key (printable ASCII only): no caller's key collides.
        marker = f"{key}\nmaybe-sent"
        earlier = await self._store.begin_idempotent(caller, marker, "maybe-sent", IDEMPOTENCY_TTL)
        if earlier is not None:
            return await self.create_once(caller, req, hold, key=key)
        sending = _Sending()
        try:
            return await self.create(caller, req, hold=hold, sending=sending, key=key)
        except BaseException:
            if not sending.maybe_sent:
                await self._store.abandon_idempotent(caller, marker)
            raise

    @property
    def look_every(self) -> float:
        """Seconds between the reconciler's looks for a create whose outcome is unknown."""
        return look_interval(self._settings.unknown_outcome_timeout)

    async def create_once(
        self, caller: str, req: NewBooking, attempt_id: str, *, key: str | None = None
    ) -> Booking:
        """Create for a request that may already have reached Vyte.

        A previous attempt may have failed after Vyte stored the event, or the process
        may have died mid-call: look for the event first, so Vyte sees it once. The hold
        is named after the attempt, so a retry can take over its own hold.
        """
        event = await self.find_created(req)
        known = await self._store.get_booking(event.id.lower()) if event else None
        if event is not None and known is not None and known.caller in (None, caller):
            # Recorded by an earlier try (or adopted from Vyte's webhook meanwhile).
            return await self.record_created(caller, req, event, attempt_id)
        if event is not None and known is None:
            # Not recorded: ours from an earlier try, unless another request holds the
            # slot right now (then it is that request's event, about to be recorded).
            if not await self._store.acquire_hold(
                req.organizer.key, req.start, req.end, attempt_id, self.hold_ttl
            ):
                raise SlotUnavailable("the slot overlaps another booking of this organizer")
            return await self.record_created(caller, req, event, attempt_id)
        # Not in Vyte, or another caller's booking: a create like any other (which meets
        # that booking and answers 409).
        return await self.create(caller, req, hold=attempt_id, key=key)

    async def find_created(self, req: NewBooking, *, unrecorded: bool = False) -> Event | None:
        """The organizer's live Vyte event with this title, these times and these
        invitees, if any; with `unrecorded`, only one not recorded as a caller's booking
        (an event adopted from Vyte's hooks, with no caller yet, still counts)."""
        organizer = req.organizer
        who = {"creator_emails" if organizer.is_email else "creator_users": organizer.key}
        emails = sorted({i.email.lower() for i in req.invitees})
        try:
            # Vyte's `q` is a regular expression: escape the title, then compare exactly.
            pattern = f"^{re.escape(req.title)}$"
            events = await self._vyte.list_events(
                q=pattern, limit=100, invitee_emails=",".join(emails), **who
            )
        except vyte_errors.VyteError as err:
            raise upstream_problem(err) from err
        for event in events:
            if event.title != req.title or event.cancelled:
                continue
            if event_times(event) != (req.start, req.end):
                continue
            if not set(emails) <= {(i.email or "").lower() for i in event.invitees}:
                continue
            if unrecorded:
                known = await self._store.get_booking(event.id.lower())
                if known is not None and known.caller is not None:
                    continue  # another request's booking, identical to this one
            return event
        return None

    async def record_created(
        self,
        caller: str,
        req: NewBooking,
        event: Event,
        hold: str | None,
        *,
        answer: Answer | None = None,
    ) -> Booking:
        """Record `event` as `caller`'s booking, settling the unresolved create `hold`
        (its hold released, `answer` kept for its key, in the same step)."""
        now = datetime.now(UTC)
        booking = Booking(
            id=event.id.lower(),
            status=status_of(event),
            title=req.title,
            organizer=req.organizer.key,
            start=req.start,
            end=req.end,
            timezone=req.timezone,
            invitees=req.invitees,
            place=req.place,
            message=req.message,
            callback_url=req.callback_url,
            caller=caller,
            version=1,
            created_at=now,
            updated_at=now,
        )
        # An event Vyte answers already confirmed (its booking page's auto_confirm) is
        # recorded so and announced once, as booking.confirmed (docs/webhooks.md).
        if not await self.save(
            booking,
            _EVENT_FOR[booking.status],
            None,
            release_hold=hold,
            unresolved=hold,
            answer=answer(booking) if answer else None,
        ):
            # Already known: adopted from Vyte's webhook in between, or recorded by an
            # earlier try. An adopted record lacks what only the request knows: add it.
            existing = await self._store.get_booking(booking.id)
            if existing is None or existing.caller not in (None, caller):
                # Not ours to settle: an unresolved record stays (the reconciler decides);
                # a plain hold goes.
                if hold and await self._store.get_unresolved(hold) is None:
                    await self._store.release_hold(hold)
                if existing is None:
                    raise Conflict("booking changed concurrently; retry")
                raise SlotUnavailable("the slot is another caller's booking")
            if hold:
                await self._store.finish_unresolved(hold)
                await self._store.release_hold(hold)
            if existing.caller is None:
                return await self._complete_adopted(existing, booking)
            return existing
        return booking

    async def _complete_adopted(self, adopted: Booking, ours: Booking) -> Booking:
        """`adopted` (from Vyte's webhook) with what only the request knows: its caller,
        callback and message, and the organizer as the caller named them. Vyte's own view
        (times, title, status) stays; the callback hears the current status."""
        current = adopted
        for _ in range(10):
            now = datetime.now(UTC)
            completed = current.changed(
                now,
                caller=ours.caller,
                callback_url=ours.callback_url,
                message=current.message or ours.message,
                organizer=ours.organizer,
            )
            event_type = _EVENT_FOR[completed.status]
            if await self.save(completed, event_type, current.version, subscriptions=False):
                return completed
            latest = await self._store.get_booking(adopted.id)
            if latest is None:
                raise Conflict("booking changed concurrently; retry")
            if latest.caller is not None:
                if latest.caller != ours.caller:
                    raise SlotUnavailable("the slot is another caller's booking")
                return latest
            current = latest
        raise Conflict("booking is changing too fast; retry")

    def is_admin(self, caller: str) -> bool:
        return caller in self._settings.admin_callers

    def visible_to(self, caller: str, booking: Booking) -> bool:
        """Whether `caller` may see and change `booking` (DESIGN §3.0): its owner, or an
        admin. Unowned bookings (adopted from Vyte, or written before owners) are admins'."""
        return booking.caller == caller or self.is_admin(caller)

    async def check_access(self, caller: str, booking_id: str) -> str:
        """The normalized id when `caller` may act on this booking, without asking Vyte:
        what an asynchronous form checks before it answers 202. An id the gateway has not
        recorded passes for admins only (the worker adopts it from Vyte)."""
        booking_id = check_booking_id(booking_id)
        booking = await self._store.get_booking(booking_id)
        if booking is None and self.is_admin(caller):
            return booking_id
        if booking is None or not self.visible_to(caller, booking):
            raise BookingNotFound(f"no booking {booking_id}")
        return booking_id

    async def get_for(self, caller: str, booking_id: str) -> Booking:
        """The booking as `caller` may see it, else 404 exactly as for a missing id, with
        nothing asked upstream. Only an admin's read adopts a Vyte event not yet recorded."""
        booking_id = check_booking_id(booking_id)
        booking = await self._store.get_booking(booking_id)
        if booking is not None:
            if self.visible_to(caller, booking):
                return booking
            raise BookingNotFound(f"no booking {booking_id}")
        if not self.is_admin(caller):
            raise BookingNotFound(f"no booking {booking_id}")
        try:
            event = await self._vyte.get_event(booking_id)
        except (vyte_errors.VyteNotFound, vyte_errors.VyteRejected):
            raise BookingNotFound(f"no booking {booking_id}") from None
        except vyte_errors.VyteError as err:
            raise upstream_problem(err) from err
        return await self.adopt(event)

    async def adopt(self, event: Event) -> Booking:
        """Store a Vyte event as a booking (once) and announce it."""
        now = datetime.now(UTC)
        booking = booking_from_event(event, now)
        if await self.save(booking, _EVENT_FOR[booking.status], None):
            return booking
        existing = await self._store.get_booking(booking.id)
        if existing is None:
            raise Conflict("booking changed concurrently; retry")
        return existing

    async def confirm(self, caller: str, booking_id: str) -> Booking:
        return await self._transition(caller, booking_id, BookingStatus.CONFIRMED)

    async def cancel(self, caller: str, booking_id: str) -> Booking:
        return await self._transition(caller, booking_id, BookingStatus.CANCELLED)

    async def _transition(self, caller: str, booking_id: str, target: BookingStatus) -> Booking:
        booking = await self.get_for(caller, booking_id)
        try:
            if not plan_transition(booking.status, target):
                return booking
        except TransitionRefused:
            raise BookingCancelled(f"booking {booking.id} is cancelled") from None
        try:
            if target == BookingStatus.CONFIRMED:
                await self._vyte.confirm_event(booking.id)
            else:
                await self._vyte.cancel_event(booking.id)
        except vyte_errors.VyteNotFound:
            raise BookingNotFound(f"Vyte no longer knows booking {booking.id}") from None
        except vyte_errors.VyteRejected:
            return await self._refused(booking, target)
        except vyte_errors.VyteError as err:
            await self.applied_despite(booking.id, err, lambda e: status_of(e) == target)
        return await self.apply_status(booking.id, target)

    async def applied_despite(
        self, booking_id: str, err: vyte_errors.VyteError, applied: Callable[[Event], bool]
    ) -> Event:
        """After a change to event `booking_id` failed with `err`: the event as Vyte has
        it now, when `applied` says the change took effect all the same (its answer was
        lost: a 5xx or a timeout after Vyte applied it); otherwise `err`'s problem.

        Only a change Vyte did not apply is reported as failed (DESIGN §3.2)."""
        problem = upstream_problem(err)
        if surely_not_created(err):
            raise problem from err
        try:
            event = await self._vyte.get_event(booking_id)
        except vyte_errors.VyteError:
            raise problem from err
        if not applied(event):
            raise problem from err
        return event

    async def _refused(self, booking: Booking, target: BookingStatus) -> Booking:
        """Vyte refused the change: usually the event was cancelled inside Vyte meanwhile."""
        try:
            event = await self._vyte.get_event(booking.id)
        except vyte_errors.VyteNotFound:
            raise BookingNotFound(f"Vyte no longer knows booking {booking.id}") from None
        except vyte_errors.VyteError as err:
            raise upstream_problem(err) from err
        if status_of(event) == BookingStatus.CANCELLED:
            cancelled = await self.apply_status(booking.id, BookingStatus.CANCELLED)
            if target == BookingStatus.CANCELLED:
                return cancelled
            raise BookingCancelled(f"booking {booking.id} was cancelled in Vyte")
        action = "confirm" if target == BookingStatus.CONFIRMED else "cancel"
        raise Conflict(f"Vyte refused to {action} booking {booking.id}")

    async def apply_status(self, booking_id: str, target: BookingStatus) -> Booking:
        """Record a status Vyte already has; idempotent and safe against races."""
        for _ in range(10):
            current = await self._store.get_booking(booking_id)
            if current is None:
                raise BookingNotFound(f"no booking {booking_id}")
            try:
                if not plan_transition(current.status, target):
                    return current
            except TransitionRefused:
                return current
            now = datetime.now(UTC)
            updated = current.changed(now, status=target)
            # Written, the booking changes its organizer's mark: the next availability
            # answer, on every replica, asks Vyte again rather than its cached view.
            if await self.save(updated, _EVENT_FOR[target], current.version):
                return updated
        raise Conflict("booking is changing too fast; retry")


_EVENT_FOR = {
    BookingStatus.REQUESTED: "booking.requested",
    BookingStatus.CONFIRMED: "booking.confirmed",
    BookingStatus.CANCELLED: "booking.cancelled",
}

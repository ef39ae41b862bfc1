"""Bookings: check the slot, hold it, create in Vyte; read, confirm, cancel."""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from datetime import UTC, datetime

import attrs

from service.availability import AvailabilityService
from service.budget import claim_lease
from service.commands import NewBooking
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
    SlotUnavailable,
    ValidationFailed,
)
from service.ports import Outbox
from service.store.base import IDEMPOTENCY_TTL, Store
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

    async def save(
        self,
        booking: Booking,
        event_type: str,
        expected_version: int | None,
        *,
        release_hold: str | None = None,
        subscriptions: bool = True,
    ) -> bool:
        """Write `booking` with the webhooks announcing it (`event_type`), if the stored
        version is still `expected_version`; once committed, they are sent at once."""
        deliveries = await self._outbox.plan(
            event_type, booking, booking.updated_at, subscriptions=subscriptions
        )
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
    ) -> Booking:
        """Check, hold, create in Vyte, record. `hold` names the hold (default: a new id);
        `sending` learns whether the event may have reached Vyte."""
        if req.check_availability:
            await self.check_slot(req)
        hold = hold or uuid.uuid4().hex
        if not await self._store.acquire_hold(
            req.organizer.key, req.start, req.end, hold, self.hold_ttl
        ):
            raise SlotUnavailable("the slot overlaps another booking of this organizer")
        return await self._send(caller, req, hold, sending or _Sending())

    async def _send(self, caller: str, req: NewBooking, hold: str, sending: _Sending) -> Booking:
        sending.maybe_sent = True
        try:
            event = await self._vyte.create_event(new_event(req))
        except (vyte_errors.VyteRejected, vyte_errors.VyteNotFound) as err:
            sending.maybe_sent = False
            await self._store.release_hold(hold)
            raise ValidationFailed([FieldError("organizer", "Vyte refused the event")]) from err
        except vyte_errors.VyteError as err:
            if surely_not_created(err):
                sending.maybe_sent = False
                await self._store.release_hold(hold)
            # Otherwise Vyte may have stored the event: the hold stays until it lapses, so
            # nothing re-sends it blindly, and a retry looks in Vyte first.
            raise upstream_problem(err) from err
        return await self.record_created(caller, req, event, hold)

    async def create_keyed(self, caller: str, req: NewBooking, key: str) -> Booking:
        """A synchronous create under an Idempotency-Key, safe to retry after any failure.

        A marker kept as long as the key says an earlier try may have reached Vyte (it
        failed or died after sending, or its answer could not be kept for replay): then
        the retry looks for that event in Vyte before sending, so Vyte sees it once.
        """
        digest = hashlib.sha256(f"{caller}\0{key}".encode()).hexdigest()[:32]
        hold = f"key-{digest}"
        # "\n" cannot occur in a key (printable ASCII only): no caller's key collides.
        marker = f"{key}\nmaybe-sent"
        earlier = await self._store.begin_idempotent(caller, marker, "maybe-sent", IDEMPOTENCY_TTL)
        if earlier is not None:
            return await self.create_once(caller, req, hold)
        sending = _Sending()
        try:
            return await self.create(caller, req, hold=hold, sending=sending)
        except BaseException:
            if not sending.maybe_sent:
                await self._store.abandon_idempotent(caller, marker)
            raise

    async def create_once(self, caller: str, req: NewBooking, attempt_id: str) -> Booking:
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
        return await self.create(caller, req, hold=attempt_id)

    async def find_created(self, req: NewBooking) -> Event | None:
        """The organizer's live Vyte event with this title and these times, if any."""
        organizer = req.organizer
        who = (
            {"invitee_emails": organizer.key}
            if organizer.is_email
            else {"creator_users": organizer.key}
        )
        try:
            # Vyte's `q` is a regular expression: escape the title, then compare exactly.
            pattern = f"^{re.escape(req.title)}$"
            events = await self._vyte.list_events(q=pattern, limit=100, **who)
        except vyte_errors.VyteError as err:
            raise upstream_problem(err) from err
        for event in events:
            if event.title != req.title or event.cancelled:
                continue
            if event_times(event) == (req.start, req.end):
                return event
        return None

    async def record_created(
        self, caller: str, req: NewBooking, event: Event, hold: str | None
    ) -> Booking:
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
        if not await self.save(booking, "booking.requested", None, release_hold=hold):
            # Already known: adopted from Vyte's webhook in between, or recorded by an
            # earlier try. An adopted record lacks what only the request knows: add it.
            existing = await self._store.get_booking(booking.id)
            if hold:
                await self._store.release_hold(hold)
            if existing is None:
                raise Conflict("booking changed concurrently; retry")
            if existing.caller is None:
                return await self._complete_adopted(existing, booking)
            if existing.caller != caller:
                raise SlotUnavailable("the slot is another caller's booking")
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
            raise upstream_problem(err) from err
        return await self.apply_status(booking.id, target)

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
            if await self.save(updated, _EVENT_FOR[target], current.version):
                return updated
        raise Conflict("booking is changing too fast; retry")


_EVENT_FOR = {
    BookingStatus.REQUESTED: "booking.requested",
    BookingStatus.CONFIRMED: "booking.confirmed",
    BookingStatus.CANCELLED: "booking.cancelled",
}

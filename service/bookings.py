"""Bookings: validate, check the slot, hold it, create in Vyte; read, confirm, cancel."""

from __future__ import annotations

import hashlib
import math
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import attrs

from service.availability import AvailabilityService, Participant, parse_participant, parse_timezone
from service.config import Settings
from service.domain.booking import (
    Booking,
    BookingStatus,
    Invitee,
    Place,
    TransitionRefused,
    plan_transition,
)
from service.errors import (
    BookingCancelled,
    Conflict,
    FieldError,
    NotFound,
    ServiceError,
    SlotUnavailable,
    UpstreamFailed,
    UpstreamTimeout,
    UpstreamUnavailable,
    ValidationFailed,
)
from service.notify.egress import UNRESTRICTED, EgressPolicy
from service.notify.outbox import Outbox
from service.store.base import IDEMPOTENCY_TTL, Store
from service.vyte import errors as vyte_errors
from service.vyte.client import VyteClient
from service.vyte.models import (
    Creator,
    Event,
    Message,
    NewEvent,
    NewEventDate,
    NewInvitee,
    NewPlace,
)

BODY_FIELDS = (
    "organizer",
    "title",
    "start",
    "end",
    "duration",
    "timezone",
    "invitees",
    "place",
    "message",
    "callback_url",
    "check_availability",
)
_INVITEE_FIELDS = ("email", "full_name", "phone")
_PLACE_FIELDS = ("name", "address")
_EMAIL = re.compile(r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$")
_OFFSET = re.compile(r"(Z|[+-]\d{2}:?\d{2})$", re.IGNORECASE)
_BOOKING_ID = re.compile(r"^[0-9a-fA-F]{24}$")
MAX_INVITEES = 50


@attrs.frozen
class BookingRequest:
    """A validated POST /v1/bookings body."""

    organizer: Participant
    title: str
    start: datetime
    end: datetime
    timezone: str
    invitees: tuple[Invitee, ...]
    place: Place | None
    message: str | None
    callback_url: str | None
    check_availability: bool


def _text(
    data: Mapping[str, Any], name: str, problems: list[FieldError], *, max_len: int, path: str = ""
) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= max_len:
        problems.append(FieldError(path + name, f"must be a string of 1 to {max_len} characters"))
        return None
    return value


def _instant(value: Any, name: str, problems: list[FieldError]) -> datetime | None:
    if not isinstance(value, str):
        problems.append(FieldError(name, "must be an ISO 8601 date-time with an offset"))
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or "T" not in value.upper():
        problems.append(FieldError(name, "must be an ISO 8601 date-time with an offset"))
        return None
    if parsed.tzinfo is None or not _OFFSET.search(value):
        problems.append(FieldError(name, "must carry a UTC offset, e.g. +02:00 or Z"))
        return None
    # Vyte keeps whole seconds; so do we, or a booking and its event would not match.
    return parsed.astimezone(UTC).replace(microsecond=0)


def validate_url(
    value: Any, name: str, problems: list[FieldError], egress: EgressPolicy
) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > 2048:
        problems.append(FieldError(name, "must be an http(s) URL"))
        return None
    try:
        parts = urlsplit(value)
        host = parts.hostname
        valid = parts.scheme in ("http", "https") and bool(host)
        if host:
            # What the resolver will need: IDNA labels of 1 to 63 characters.
            host.encode("idna")
            parts.port  # noqa: B018 - raises ValueError for a port out of range
    except (ValueError, UnicodeError):
        valid = False
    if not valid:
        problems.append(FieldError(name, "must be an http(s) URL"))
        return None
    refusal = egress.refusal(value)
    if refusal is not None:
        problems.append(FieldError(name, refusal.value))
        return None
    return value


def parse_booking(data: Mapping[str, Any], egress: EgressPolicy = UNRESTRICTED) -> BookingRequest:
    """Validate a booking body; ValidationFailed lists every bad field."""
    problems = [FieldError(n, "unknown field") for n in data if n not in BODY_FIELDS]

    organizer = None
    raw_org = data.get("organizer")
    if raw_org is None:
        problems.append(FieldError("organizer", "required"))
    elif not isinstance(raw_org, str) or (organizer := parse_participant(raw_org)) is None:
        problems.append(FieldError("organizer", "must be a Vyte user id or an email"))

    title = _text(data, "title", problems, max_len=255)
    if data.get("title") is None:
        problems.append(FieldError("title", "required"))

    start = _instant(data.get("start"), "start", problems) if "start" in data else None
    if "start" not in data:
        problems.append(FieldError("start", "required"))
    end = None
    has_end, has_duration = data.get("end") is not None, data.get("duration") is not None
    if has_end == has_duration:
        problems.append(FieldError("end", "give exactly one of end or duration"))
    elif has_end:
        end = _instant(data["end"], "end", problems)
    else:
        minutes = data["duration"]
        if isinstance(minutes, bool) or not isinstance(minutes, int) or not 5 <= minutes <= 1440:
            problems.append(FieldError("duration", "must be an integer from 5 to 1440"))
        elif start is not None:
            end = start + timedelta(minutes=minutes)
    if start is not None and end is not None:
        if end <= start:
            problems.append(FieldError("end", "must be after start"))
        elif end - start > timedelta(days=1):
            problems.append(FieldError("end", "a booking lasts at most 1440 minutes"))

    timezone = data.get("timezone", "UTC")
    if not isinstance(timezone, str) or parse_timezone(timezone) is None:
        problems.append(FieldError("timezone", "must be an IANA time zone name"))

    invitees: list[Invitee] = []
    raw_invitees = data.get("invitees")
    if not isinstance(raw_invitees, list) or not 1 <= len(raw_invitees) <= MAX_INVITEES:
        problems.append(FieldError("invitees", f"must be a list of 1 to {MAX_INVITEES} invitees"))
    else:
        for i, item in enumerate(raw_invitees):
            path = f"invitees[{i}]."
            if not isinstance(item, dict):
                problems.append(FieldError(f"invitees[{i}]", "must be an object"))
                continue
            problems += [
                FieldError(path + k, "unknown field") for k in item if k not in _INVITEE_FIELDS
            ]
            email = item.get("email")
            if not isinstance(email, str) or len(email) > 254 or not _EMAIL.match(email):
                problems.append(FieldError(path + "email", "must be a valid email address"))
                continue
            invitees.append(
                Invitee(
                    email=email,
                    full_name=_text(item, "full_name", problems, max_len=255, path=path),
                    phone=_text(item, "phone", problems, max_len=64, path=path),
                )
            )

    place = None
    raw_place = data.get("place")
    if raw_place is not None:
        if not isinstance(raw_place, dict):
            problems.append(FieldError("place", "must be an object"))
        else:
            problems += [
                FieldError("place." + k, "unknown field")
                for k in raw_place
                if k not in _PLACE_FIELDS
            ]
            name = _text(raw_place, "name", problems, max_len=255, path="place.")
            if raw_place.get("name") is None:
                problems.append(FieldError("place.name", "required"))
            address = _text(raw_place, "address", problems, max_len=500, path="place.")
            if name is not None:
                place = Place(name=name, address=address)

    message = _text(data, "message", problems, max_len=10_000)
    callback_url = validate_url(data.get("callback_url"), "callback_url", problems, egress)
    check = data.get("check_availability", True)
    if not isinstance(check, bool):
        problems.append(FieldError("check_availability", "must be true or false"))

    if problems:
        raise ValidationFailed(problems)
    assert organizer and title and start and end
    return BookingRequest(
        organizer=organizer,
        title=title,
        start=start,
        end=end,
        timezone=timezone,
        invitees=tuple(invitees),
        place=place,
        message=message,
        callback_url=callback_url,
        check_availability=bool(check),
    )


def surely_not_created(err: vyte_errors.VyteError) -> bool:
    """Whether a failed create certainly did not store an event in Vyte.

    Only refusals say so: Vyte's 4xx answers (429 included), and the calls never sent
    (open breaker, saturation). A 5xx, a timeout, a dropped connection or an unreadable
    answer may come after Vyte stored the event.
    """
    if isinstance(err, vyte_errors.CircuitOpen | vyte_errors.Saturated):
        return True
    return err.status is not None and 400 <= err.status < 500


def upstream_problem(err: vyte_errors.VyteError) -> ServiceError:
    """DESIGN §4: how an upstream failure reaches our caller."""
    if isinstance(err, vyte_errors.VyteTimeout):
        return UpstreamTimeout("Vyte did not answer in time")
    if isinstance(err, vyte_errors.VyteUnavailable):
        headers = {}
        if err.retry_after is not None:
            headers["Retry-After"] = str(max(1, math.ceil(err.retry_after)))
        return UpstreamUnavailable(str(err), headers=headers)
    return UpstreamFailed(f"Vyte failed: {err}")


def booking_from_event(
    event: Event, now: datetime, *, caller: str | None = None, callback_url: str | None = None
) -> Booking:
    """Adopt a Vyte event the gateway has not seen as a booking."""
    if not event.dates:
        raise vyte_errors.VyteBadResponse("event has no dates")
    first = event.dates[0]
    start = _vyte_instant(first.date)
    end = _vyte_instant(first.end_date)
    organizer = (event.created_by.user or event.created_by.email or "").lower()
    invitees = tuple(
        Invitee(email=i.email, full_name=i.full_name, phone=i.phone)
        for i in event.invitees
        if i.email and not i.su
    )
    place = event.places[0] if event.places else None
    zone = event.timezone if event.timezone and parse_timezone(event.timezone) else "UTC"
    return Booking(
        id=event.id,
        status=status_of(event),
        title=event.title,
        organizer=organizer,
        start=start,
        end=end,
        timezone=zone,
        invitees=invitees,
        place=Place(name=place.name, address=place.address) if place and place.name else None,
        message=None,
        callback_url=callback_url,
        caller=caller,
        version=1,
        created_at=now,
        updated_at=now,
    )


def status_of(event: Event) -> BookingStatus:
    if event.cancelled:
        return BookingStatus.CANCELLED
    if event.confirmed.flag:
        return BookingStatus.CONFIRMED
    return BookingStatus.REQUESTED


def _vyte_instant(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise vyte_errors.VyteBadResponse(f"unreadable date {value!r}") from None
    # Vyte returns UTC ("...Z"); a naive value is UTC too.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _vyte_time(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def new_event(req: BookingRequest) -> NewEvent:
    """The Vyte body for a booking (DESIGN §3.2): exact instants, in UTC."""
    organizer = req.organizer
    return NewEvent(
        title=req.title,
        created_by=Creator(email=organizer.key)
        if organizer.is_email
        else Creator(user=organizer.key),
        dates=(NewEventDate(date=_vyte_time(req.start), end_date=_vyte_time(req.end)),),
        invitees=tuple(
            NewInvitee(email=i.email, full_name=i.full_name, phone=i.phone) for i in req.invitees
        ),
        places=(NewPlace(name=req.place.name, address=req.place.address),) if req.place else (),
        messages=(Message(body=req.message),) if req.message else (),
        timezone=req.timezone,
    )


def check_booking_id(booking_id: str) -> str:
    if not _BOOKING_ID.match(booking_id):
        raise NotFound(f"no booking {booking_id[:64]!r}")
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

    @property
    def hold_ttl(self) -> float:
        # Long enough to cover the whole request; a crashed replica's hold lapses after it.
        return self._settings.request_budget + self._settings.vyte_timeout + 30

    async def check_slot(self, req: BookingRequest) -> None:
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
        req: BookingRequest,
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

    async def _send(
        self, caller: str, req: BookingRequest, hold: str, sending: _Sending
    ) -> Booking:
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

    async def create_keyed(self, caller: str, req: BookingRequest, key: str) -> Booking:
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

    async def create_once(self, caller: str, req: BookingRequest, attempt_id: str) -> Booking:
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

    async def find_created(self, req: BookingRequest) -> Event | None:
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
            if event.title != req.title or event.cancelled or not event.dates:
                continue
            first = event.dates[0]
            try:
                same = (
                    _vyte_instant(first.date) == req.start
                    and _vyte_instant(first.end_date) == req.end
                )
            except vyte_errors.VyteBadResponse:
                continue
            if same:
                return event
        return None

    async def record_created(
        self, caller: str, req: BookingRequest, event: Event, hold: str | None
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
        deliveries = await self._outbox.plan("booking.requested", booking, now)
        if not await self._store.put_booking(
            booking, expected_version=None, release_hold=hold, deliveries=deliveries
        ):
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
            deliveries = await self._outbox.plan(
                _EVENT_FOR[completed.status], completed, now, subscriptions=False
            )
            if await self._store.put_booking(
                completed, expected_version=current.version, deliveries=deliveries
            ):
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

    async def get(self, booking_id: str) -> Booking:
        booking_id = check_booking_id(booking_id)
        booking = await self._store.get_booking(booking_id)
        if booking is not None:
            return booking
        try:
            event = await self._vyte.get_event(booking_id)
        except (vyte_errors.VyteNotFound, vyte_errors.VyteRejected):
            raise NotFound(f"no booking {booking_id}") from None
        except vyte_errors.VyteError as err:
            raise upstream_problem(err) from err
        return await self.adopt(event)

    async def adopt(self, event: Event) -> Booking:
        """Store a Vyte event as a booking (once) and announce it."""
        now = datetime.now(UTC)
        booking = booking_from_event(event, now)
        deliveries = await self._outbox.plan(_EVENT_FOR[booking.status], booking, now)
        if await self._store.put_booking(booking, expected_version=None, deliveries=deliveries):
            return booking
        existing = await self._store.get_booking(booking.id)
        if existing is None:
            raise Conflict("booking changed concurrently; retry")
        return existing

    async def confirm(self, booking_id: str) -> Booking:
        return await self._transition(booking_id, BookingStatus.CONFIRMED)

    async def cancel(self, booking_id: str) -> Booking:
        return await self._transition(booking_id, BookingStatus.CANCELLED)

    async def _transition(self, booking_id: str, target: BookingStatus) -> Booking:
        booking = await self.get(booking_id)
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
            raise NotFound(f"Vyte no longer knows booking {booking.id}") from None
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
            raise NotFound(f"Vyte no longer knows booking {booking.id}") from None
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
                raise NotFound(f"no booking {booking_id}")
            try:
                if not plan_transition(current.status, target):
                    return current
            except TransitionRefused:
                return current
            now = datetime.now(UTC)
            updated = current.changed(now, status=target)
            deliveries = await self._outbox.plan(_EVENT_FOR[target], updated, now)
            if await self._store.put_booking(
                updated, expected_version=current.version, deliveries=deliveries
            ):
                return updated
        raise Conflict("booking is changing too fast; retry")


_EVENT_FOR = {
    BookingStatus.REQUESTED: "booking.requested",
    BookingStatus.CONFIRMED: "booking.confirmed",
    BookingStatus.CANCELLED: "booking.cancelled",
}

"""Vyte events: the stored model, how create/update bodies become one, and its JSON form."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

import attrs

from .seed import Seed, User
from .slots import Interval, local_span
from .wire import (
    JSON,
    OBJECT_ID,
    BadRequest,
    new_object_id,
    objects,
    optional_bool,
    optional_str,
    timestamp,
    zone_named,
)

_NO_VOTES: JSON = {"yes": [], "no": []}


@attrs.define
class EventDate:
    id: str
    start: datetime
    end: datetime
    all_day: bool
    created_at: datetime

    def to_json(self) -> JSON:
        # Vyte's samples leave every date's `confirmed` false once the event is confirmed:
        # the chosen date is named by the event's `confirmed.date_id` alone.
        return {
            "_id": self.id,
            "date": timestamp(self.start),
            "end_date": timestamp(self.end),
            "all_day": self.all_day,
            "confirmed": False,
            "confirmed_invitees": [],
            "votes": dict(_NO_VOTES),
            "createdAt": timestamp(self.created_at),
            "updatedAt": timestamp(self.created_at),
        }


@attrs.define
class Place:
    id: str
    name: str
    address: str | None
    source: str | None
    created_at: datetime

    def to_json(self) -> JSON:
        body: JSON = {"_id": self.id, "name": self.name}
        if self.address is not None:
            body["address"] = self.address
        if self.source is not None:
            body["source"] = self.source
        body["votes"] = dict(_NO_VOTES)
        body["createdAt"] = body["updatedAt"] = timestamp(self.created_at)
        return body


@attrs.define
class Invitee:
    id: str
    email: str
    full_name: str | None
    phone: str | None
    user: str | None
    timezone: str | None
    su: bool

    def to_json(self) -> JSON:
        body: JSON = {"_id": self.id, "email": self.email, "su": self.su}
        for key in ("full_name", "phone", "user", "timezone"):
            value = getattr(self, key)
            if value is not None:
                body[key] = value
        return body


@attrs.define
class Message:
    id: str
    body: str
    sender_email: str
    sender_user: str
    created_at: datetime

    def to_json(self) -> JSON:
        return {
            "_id": self.id,
            "body": self.body,
            "from": self.sender_email,
            "created_by": {"user": self.sender_user},
            "createdAt": timestamp(self.created_at),
            "updatedAt": timestamp(self.created_at),
        }


@attrs.define
class Event:
    id: str
    title: str
    creator: User
    timezone: str
    vyteme: bool
    lang: str
    locale: str
    dates: list[EventDate]
    places: list[Place]
    invitees: list[Invitee]
    messages: list[Message]
    settings: JSON
    third_party: JSON | None
    created_at: datetime
    updated_at: datetime
    version: int = 0
    confirmed: bool = False
    confirmed_at: datetime | None = None
    confirmed_date_id: str | None = None
    confirmed_place_id: str | None = None
    cancelled_at: datetime | None = None

    @property
    def cancelled(self) -> bool:
        return self.cancelled_at is not None

    def involves(self, user: User) -> bool:
        """Whether the event takes up this user's time: they created it or are invited."""
        if self.creator.id == user.id:
            return True
        return any(i.user == user.id or i.email in user.emails for i in self.invitees)

    def busy(self) -> list[Interval]:
        """The time the event holds: the confirmed date once there is one, else every date."""
        if self.cancelled:
            return []
        if self.confirmed and self.confirmed_date_id is not None:
            return [(d.start, d.end) for d in self.dates if d.id == self.confirmed_date_id]
        return [(d.start, d.end) for d in self.dates]

    def touch(self, at: datetime) -> None:
        self.version += 1
        self.updated_at = at

    def confirm(self, date_id: str | None, place_id: str | None, at: datetime) -> bool:
        """Returns False when there was nothing to change."""
        if self.cancelled:
            raise BadRequest("event is cancelled")
        if date_id is not None and all(d.id != date_id for d in self.dates):
            raise BadRequest(f"d: no date {date_id} in this event")
        if place_id is not None and all(p.id != place_id for p in self.places):
            raise BadRequest(f"p: no place {place_id} in this event")
        date_id = date_id or self.confirmed_date_id or self.closest_date_id(at)
        place_id = (
            place_id or self.confirmed_place_id or (self.places[0].id if self.places else None)
        )
        if (
            self.confirmed
            and date_id == self.confirmed_date_id
            and place_id == self.confirmed_place_id
        ):
            return False
        self.mark_confirmed(date_id, place_id, at)
        self.touch(at)
        return True

    def closest_date_id(self, at: datetime) -> str | None:
        """The date a confirm without `d` picks: "the closest date with more votes".

        The sandbox records no votes, so every date has the same (its creator's); the closest
        is the soonest one not yet over, else the last one to have ended.
        """
        if not self.dates:
            return None
        upcoming = [d for d in self.dates if d.end > at]
        if upcoming:
            return min(upcoming, key=lambda d: d.start).id
        return max(self.dates, key=lambda d: d.end).id

    def mark_confirmed(self, date_id: str | None, place_id: str | None, at: datetime) -> None:
        self.confirmed = True
        self.confirmed_at = at
        self.confirmed_date_id = date_id
        self.confirmed_place_id = place_id

    def cancel(self, at: datetime) -> bool:
        """Returns False when the event was already cancelled."""
        if self.cancelled:
            return False
        self.cancelled_at = at
        self.touch(at)
        return True

    def update(self, body: JSON, at: datetime) -> bool:
        """Applies a PUT body (`title`, `dates`, `places`); returns whether anything changed.

        The whole body is checked before anything is applied. A confirmed event stays
        confirmed: Vyte reconfirms it on its (new) date and place.
        """
        if self.cancelled:
            raise BadRequest("event is cancelled")
        zone = ZoneInfo(self.timezone)
        title = _title(body.get("title")) if "title" in body else None
        dates = _dates(body.get("dates"), zone, at) if "dates" in body else None
        places = _places(body.get("places"), at) if "places" in body else None
        if title is None and dates is None and places is None:
            return False
        if title is not None:
            self.title = title
        if dates is not None:
            self.dates = dates
            if self.confirmed:
                self.confirmed_date_id = self.closest_date_id(at)
        if places is not None:
            self.places = places
            if self.confirmed:
                self.confirmed_place_id = self.places[0].id if self.places else None
        if self.confirmed:
            self.confirmed_at = at
        self.touch(at)
        return True

    def to_json(self, organization_id: str) -> JSON:
        confirmed: JSON = {
            "flag": self.confirmed,
            "updated_at": timestamp(self.confirmed_at) if self.confirmed_at else None,
            "multi": False,
        }
        if self.confirmed_date_id is not None:
            confirmed["date_id"] = self.confirmed_date_id
        if self.confirmed_place_id is not None:
            confirmed["place_id"] = self.confirmed_place_id
        body: JSON = {
            "_id": self.id,
            "__v": self.version,
            "version": self.version,
            "organization": organization_id,
            "title": self.title,
            "api": True,
            "vyteme": self.vyteme,
            "timezone": self.timezone,
            "lang": self.lang,
            "locale": self.locale,
            "created_by": {
                "user": self.creator.id,
                "email": self.creator.email,
                "full_name": self.creator.full_name,
            },
            "confirmed": confirmed,
            "dates": [d.to_json() for d in self.dates],
            "places": [p.to_json() for p in self.places],
            "invitees": [i.to_json() for i in self.invitees],
            "invitees_length": len(self.invitees),
            "messages": [m.to_json() for m in self.messages],
            "declines": [],
            "settings": self.settings,
            "createdAt": timestamp(self.created_at),
            "updatedAt": timestamp(self.updated_at),
        }
        if self.third_party is not None:
            body["third_party"] = self.third_party
        if self.cancelled_at is not None:
            body["cancelled"] = timestamp(self.cancelled_at)
        return body


def new_event(body: object, seed: Seed, at: datetime) -> Event:
    """An event from a `POST /v2/events` body, or BadRequest naming the first problem."""
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    creator = _creator(body.get("created_by"), seed)
    timezone = creator.timezone
    if body.get("timezone") is not None:
        timezone = body["timezone"]
    zone = zone_named(timezone, "timezone")
    settings = body.get("settings", {})
    third_party = body.get("third_party")
    if not isinstance(settings, dict):
        raise BadRequest("settings must be an object")
    if third_party is not None and not isinstance(third_party, dict):
        raise BadRequest("third_party must be an object")
    lang = optional_str(body, "lang", "lang") or "en"
    event = Event(
        id=new_object_id(),
        title=_title(body.get("title")),
        creator=creator,
        timezone=timezone,
        vyteme=optional_bool(body, "vyteme", "vyteme", default=False),
        lang=lang,
        locale=optional_str(body, "locale", "locale") or lang,
        dates=_dates(body.get("dates"), zone, at),
        places=_places(body.get("places"), at),
        invitees=_invitees(body.get("invitees"), creator, seed),
        messages=_messages(body.get("messages"), creator, at),
        settings=settings,
        third_party=third_party,
        created_at=at,
        updated_at=at,
    )
    confirmed = body.get("confirmed")
    if confirmed is not None:
        if not isinstance(confirmed, dict):
            raise BadRequest("confirmed must be an object")
        if optional_bool(confirmed, "flag", "confirmed.flag", default=False):
            event.mark_confirmed(
                event.closest_date_id(at), event.places[0].id if event.places else None, at
            )
    return event


def _creator(raw: object, seed: Seed) -> User:
    if not isinstance(raw, dict):
        raise BadRequest("created_by is required: {user} or {email}")
    user_id, email = raw.get("user"), raw.get("email")
    if user_id is not None:
        if not isinstance(user_id, str) or not OBJECT_ID.match(user_id):
            raise BadRequest("created_by.user must be a 24-hex user id")
        if user_id not in seed.users_by_id:
            raise BadRequest(f"created_by.user: unknown user {user_id}")
        return seed.users_by_id[user_id]
    if email is not None:
        if not isinstance(email, str):
            raise BadRequest("created_by.email must be a string")
        user = seed.users_by_email.get(email.strip().lower())
        if user is None:
            raise BadRequest(f"created_by.email: no user with email {email}")
        return user
    raise BadRequest("created_by is required: {user} or {email}")


def _title(raw: object) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise BadRequest("title is required")
    return raw


def _dates(raw: object, zone: ZoneInfo, at: datetime) -> list[EventDate]:
    dates: list[EventDate] = []
    for index, item in enumerate(objects(raw, "dates", single_allowed=False)):
        where = f"dates[{index}]"
        all_day = optional_bool(item, "all_day", f"{where}.all_day", default=False)
        start = _datetime(item.get("date"), zone, f"{where}.date")
        raw_end = item.get("end_date")
        if all_day:
            start, end = _whole_days(start, raw_end, zone, where)
        else:
            if raw_end is None:
                raise BadRequest(f"{where}.end_date is required")
            end = _datetime(raw_end, zone, f"{where}.end_date")
            if end <= start:
                raise BadRequest(f"{where}.end_date must be after {where}.date")
        dates.append(EventDate(new_object_id(), start, end, all_day, at))
    return dates


def _whole_days(start: datetime, raw_end: object, zone: ZoneInfo, where: str) -> Interval:
    """The local days an all-day date covers.

    An end at local midnight is exclusive (the stored form of a one-day event ends at the next
    midnight); any other end includes its own day. No end means the start day alone.
    """
    first = last = start.astimezone(zone).date()
    if raw_end is not None:
        end = _datetime(raw_end, zone, f"{where}.end_date").astimezone(zone)
        last = end.date()
        if end.time() == time(0) and last > first:
            last -= timedelta(days=1)
    return local_span(first, max(first, last), zone)


def _datetime(raw: object, zone: ZoneInfo, field: str) -> datetime:
    """An instant: offsets are honoured, naive values are wall-clock time in `zone`."""
    if not isinstance(raw, str):
        raise BadRequest(f"{field} must be an ISO 8601 date-time")
    try:
        value = datetime.fromisoformat(raw)
    except ValueError as err:
        raise BadRequest(f"{field}: {raw!r} is not an ISO 8601 date-time") from err
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


def _places(raw: object, at: datetime) -> list[Place]:
    places: list[Place] = []
    for index, item in enumerate(objects(raw, "places", single_allowed=True)):
        where = f"places[{index}]"
        name = item.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest(f"{where}.name is required")
        places.append(
            Place(
                id=new_object_id(),
                name=name,
                address=optional_str(item, "address", f"{where}.address"),
                source=optional_str(item, "source", f"{where}.source"),
                created_at=at,
            )
        )
    return places


def _invitees(raw: object, creator: User, seed: Seed) -> list[Invitee]:
    # Vyte lists the creator first, flagged as the "super user" of the event.
    invitees = [
        Invitee(
            id=new_object_id(),
            email=creator.email,
            full_name=creator.full_name,
            phone=None,
            user=creator.id,
            timezone=creator.timezone,
            su=True,
        )
    ]
    seen = set(creator.emails)
    for index, item in enumerate(objects(raw, "invitees", single_allowed=True)):
        where = f"invitees[{index}]"
        email = item.get("email")
        if not isinstance(email, str) or "@" not in email or any(c.isspace() for c in email):
            raise BadRequest(f"{where}.email must be an email address")
        email = email.lower()
        if email in seen:
            continue
        seen.add(email)
        known: User | None = seed.users_by_email.get(email)
        invitees.append(
            Invitee(
                id=new_object_id(),
                email=email,
                full_name=optional_str(item, "full_name", f"{where}.full_name")
                or (known.full_name if known else None),
                phone=optional_str(item, "phone", f"{where}.phone"),
                user=known.id if known else None,
                timezone=known.timezone if known else None,
                su=False,
            )
        )
    return invitees


def _messages(raw: object, creator: User, at: datetime) -> list[Message]:
    messages: list[Message] = []
    for index, item in enumerate(objects(raw, "messages", single_allowed=True)):
        body = item.get("body")
        if not isinstance(body, str):
            raise BadRequest(f"messages[{index}].body must be a string")
        messages.append(Message(new_object_id(), body, creator.email, creator.id, at))
    return messages

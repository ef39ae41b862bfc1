"""Vyte's wire format as attrs classes, and the one converter that reads and writes it.

Only the fields the gateway uses are modelled; Vyte's other fields are ignored.
"""

from __future__ import annotations

from typing import Any

import attrs
import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override


@attrs.frozen
class SlotTime:
    date_time: str


@attrs.frozen
class SlotWindow:
    start: SlotTime
    end: SlotTime


@attrs.frozen
class Slots:
    timezone: str
    slots: tuple[SlotWindow, ...]


@attrs.frozen
class Creator:
    user: str | None = None
    email: str | None = None
    full_name: str | None = None


@attrs.frozen
class Confirmed:
    flag: bool = False
    # Which of the event's dates was chosen (Vyte leaves the dates' own flags false).
    date_id: str | None = None


@attrs.frozen
class EventDate:
    date: str
    end_date: str
    all_day: bool = False
    id: str | None = None


@attrs.frozen
class EventPlace:
    name: str | None = None
    address: str | None = None
    id: str | None = None


@attrs.frozen
class EventInvitee:
    email: str | None = None
    full_name: str | None = None
    phone: str | None = None
    su: bool = False


@attrs.frozen
class Event:
    id: str
    title: str = ""
    created_by: Creator = Creator()
    confirmed: Confirmed = Confirmed()
    dates: tuple[EventDate, ...] = ()
    places: tuple[EventPlace, ...] = ()
    invitees: tuple[EventInvitee, ...] = ()
    cancelled: str | None = None
    timezone: str | None = None
    vyteme: bool = False
    created_at: str | None = None
    updated_at: str | None = None


@attrs.frozen
class NewEventDate:
    date: str
    end_date: str
    all_day: bool = False


@attrs.frozen
class NewPlace:
    name: str
    address: str | None = None


@attrs.frozen
class NewInvitee:
    email: str
    full_name: str | None = None
    phone: str | None = None


@attrs.frozen
class Message:
    body: str


@attrs.frozen
class NewEvent:
    """The body of POST /v2/events for the 1-to-1 ("vyteme") flow."""

    title: str
    created_by: Creator
    dates: tuple[NewEventDate, ...]
    invitees: tuple[NewInvitee, ...]
    places: tuple[NewPlace, ...]
    messages: tuple[Message, ...]
    timezone: str
    vyteme: bool = True


@attrs.frozen
class EventChanges:
    """The body of PUT /v2/events/{id}."""

    title: str | None = None
    dates: tuple[NewEventDate, ...] | None = None
    places: tuple[NewPlace, ...] | None = None


@attrs.frozen
class Hook:
    id: str
    action: str
    target_url: str


@attrs.frozen
class HookNotification:
    """What Vyte POSTs to a hook's target_url."""

    action: str
    resource: Event
    organization: str | None = None


def _cancelled(value: Any, _: type) -> str | None:
    # A timestamp once cancelled; tolerate booleans and nulls.
    if value is None or value is False:
        return None
    return str(value)


def slot_pairs(data: Any) -> list[tuple[str, str]]:
    """The (start, end) `dateTime` texts of a /v2/slots answer, read by hand: it is read once
    per participant of every cold query, and cattrs' generated path (a dispatch and its checks
    per window and per instant) was the larger part of that call. Values are taken as cattrs
    would (text by ``str``); a missing key or a wrong shape raises, as there."""
    windows = data["slots"]
    if not isinstance(windows, list | tuple):
        raise TypeError(f"slots is {type(windows).__name__}, not a list")
    if "timezone" not in data:  # required, as in Slots
        raise KeyError("timezone")
    return [(str(w["start"]["dateTime"]), str(w["end"]["dateTime"])) for w in windows]


def _structure_slots(data: Any, _: type) -> Slots:
    return Slots(
        timezone=str(data["timezone"]),
        slots=tuple(SlotWindow(SlotTime(start), SlotTime(end)) for start, end in slot_pairs(data)),
    )


def _make_converter() -> cattrs.Converter:
    conv = cattrs.Converter(omit_if_default=False)
    conv.register_structure_hook(
        SlotTime, make_dict_structure_fn(SlotTime, conv, date_time=override(rename="dateTime"))
    )
    conv.register_structure_hook(Slots, _structure_slots)
    for cls in (EventDate, EventPlace, Hook):
        conv.register_structure_hook(
            cls, make_dict_structure_fn(cls, conv, id=override(rename="_id"))
        )
    conv.register_structure_hook(
        Event,
        make_dict_structure_fn(
            Event,
            conv,
            id=override(rename="_id"),
            created_at=override(rename="createdAt"),
            updated_at=override(rename="updatedAt"),
            cancelled=override(struct_hook=_cancelled),
        ),
    )

    def organization(value: Any, _: type) -> str | None:
        # Vyte sends either the organization's id or the organization object.
        if isinstance(value, dict):
            ident = value.get("_id")
            return ident if isinstance(ident, str) else None
        return value if isinstance(value, str) else None

    conv.register_structure_hook(
        HookNotification,
        make_dict_structure_fn(
            HookNotification, conv, organization=override(struct_hook=organization)
        ),
    )
    # Requests leave out what is unset rather than sending nulls.
    for out_cls in (NewInvitee, NewPlace, EventChanges, Creator):
        conv.register_unstructure_hook(
            out_cls, make_dict_unstructure_fn(out_cls, conv, _cattrs_omit_if_default=True)
        )
    return conv


converter = _make_converter()

"""The strict request converter: no coercion, no unknown keys, every bad field named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.errors import ValidationFailed
from service.http.requests import availability_query, booking_command, subscription_command

JOHN = "5f3feb7821046c3bb9327e6a"


def body(**changes: Any) -> dict[str, Any]:
    start = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    data: dict[str, Any] = {
        "organizer": JOHN,
        "title": "Planning",
        "start": start.isoformat(),
        "duration": 30,
        "invitees": [{"email": "jane@example.com"}],
    }
    data.update(changes)
    return {k: v for k, v in data.items() if v is not None}


def fields(data: Any) -> list[tuple[str, str]]:
    with pytest.raises(ValidationFailed) as caught:
        booking_command(data, ())
    return [(e.field, e.message) for e in caught.value.errors]


def test_a_valid_body_becomes_a_command() -> None:
    command = booking_command(body(place={"name": "Room 1"}), ())
    assert command.end - command.start == timedelta(minutes=30)
    assert command.organizer.given == JOHN and command.place is not None
    assert command.check_availability is True


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"check_availability": "false"}, "check_availability"),
        ({"check_availability": 0}, "check_availability"),
        ({"title": 1}, "title"),
        ({"duration": 30.0}, "duration"),
        ({"duration": True}, "duration"),
        ({"duration": "30"}, "duration"),
        ({"message": 5}, "message"),
        ({"invitees": [{"email": "jane@example.com", "full_name": 7}]}, "invitees[0].full_name"),
        ({"invitees": "jane@example.com"}, "invitees"),
        ({"invitees": ["jane@example.com"]}, "invitees[0]"),
        ({"place": "Room 1"}, "place"),
        ({"place": {"name": "Room 1", "floor": 2}}, "place.floor"),
    ],
)
def test_nothing_is_coerced(changes: dict[str, Any], field: str) -> None:
    assert field in [f for f, _ in fields(body(**changes))]


def test_every_bad_field_is_named_at_once() -> None:
    found = fields(
        body(
            title="",
            colour="red",
            invitees=[{"email": "a@example.com"}, {"email": "nope", "age": 3}],
        )
    )
    assert ("colour", "unknown field") in found
    assert ("invitees[1].age", "unknown field") in found
    assert ("invitees[1].email", "must be a valid email address") in found
    assert "title" in [f for f, _ in found]


def test_missing_fields_are_required() -> None:
    found = fields({"duration": 30})
    assert {f for f, m in found if m == "required"} == {"organizer", "title", "start", "invitees"}


def test_callback_hosts_apply_on_input() -> None:
    with pytest.raises(ValidationFailed) as caught:
        booking_command(body(callback_url="https://elsewhere.example/h"), ("*.internal",))
    assert [e.field for e in caught.value.errors] == ["callback_url"]
    with pytest.raises(ValidationFailed):
        subscription_command(
            {"url": "https://elsewhere.example/h", "events": ["booking.confirmed"]},
            ("*.internal",),
        )


def test_query_parameters_are_text_with_strict_forms() -> None:
    today = datetime.now(UTC).date()
    params = {
        "participants": f"{JOHN},Jane@Example.com,jane@example.com",
        "duration": "30",
        "from": today.isoformat(),
        "to": (today + timedelta(days=1)).isoformat(),
        "partial": "true",
        "group": "day",
    }
    query, by_day = availability_query(params, [])
    assert [p.given for p in query.participants] == [JOHN, "Jane@Example.com"]
    assert (query.step, query.required, query.partial, by_day) == (30, 2, True, True)
    for name, value in (("partial", "1"), ("duration", "30.0"), ("step", "-5"), ("from", "x")):
        with pytest.raises(ValidationFailed) as caught:
            availability_query({**params, name: value}, [])
        assert [e.field for e in caught.value.errors] == [name]
    with pytest.raises(ValidationFailed) as caught:
        availability_query({**params, "colour": "red"}, [])
    assert [(e.field, e.message) for e in caught.value.errors] == [("colour", "unknown parameter")]

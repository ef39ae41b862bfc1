"""The text and time-zone rules of the edge (DESIGN §3.1, §3.2), on their own."""

from __future__ import annotations

from importlib import resources

import pytest

from service.domain.participant import parse_timezone
from service.errors import ValidationFailed
from service.http.requests import booking_command
from service.http.schema import text_errors


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"title": "plain, accents é and emoji \U0001f600"}, []),
        ({"title": "\ud800"}, [("title", "must be valid Unicode (no lone surrogates)")]),
        ({"title": "a\x7f"}, [("title", "must not contain control characters")]),
        ({"title": "a\x9f"}, [("title", "must not contain control characters")]),
        ({"title": "a\u200bb\u00a0"}, []),  # format and space characters are not Cc
        ({"message": "line\nnext\ttab"}, []),
        (
            {"message": "a\rb"},
            [("message", "must not contain control characters other than line feed and tab")],
        ),
        ({"place": {"message": "a\nb"}}, []),  # the exception is the field's name
        ({"place": {"name": "a\nb"}}, [("place.name", "must not contain control characters")]),
        (
            {"invitees": [{}, {"email": "\x00"}]},
            [("invitees[1].email", "must not contain control characters")],
        ),
        ({"a\x00": 1}, [("a\\x00", "field name must not contain control characters")]),
        ("\x1b", [("body", "must not contain control characters")]),
        ({"n": 1, "b": True, "x": None, "f": 1.5}, []),
    ],
)
def test_text_errors(data: object, expected: list[tuple[str, str]]) -> None:
    assert [(e.field, e.message) for e in text_errors(data)] == expected


def test_text_errors_walk_any_depth_without_recursion() -> None:
    deep: object = "\x01"
    for _ in range(5000):
        deep = [deep]
    (error,) = text_errors({"title": deep})
    assert error.field == "title" + "[0]" * 5000


def test_bad_text_is_named_with_every_other_error_once_each() -> None:
    with pytest.raises(ValidationFailed) as caught:
        booking_command(
            {
                "organizer": "5f3feb7821046c3bb9327e6a",
                "title": "\ud800",
                "start": "x",
                "invitees": [{"email": "a@b.co", "full_name": "\x07"}],
                "message": "ok\n",
            },
            (),
        )
    assert sorted(e.field for e in caught.value.errors) == [
        "invitees[0].full_name",
        "start",
        "title",
    ]


def test_time_zones_are_tzdatas_list() -> None:
    listed = resources.files("tzdata").joinpath("zones").read_text().split()
    assert "Europe/Paris" in listed and "UTC" in listed
    assert all(parse_timezone(name) is not None for name in listed if name != "Factory")
    for name in ("localtime", "Factory", "posixrules", "posix/UTC", "right/UTC", "", "/etc/x"):
        assert parse_timezone(name) is None, name

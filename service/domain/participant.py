"""Who can be asked about or invited to a meeting: Vyte user ids, emails, IANA time zones."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from zoneinfo import ZoneInfo

import attrs

_USER_ID = re.compile(r"^[0-9a-fA-F]{24}$")
EMAIL = re.compile(r"^[^@\s,]+@[^@\s,]+\.[^@\s,]+$")


@attrs.frozen
class Participant:
    """A Vyte user id or an email, as the caller wrote it."""

    given: str

    @property
    def is_email(self) -> bool:
        return "@" in self.given

    @property
    def key(self) -> str:
        """Identity for de-duplication and lookups: emails and hex ids are case-insensitive."""
        return self.given.lower()


def parse_participant(value: str) -> Participant | None:
    """A Participant for a Vyte user id (24 hex digits) or an email, else None."""
    value = value.strip()
    if _USER_ID.match(value) or EMAIL.match(value):
        return Participant(value)
    return None


# In tzdata's files but no place's time: "Factory" is a placeholder zone ("-00").
_NOT_ZONES = frozenset({"Factory"})


@cache
def _zone_names() -> frozenset[str]:
    # tzdata's own list, not the names found on this machine's disk: those include
    # `localtime` (whatever the host is set to), `posixrules` and the like.
    listed = resources.files("tzdata").joinpath("zones").read_text(encoding="utf-8")
    return frozenset(listed.split()) - _NOT_ZONES


def parse_timezone(value: str) -> ZoneInfo | None:
    """A ZoneInfo for a name of tzdata's list (not `localtime`, `Factory` ...), else None."""
    if value not in _zone_names():
        return None
    try:
        return ZoneInfo(value)
    except (ValueError, KeyError, OSError):
        return None


@attrs.frozen
class ParticipantState:
    """How reading one participant's free time went.

    `status`: ok, unknown (Vyte does not know them), timeout, unavailable or error.
    """

    participant: Participant
    status: str = "ok"
    detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

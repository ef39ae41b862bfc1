"""Who can be asked about or invited to a meeting: Vyte user ids, emails, IANA time zones."""

from __future__ import annotations

import re
from functools import cache
from zoneinfo import ZoneInfo, available_timezones

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


@cache
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones()) | {"UTC"}


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

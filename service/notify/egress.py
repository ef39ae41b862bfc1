"""Where webhooks may go: the CALLBACK_HOSTS and CALLBACK_DENY_NETWORKS rules applied to a
receiver URL, as pure checks shared by input validation and every delivery attempt."""

from __future__ import annotations

import re
from enum import StrEnum
from fnmatch import fnmatchcase

import attrs
from yarl import URL

from service.domain.networks import (
    DEFAULT_DENY_NETWORKS,
    Network,
    address_denied,
    literal_address,
)

# A part that looks numeric to a URL parser or resolver: a last label like this makes the
# host an (attempted) IPv4 address, never a name.
_NUMERIC_LABEL = re.compile(r"0x[0-9a-f]*|[0-9]+")
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")


class Refusal(StrEnum):
    """Why a webhook may not go to a URL; the value is the message for the request field."""

    UNUSABLE = "must be an http(s) URL"
    HOST = "host is not allowed by CALLBACK_HOSTS"
    ADDRESS = "address is not allowed by CALLBACK_DENY_NETWORKS"


@attrs.frozen
class EgressPolicy:
    """The egress rules of the settings: allowed host globs (any when empty), denied networks."""

    hosts: tuple[str, ...] = ()
    deny: tuple[Network, ...] = DEFAULT_DENY_NETWORKS

    def refusal(self, url: str) -> Refusal | None:
        """Why a webhook may not be sent to `url`, or None when it may (as far as can be told
        before resolving its name).

        The host is read as the HTTP client will read it (yarl normalises Unicode digits and
        dots, so `①②⑦。0。0。1` is 127.0.0.1), then as the resolver would.
        """
        host = _host(url)
        if host is None:
            return Refusal.UNUSABLE
        address = literal_address(host)
        if address is None and not _is_name(host):
            return Refusal.UNUSABLE
        if self.hosts and not any(fnmatchcase(host.removesuffix("."), p) for p in self.hosts):
            return Refusal.HOST
        if address is not None and address_denied(address, self.deny):
            return Refusal.ADDRESS
        return None


def _host(url: str) -> str | None:
    try:
        parsed = URL(url)
        host = parsed.raw_host
        parsed.port  # noqa: B018 - raises ValueError for a port out of range
    except (ValueError, TypeError, UnicodeError):
        return None
    if parsed.scheme not in ("http", "https") or not host:
        return None
    return host.lower()


def _is_name(host: str) -> bool:
    """A DNS name (IDNA-encoded already) whose last label is not numeric: anything else is
    a malformed address, and a resolver's reading of it cannot be foreseen."""
    labels = host.removesuffix(".").split(".")
    return (
        len(host) <= 253
        and all(_LABEL.fullmatch(label) for label in labels)
        and not _NUMERIC_LABEL.fullmatch(labels[-1])
    )

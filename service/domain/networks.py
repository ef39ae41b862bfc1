"""IP networks and addresses as webhook egress judges them: CALLBACK_DENY_NETWORKS, and IP
literals read the way URL parsers and resolvers read them (inet_aton forms, IPv4 in IPv6)."""

from __future__ import annotations

import re
from ipaddress import (
    IPv4Address,
    IPv4Network,
    IPv6Address,
    IPv6Network,
    ip_address,
    ip_network,
)

Address = IPv4Address | IPv6Address
Network = IPv4Network | IPv6Network

# Loopback, unspecified (connecting to it reaches this host), link-local (cloud metadata
# lives at 169.254.169.254 and fd00:ec2::254), multicast. Private ranges stay allowed:
# internal receivers live there.
DEFAULT_DENY_NETWORKS: tuple[Network, ...] = tuple(
    ip_network(cidr)
    for cidr in (
        "127.0.0.0/8",
        "::1/128",
        "0.0.0.0/8",
        "::/128",
        "169.254.0.0/16",
        "fe80::/10",
        "224.0.0.0/4",
        "ff00::/8",
        "fd00:ec2::254/128",
    )
)

# IPv6 prefixes that carry an IPv4 address in their last 32 bits and reach it when
# connected to: IPv4-compatible (deprecated, still routed by some stacks) and NAT64's
# well-known prefix. IPv4-mapped, 6to4 and Teredo have their own accessors.
_V4_IN_LOW_BITS = (ip_network("::/96"), ip_network("64:ff9b::/96"))

# One part of an IPv4 address as inet_aton reads it: hex, octal (leading 0), or decimal.
_AATON_PART = re.compile(r"0x[0-9a-f]*|0[0-7]*|[1-9][0-9]*")


def parse_deny_networks(raw: str) -> tuple[Network, ...]:
    """CALLBACK_DENY_NETWORKS: comma-separated CIDRs; empty means the default, `none` nothing."""
    value = raw.strip()
    if not value:
        return DEFAULT_DENY_NETWORKS
    if value.lower() == "none":
        return ()
    networks: list[Network] = []
    for i, item in enumerate(part.strip() for part in value.split(",")):
        if not item:
            continue
        try:
            networks.append(ip_network(item))
        except ValueError:
            raise ValueError(
                f"entry {i + 1} ({item!r}) is not a CIDR network such as 10.0.0.0/8"
                " (host bits must be zero); use `none` to deny nothing"
            ) from None
    # Only separators: as good as empty. Denying nothing must be asked for with `none`.
    return tuple(networks) or DEFAULT_DENY_NETWORKS


def inet_aton(text: str) -> IPv4Address | None:
    """`text` read as an IPv4 address the way inet_aton (and so the resolver) reads it:
    1 to 4 parts, each hex, octal or decimal, the last filling the remaining bytes
    (`127.1`, `0x7f000001`, `2130706433`, `0177.0.0.1`)."""
    parts = text.lower().split(".")
    if not 1 <= len(parts) <= 4 or not all(_AATON_PART.fullmatch(p) for p in parts):
        return None
    values = [
        int(p[2:] or "0", 16) if p.startswith("0x") else int(p, 8 if p.startswith("0") else 10)
        for p in parts
    ]
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        return None
    number = last
    for i, v in enumerate(head):
        number |= v << (8 * (3 - i))
    return IPv4Address(number)


def literal_address(host: str) -> Address | None:
    """The address `host` (as in a URL, brackets optional) names when it is an IP literal in
    any spelling a URL parser or resolver accepts; None when it is a name."""
    text = host.lower()
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    if ":" in text:
        # The zone of a link-local address (`%25eth0` in a URL) does not change the address.
        try:
            return IPv6Address(text.split("%", 1)[0])
        except ValueError:
            return None
    return inet_aton(text.removesuffix("."))


def reached_addresses(address: Address) -> tuple[Address, ...]:
    """`address` and any IPv4 address it leads to (IPv4-mapped, -compatible, NAT64, 6to4,
    Teredo), since connecting to those reaches the embedded one."""
    if isinstance(address, IPv4Address):
        return (address,)
    embedded: list[Address] = [address]
    if address.ipv4_mapped is not None:
        embedded.append(address.ipv4_mapped)
    if address.sixtofour is not None:
        embedded.append(address.sixtofour)
    if address.teredo is not None:
        embedded.extend(address.teredo)
    if any(address in prefix for prefix in _V4_IN_LOW_BITS):
        embedded.append(IPv4Address(int(address) & 0xFFFFFFFF))
    return tuple(embedded)


def address_denied(address: Address | str, deny: tuple[Network, ...]) -> bool:
    """Whether connecting to `address` would reach one of the `deny` networks.

    A text that is not an address (a resolver answer we cannot read) counts as denied.
    """
    if isinstance(address, str):
        try:
            address = ip_address(address.split("%", 1)[0])
        except ValueError:
            return True
    return any(a in net for a in reached_addresses(address) for net in deny)

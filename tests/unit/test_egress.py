"""Webhook egress rules: CALLBACK_DENY_NETWORKS parsing, IP literals in every spelling the
URL parser or the resolver accepts, CALLBACK_HOSTS globs."""

from __future__ import annotations

import socket
from ipaddress import IPv4Address, ip_address, ip_network

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult
from hypothesis import given
from hypothesis import strategies as st

from service.config import ConfigError, Settings
from service.domain.networks import (
    DEFAULT_DENY_NETWORKS,
    address_denied,
    inet_aton,
    literal_address,
    parse_deny_networks,
)
from service.notify.connector import AddressNotAllowed, GuardedResolver, guarded_socket_factory
from service.notify.egress import EgressPolicy, Refusal

REQUIRED = {"VYTE_API_KEY": "k" * 50, "API_TOKENS": "crm:tok-1"}
DEFAULT = EgressPolicy()


def test_the_default_deny_list_is_the_designs() -> None:
    assert Settings.from_environ(REQUIRED).callback_deny_networks == tuple(
        ip_network(c)
        for c in (
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
    for blank in ("", "  ", " , "):
        settings = Settings.from_environ({**REQUIRED, "CALLBACK_DENY_NETWORKS": blank})
        assert settings.callback_deny_networks == DEFAULT_DENY_NETWORKS, repr(blank)
        assert parse_deny_networks(blank) == DEFAULT_DENY_NETWORKS


def test_deny_networks_are_configurable_and_none_denies_nothing() -> None:
    env = {**REQUIRED, "CALLBACK_DENY_NETWORKS": " 10.0.0.0/8 ,fd00::/8,192.168.1.7"}
    assert Settings.from_environ(env).callback_deny_networks == (
        ip_network("10.0.0.0/8"),
        ip_network("fd00::/8"),
        ip_network("192.168.1.7/32"),
    )
    for none in ("none", "NONE", " None "):
        env = {**REQUIRED, "CALLBACK_DENY_NETWORKS": none}
        assert Settings.from_environ(env).callback_deny_networks == ()


@pytest.mark.parametrize("raw", ["10.0.0.0/33", "localhost", "10.1.2.3/8", "none,10.0.0.0/8"])
def test_a_bad_deny_list_stops_start_up_naming_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ({**REQUIRED, "CALLBACK_DENY_NETWORKS": raw})
    assert set(caught.value.problems) == {"CALLBACK_DENY_NETWORKS"}
    assert "CALLBACK_DENY_NETWORKS" in str(caught.value)


LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "127.0.0.1.",
    "127.1",
    "127.0.1",
    "0x7f000001",
    "0X7F000001",
    "0x7f.1",
    "0x7f.0x0.0x0.0x1",
    "2130706433",
    "017700000001",
    "0177.0.0.1",
    "00000177.0.0.01",
    "127.000.000.001",
    "127.255.255.254",
    "[::1]",
    "[0:0:0:0:0:0:0:1]",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "[0:0:0:0:0:ffff:127.0.0.1]",
    "[::127.0.0.1]",
    "[64:ff9b::127.0.0.1]",
    "[2002:7f00:1::]",
]
DENIED_HOSTS = [
    *LOOPBACK_SPELLINGS,
    "0.0.0.0",
    "0",
    "0x0",
    "[::]",
    "[::ffff:0.0.0.0]",
    "169.254.169.254",
    "0xa9fea9fe",
    "2852039166",
    "[::ffff:169.254.169.254]",
    "[::ffff:a9fe:a9fe]",
    "[fe80::1]",
    "[fe80::1%25eth0]",
    "224.0.0.1",
    "239.255.255.250",
    "[ff02::1]",
    "[fd00:ec2::254]",
    # Unicode digits and dots the URL parser folds to ASCII.
    "\u2460\u2461\u2466.0.0.1",
    "127\u30020\u30020\u30021",
    "\uff11\uff12\uff17.0.0.1",
]


@pytest.mark.parametrize("host", DENIED_HOSTS)
def test_an_ip_literal_in_a_denied_network_is_refused_in_any_spelling(host: str) -> None:
    for url in (f"http://{host}/hook", f"https://user:pw@{host}:8443/hook?token=t"):
        assert DEFAULT.refusal(url) == Refusal.ADDRESS, url
        assert EgressPolicy(deny=()).refusal(url) is None, url


@pytest.mark.parametrize(
    "host", [h for h in LOOPBACK_SPELLINGS if not h.startswith("[") and not h.endswith(".")]
)
def test_our_reading_of_ipv4_spellings_agrees_with_the_resolver(host: str) -> None:
    # AI_NUMERICHOST: the C library parses the number itself, no query leaves the machine.
    answers = socket.getaddrinfo(host, 80, proto=socket.IPPROTO_TCP, flags=socket.AI_NUMERICHOST)
    assert {ip_address(a[4][0]) for a in answers} == {literal_address(host)}


@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_inet_aton_reads_every_spelling_of_an_address_alike(number: int) -> None:
    address = IPv4Address(number)
    a, b, c, d = address.packed
    spellings = [
        str(address),
        str(number),
        hex(number),
        "0" + oct(number)[2:],
        f"{a}.{(b << 16) | (c << 8) | d}",
        f"{a}.{b}.{(c << 8) | d}",
        f"{a:#o}.{b:#x}.{c}.{d}".replace("0o", "0"),
    ]
    for spelling in spellings:
        assert inet_aton(spelling) == address, spelling
        assert socket.inet_aton(spelling) == address.packed, spelling


@pytest.mark.parametrize(
    "text",
    ["256.0.0.1", "1.2.3.4.5", "1..2", "", "0x", "08.0.0.1", "1.2.3.256", "1.2.65536", "+1", "1_0"],
)
def test_inet_aton_refuses_what_is_not_an_address(text: str) -> None:
    if text == "0x":
        assert inet_aton(text) == IPv4Address(0)  # glibc reads a bare 0x as zero
        return
    assert inet_aton(text) is None


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "gopher://example.com/",
        "http:///hook",
        "http://exa mple.com/hook",
        "http://example.com:99999/hook",
        "http://a..example.com/hook",
        "http://" + "a" * 64 + ".example.com/hook",
        "http://256.0.0.1/hook",
        "http://1.2.3.4.5/hook",
        "http://example.0x10/hook",
        "http://[::g]/hook",
        "http://%31%32%37.0.0.1/hook",
        "http://127.0.0.1%2e/hook",
        "http://exa\\mple.com/hook",
        "not a url",
    ],
)
def test_what_is_neither_a_name_nor_an_address_is_unusable(url: str) -> None:
    assert DEFAULT.refusal(url) == Refusal.UNUSABLE
    assert EgressPolicy(deny=()).refusal(url) == Refusal.UNUSABLE


@pytest.mark.parametrize(
    "url",
    [
        "https://hooks.example.com/in?token=abc",
        "http://crm.internal:8080/hook",
        "http://10.0.0.5/hook",
        "http://172.16.3.4/hook",
        "http://192.168.1.1/hook",
        "http://[fd12:3456::1]/hook",
        "http://8.8.8.8/hook",
        "http://localhost/hook",  # a name: refused after resolution, not here
        "http://b\u00fccher.example/hook",
    ],
)
def test_names_and_allowed_addresses_pass_before_resolution(url: str) -> None:
    assert DEFAULT.refusal(url) is None


def test_private_ranges_can_be_denied_too() -> None:
    policy = EgressPolicy(deny=(*DEFAULT_DENY_NETWORKS, ip_network("10.0.0.0/8")))
    assert policy.refusal("http://10.1.2.3/hook") == Refusal.ADDRESS
    assert policy.refusal("http://012.1.2.3/hook") == Refusal.ADDRESS
    assert policy.refusal("http://[::ffff:10.1.2.3]/hook") == Refusal.ADDRESS
    assert policy.refusal("http://11.1.2.3/hook") is None


def test_callback_hosts_globs_match_the_host_the_client_connects_to() -> None:
    policy = EgressPolicy(hosts=("*.internal", "hooks.example.com"))
    assert policy.refusal("https://crm.internal/x") is None
    assert policy.refusal("https://CRM.Internal./x") is None
    assert policy.refusal("https://hooks.example.com:8443/x") is None
    assert policy.refusal("https://evil.example.com/x") == Refusal.HOST
    assert policy.refusal("https://crm.internal.evil.com/x") == Refusal.HOST
    assert policy.refusal("https://user@crm.internal@evil.com/x") == Refusal.HOST
    assert policy.refusal("https://evil.com#@crm.internal/x") == Refusal.HOST
    assert policy.refusal("https://evil.com?@crm.internal/x") == Refusal.HOST
    assert policy.refusal("https://127.0.0.1/x") == Refusal.HOST


@pytest.mark.parametrize(
    ("address", "denied"),
    [
        ("127.0.0.1", True),
        ("::ffff:127.0.0.1", True),
        ("169.254.169.254", True),
        ("fe80::1%eth0", True),
        ("10.0.0.1", False),
        ("2001:db8::1", False),
        ("not an address", True),
    ],
)
def test_resolver_answers_are_judged_with_their_embedded_addresses(
    address: str, denied: bool
) -> None:
    assert address_denied(address, DEFAULT_DENY_NETWORKS) is denied


class _Answers(AbstractResolver):
    """A resolver that answers from a table: no query leaves the process."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(hostname=host, host=a, port=port, family=family, proto=0, flags=0)
            for a in self.answers
        ]

    async def close(self) -> None:
        pass


async def test_the_resolver_keeps_only_allowed_answers() -> None:
    mixed = GuardedResolver(DEFAULT_DENY_NETWORKS, _Answers(["127.0.0.1", "10.0.0.5", "::1"]))
    assert [a["host"] for a in await mixed.resolve("crm.internal", 443)] == ["10.0.0.5"]
    for denied in (["127.0.0.1"], ["::ffff:169.254.169.254"], ["fe80::1%eth0", "::"]):
        resolver = GuardedResolver(DEFAULT_DENY_NETWORKS, _Answers(denied))
        with pytest.raises(AddressNotAllowed):
            await resolver.resolve("rebound.example", 443)
    anything = GuardedResolver((), _Answers(["127.0.0.1"]))
    assert [a["host"] for a in await anything.resolve("localhost", 80)] == ["127.0.0.1"]


def test_the_socket_factory_refuses_denied_addresses_only() -> None:
    factory = guarded_socket_factory(DEFAULT_DENY_NETWORKS)
    with pytest.raises(AddressNotAllowed):
        factory((socket.AF_INET6, socket.SOCK_STREAM, 6, "", ("::ffff:127.0.0.1", 80, 0, 0)))
    with factory((socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", 80))) as sock:
        assert sock.family == socket.AF_INET

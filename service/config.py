"""Service settings: read once from an environment mapping at the edge, then frozen."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Mapping
from typing import Protocol, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

import attrs

from service.domain.networks import DEFAULT_DENY_NETWORKS as DENY
from service.domain.networks import Network, parse_deny_networks

T = TypeVar("T")

DEFAULT_STORE_URL = "sqlite:///./data/booking-gateway.sqlite3"
# About a day in total: quick retries first, then hourly-ish ones.
DEFAULT_WEBHOOK_SCHEDULE = (
    5.0,
    30.0,
    120.0,
    600.0,
    1800.0,
    3600.0,
    7200.0,
    14400.0,
    28800.0,
    28800.0,
)
SANDBOX_CALLER = "sandbox"
SANDBOX_TOKEN = "sandbox-token"  # noqa: S105 - the documented token of the local demo mode
LOG_LEVELS = ("debug", "info", "warning", "error", "critical")
# redis-py's TLS options that rediss:// URLs may carry as query options (redis-py reads
# them from the URL itself); the value is the set of values allowed, or None for any.
REDIS_TLS_OPTIONS: Mapping[str, tuple[str, ...] | None] = {
    "ssl_ca_certs": None,
    "ssl_ca_path": None,
    "ssl_certfile": None,
    "ssl_keyfile": None,
    "ssl_password": None,
    "ssl_cert_reqs": ("none", "optional", "required"),
    "ssl_check_hostname": ("true", "false"),
}


class ConfigError(Exception):
    """Start-up configuration is invalid; the message lists every bad variable."""

    def __init__(self, problems: Mapping[str, str]) -> None:
        self.problems = dict(problems)
        lines = "\n".join(f"  {name}: {why}" for name, why in sorted(self.problems.items()))
        super().__init__(f"invalid configuration:\n{lines}")


@attrs.frozen
class Settings:
    """Everything the service reads from its environment (DESIGN §2)."""

    vyte_base_url: str = "https://api.vyte.in"
    vyte_api_key: str | None = attrs.field(default=None, repr=False)
    # token -> caller name
    api_tokens: Mapping[str, str] = attrs.field(factory=dict, repr=False)
    store_url: str = DEFAULT_STORE_URL
    webhook_secrets: tuple[bytes, ...] = attrs.field(default=(), repr=False)
    public_url: str | None = None
    vyte_webhook_token: str | None = attrs.field(default=None, repr=False)
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "info"
    log_format: str = "json"
    slot_cache_ttl: float = 30.0
    #: with a Redis store, replicas also share their slot answers through it
    slot_cache_shared: bool = True
    vyte_concurrency: int = 64
    vyte_timeout: float = 10.0
    request_budget: float = 15.0
    breaker_threshold: int = 5
    breaker_cooldown: float = 10.0
    retry_base: float = 1.0
    retry_cap: float = 300.0
    callback_hosts: tuple[str, ...] = ()
    #: CIDRs no webhook is sent to, checked on input and after DNS resolution (DESIGN §3.5)
    callback_deny_networks: tuple[Network, ...] = DENY
    shutdown_timeout: float = 20.0
    #: seconds /readyz answers 503 before the listener closes, so load balancers stop
    #: sending new requests first (keep drain_delay + shutdown_timeout under the grace period)
    drain_delay: float = 0.0
    webhook_retry_schedule: tuple[float, ...] = DEFAULT_WEBHOOK_SCHEDULE
    #: days finished webhook deliveries and operations are kept (listed, redeliverable)
    retention_days: float = 7.0
    #: callers (names from API_TOKENS) that see, change and list every booking
    admin_callers: frozenset[str] = frozenset()
    #: webhook subscriptions one caller may hold
    max_subscriptions: int = 20
    #: seconds between re-reads of active bookings from Vyte; 0 disables
    resync_interval: float = 300.0
    #: seconds a create whose outcome is unknown is looked for in Vyte before its slot goes
    unknown_outcome_timeout: float = 600.0
    sandbox: bool = False

    @classmethod
    def from_environ(
        cls, env: Mapping[str, str], *, sandbox: bool = False, isatty: bool = False
    ) -> Settings:
        """Build settings from `env`; raise ConfigError naming every bad variable.

        With `sandbox`, the Vyte key and API tokens may be absent: the embedded
        emulator stands in for Vyte and a demo token is accepted.
        """
        problems: dict[str, str] = {}
        get = _getter(env, problems)
        vyte_key, tokens = _credentials(env, get, problems, sandbox=sandbox)
        callers = frozenset(tokens.values())
        # In the sandbox the demo caller, when it is one, sees every booking.
        admins = frozenset({SANDBOX_CALLER}) & callers if sandbox else frozenset()

        settings = cls(
            vyte_base_url=get("VYTE_BASE_URL", _http_url, "https://api.vyte.in").rstrip("/"),
            vyte_api_key=vyte_key,
            api_tokens=tokens,
            store_url=get("STORE_URL", _store_url, DEFAULT_STORE_URL),
            webhook_secrets=get("WEBHOOK_SECRET", _webhook_secrets, ()),
            # Vyte only accepts https hook targets; the sandbox's own loopback gateway is http.
            public_url=get("PUBLIC_URL", _http_url if sandbox else _https_url, None),
            vyte_webhook_token=get("VYTE_WEBHOOK_TOKEN", _path_token, None),
            host=get("HOST", str, "127.0.0.1"),
            port=get("PORT", _bounded_int(1, 65535), 8080),
            log_level=get("LOG_LEVEL", _choice(LOG_LEVELS), "info"),
            log_format=get(
                "LOG_FORMAT", _choice(("json", "console")), "console" if isatty else "json"
            ),
            slot_cache_ttl=get("SLOT_CACHE_TTL", _bounded_float(0, 86400), 30.0),
            slot_cache_shared=get("SLOT_CACHE_SHARED", _choice(("true", "false")), "true")
            == "true",
            vyte_concurrency=get("VYTE_CONCURRENCY", _bounded_int(1, 10000), 64),
            vyte_timeout=get("VYTE_TIMEOUT", _bounded_float(0.001, 3600), 10.0),
            request_budget=get("REQUEST_BUDGET", _bounded_float(0.001, 3600), 15.0),
            breaker_threshold=get("BREAKER_THRESHOLD", _bounded_int(1, 10000), 5),
            breaker_cooldown=get("BREAKER_COOLDOWN", _bounded_float(0, 3600), 10.0),
            retry_base=get("RETRY_BASE", _bounded_float(0, 86400), 1.0),
            retry_cap=get("RETRY_CAP", _bounded_float(0, 86400), 300.0),
            callback_hosts=get("CALLBACK_HOSTS", _csv, ()),
            callback_deny_networks=get("CALLBACK_DENY_NETWORKS", parse_deny_networks, DENY),
            shutdown_timeout=get("SHUTDOWN_TIMEOUT", _bounded_float(0, 3600), 20.0),
            drain_delay=get("DRAIN_DELAY", _bounded_float(0, 3600), 0.0),
            webhook_retry_schedule=get(
                "WEBHOOK_RETRY_SCHEDULE", _schedule, DEFAULT_WEBHOOK_SCHEDULE
            ),
            retention_days=get("RETENTION_DAYS", _bounded_float(0.001, 3650), 7.0),
            admin_callers=get("ADMIN_CALLERS", _admin_callers(callers), admins),
            max_subscriptions=get("MAX_SUBSCRIPTIONS", _bounded_int(0, 10000), 20),
            resync_interval=get("RESYNC_INTERVAL", _bounded_float(0, 86400), 300.0),
            unknown_outcome_timeout=get(
                "UNKNOWN_OUTCOME_TIMEOUT", _bounded_float(0.001, 7 * 86400), 600.0
            ),
            sandbox=sandbox,
        )
        if settings.public_url and not settings.vyte_webhook_token:
            problems.setdefault("VYTE_WEBHOOK_TOKEN", "required when PUBLIC_URL is set")
        if problems:
            raise ConfigError(problems)
        return settings

    @property
    def store_is_redis(self) -> bool:
        return self.store_url.startswith(("redis://", "rediss://"))

    def secret_values(self) -> tuple[str, ...]:
        """Every secret string the settings hold, as it may appear in text: for log redaction.

        Webhook secrets are given both as `whsec_<base64>` and as the bare base64.
        """
        values: list[str] = [*self.api_tokens]
        if self.vyte_api_key:
            values.append(self.vyte_api_key)
        if self.vyte_webhook_token:
            values.append(self.vyte_webhook_token)
        for key in self.webhook_secrets:
            encoded = base64.b64encode(key).decode()
            values += [f"whsec_{encoded}", encoded]
        store = urlsplit(self.store_url)
        if store.password:
            # As written in the URL and as sent (percent-decoded).
            values += [store.password, unquote(store.password)]
        values += [v for k, v in parse_qsl(store.query) if k == "ssl_password" and v]
        return tuple(values)


class _Get(Protocol):
    def __call__(self, name: str, parse: Callable[[str], T], default: T) -> T: ...


def _getter(env: Mapping[str, str], problems: dict[str, str]) -> _Get:
    """Reads one variable: `default` when unset, else parsed; a ValueError goes to `problems`."""

    def get(name: str, parse: Callable[[str], T], default: T) -> T:
        raw = env.get(name, "").strip()
        if not raw:
            return default
        try:
            return parse(raw)
        except ValueError as err:
            problems[name] = str(err)
            return default

    return get


def _credentials(
    env: Mapping[str, str], get: _Get, problems: dict[str, str], *, sandbox: bool
) -> tuple[str | None, dict[str, str]]:
    """VYTE_API_KEY and API_TOKENS (token -> caller): required unless --sandbox, where a
    demo token stands in for missing tokens."""
    vyte_key = env.get("VYTE_API_KEY", "").strip() or None
    tokens: dict[str, str] = get("API_TOKENS", _parse_tokens, {})
    if not sandbox:
        if vyte_key is None:
            problems["VYTE_API_KEY"] = "required unless --sandbox"
        if not tokens and "API_TOKENS" not in problems:
            problems["API_TOKENS"] = "required unless --sandbox"
    elif not tokens:
        tokens = {SANDBOX_TOKEN: SANDBOX_CALLER}
    return vyte_key, tokens


def _parse_tokens(raw: str) -> dict[str, str]:
    tokens: dict[str, str] = {}
    for i, pair in enumerate(p.strip() for p in raw.split(",")):
        caller, sep, token = pair.partition(":")
        if not sep or not caller.strip() or not token.strip():
            # Never echo the pair: it holds a secret.
            raise ValueError(f"entry {i + 1} is not of the form caller:token")
        if token.strip() in tokens:
            raise ValueError(f"entry {i + 1} repeats the token of another entry")
        tokens[token.strip()] = caller.strip()
    return tokens


def _webhook_secrets(raw: str) -> tuple[bytes, ...]:
    secrets: list[bytes] = []
    for i, item in enumerate(raw.split()):
        if not item.startswith("whsec_"):
            raise ValueError(f"secret {i + 1} does not start with whsec_")
        try:
            key = base64.b64decode(item.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            raise ValueError(f"secret {i + 1} is not valid base64 after whsec_") from None
        if not key:
            raise ValueError(f"secret {i + 1} is empty")
        secrets.append(key)
    return tuple(secrets)


def _http_url(raw: str) -> str:
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ValueError("must be an http(s) URL without a query or fragment")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        raise ValueError("must be an http(s) URL with a valid port") from None
    return raw


def _https_url(raw: str) -> str:
    if urlsplit(raw).scheme != "https":
        raise ValueError("must be an https URL (Vyte only accepts https hook targets)")
    return _http_url(raw)


def _admin_callers(callers: frozenset[str]) -> Callable[[str], frozenset[str]]:
    def parse(raw: str) -> frozenset[str]:
        names = frozenset(name.strip() for name in raw.split(",") if name.strip())
        if unknown := sorted(names - callers):
            # Caller names are not secrets (unlike the tokens beside them).
            raise ValueError(f"not a caller of API_TOKENS: {', '.join(unknown)}")
        return names

    return parse


def _path_token(raw: str) -> str | None:
    """The inbound hook's secret: it is a path segment, so URL-safe characters only."""
    token = raw.strip()
    if not token:
        return None
    if not re.fullmatch(r"[A-Za-z0-9._~-]{16,256}", token):
        raise ValueError("must be 16 to 256 URL-safe characters (letters, digits, . _ ~ -)")
    return token


def _store_url(raw: str) -> str:
    if raw.startswith("sqlite:///") and len(raw) > len("sqlite:///"):
        return raw
    parts = urlsplit(raw)
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError("must be sqlite:///path, redis://host:port/db or rediss://host:port/db")
    try:
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        raise ValueError(f"{parts.scheme}://host:port/db with a valid port") from None
    if not parts.hostname:
        raise ValueError(f"{parts.scheme}://host:port/db needs a host")
    if parts.path not in ("", "/") and not parts.path[1:].isdigit():
        raise ValueError(f"{parts.scheme}://host:port/db with a database number")
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in REDIS_TLS_OPTIONS:
            allowed = ", ".join(REDIS_TLS_OPTIONS)
            raise ValueError(f"unknown option {name!r} (options: {allowed})")
        if parts.scheme == "redis":
            raise ValueError(f"option {name!r} needs rediss:// (Redis over TLS)")
        choices = REDIS_TLS_OPTIONS[name]
        if not value or (choices is not None and value not in choices):
            # Never echo the value: ssl_password is a secret.
            hint = f"one of {', '.join(choices)}" if choices else "a value"
            raise ValueError(f"option {name!r} must be {hint}")
    return raw


def _csv(raw: str) -> tuple[str, ...]:
    return tuple(item.strip().lower() for item in raw.split(",") if item.strip())


def _schedule(raw: str) -> tuple[float, ...]:
    try:
        delays = tuple(float(x) for x in raw.split(",") if x.strip())
    except ValueError:
        raise ValueError("must be comma-separated seconds") from None
    if not delays or any(d < 0 for d in delays):
        raise ValueError("must be one or more non-negative numbers of seconds")
    return delays


def _choice(options: tuple[str, ...]) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.lower()
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return value

    return parse


def _bounded_int(low: int, high: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError("must be an integer") from None
        if not low <= value <= high:
            raise ValueError(f"must be between {low} and {high}")
        return value

    return parse


def _bounded_float(low: float, high: float) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ValueError("must be a number") from None
        if not low <= value <= high or value != value:
            raise ValueError(f"must be between {low:g} and {high:g}")
        return value

    return parse

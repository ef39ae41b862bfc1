"""Settings.from_environ: defaults, parsing, and one error naming every bad variable."""

from __future__ import annotations

import base64

import pytest

from service.config import SANDBOX_TOKEN, ConfigError, Settings

REQUIRED = {"VYTE_API_KEY": "k" * 50, "API_TOKENS": "crm:tok-1,billing:tok-2"}


def test_defaults_follow_the_design() -> None:
    s = Settings.from_environ(REQUIRED)
    assert s.vyte_base_url == "https://api.vyte.in"
    assert s.store_url == "sqlite:///./data/booking-gateway.sqlite3"
    assert (s.host, s.port) == ("127.0.0.1", 8080)
    assert (s.slot_cache_ttl, s.vyte_concurrency, s.vyte_timeout, s.request_budget) == (
        30,
        64,
        10,
        15,
    )
    assert (s.breaker_threshold, s.breaker_cooldown, s.retry_base, s.retry_cap) == (5, 10, 1, 300)
    assert s.api_tokens == {"tok-1": "crm", "tok-2": "billing"}
    assert s.log_format == "json"
    assert Settings.from_environ(REQUIRED, isatty=True).log_format == "console"
    assert s.retention_days == 7
    assert s.slot_cache_shared is True
    assert (
        Settings.from_environ({**REQUIRED, "SLOT_CACHE_SHARED": "false"}).slot_cache_shared is False
    )
    assert Settings.from_environ({**REQUIRED, "RETENTION_DAYS": "30"}).retention_days == 30


def test_every_bad_variable_is_named_at_once() -> None:
    env = {
        "API_TOKENS": "no-colon-here",
        "PORT": "99999",
        "SLOT_CACHE_TTL": "soon",
        "STORE_URL": "postgres://x",
        "WEBHOOK_SECRET": "plain",
        "LOG_LEVEL": "loud",
        "RETENTION_DAYS": "0",
        "SLOT_CACHE_SHARED": "maybe",
    }
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ(env)
    assert set(caught.value.problems) == {
        "API_TOKENS",
        "PORT",
        "SLOT_CACHE_TTL",
        "STORE_URL",
        "WEBHOOK_SECRET",
        "LOG_LEVEL",
        "RETENTION_DAYS",
        "SLOT_CACHE_SHARED",
        "VYTE_API_KEY",
    }
    for name in caught.value.problems:
        assert name in str(caught.value)


def test_secrets_never_appear_in_errors_or_repr() -> None:
    secret = "caller-without-token-super-secret-value"
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ({"API_TOKENS": secret, "VYTE_API_KEY": "x"})
    assert secret not in str(caught.value)
    s = Settings.from_environ(
        {**REQUIRED, "WEBHOOK_SECRET": "whsec_" + base64.b64encode(b"k3y-bytes").decode()}
    )
    text = repr(s)
    assert "tok-1" not in text and "k" * 50 not in text and "k3y" not in text


def test_sandbox_needs_no_key_and_gets_a_demo_token() -> None:
    s = Settings.from_environ({}, sandbox=True)
    assert s.sandbox and s.vyte_api_key is None
    assert s.api_tokens == {SANDBOX_TOKEN: "sandbox"}
    assert Settings.from_environ({"API_TOKENS": "a:b"}, sandbox=True).api_tokens == {"b": "a"}


def test_webhook_secrets_rotate_and_lists_parse() -> None:
    a, b = base64.b64encode(b"first").decode(), base64.b64encode(b"second").decode()
    s = Settings.from_environ(
        {
            **REQUIRED,
            "WEBHOOK_SECRET": f"whsec_{a} whsec_{b}",
            "CALLBACK_HOSTS": "*.internal, Hooks.Example.com",
            "WEBHOOK_RETRY_SCHEDULE": "0.1,0.2",
            "STORE_URL": "redis://redis:6379/0",
        }
    )
    assert s.webhook_secrets == (b"first", b"second")
    assert s.callback_hosts == ("*.internal", "hooks.example.com")
    assert s.webhook_retry_schedule == (0.1, 0.2)
    assert s.store_is_redis


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("API_TOKENS", "crm:same-token,billing:same-token"),
        ("VYTE_WEBHOOK_TOKEN", "short"),
        ("VYTE_WEBHOOK_TOKEN", "has/a/slash/in/the/path-token"),
        ("PUBLIC_URL", "https://gw.example.com/?x=1"),
        ("VYTE_BASE_URL", "https://api.vyte.in:port"),
        ("STORE_URL", "redis://redis:abc/0"),
    ],
)
def test_values_that_would_fail_later_are_refused_at_start(name: str, value: str) -> None:
    env = {**REQUIRED, "VYTE_WEBHOOK_TOKEN": "a-token-of-enough-length", name: value}
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ(env)
    assert set(caught.value.problems) == {name}
    assert value not in str(caught.value)


def test_public_url_needs_a_webhook_token() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ({**REQUIRED, "PUBLIC_URL": "https://gw.example.com"})
    assert set(caught.value.problems) == {"VYTE_WEBHOOK_TOKEN"}


def test_new_settings_have_the_designed_defaults() -> None:
    s = Settings.from_environ(REQUIRED)
    assert s.admin_callers == frozenset()
    assert (s.max_subscriptions, s.resync_interval, s.unknown_outcome_timeout) == (20, 300, 600)
    s = Settings.from_environ(
        {
            **REQUIRED,
            "ADMIN_CALLERS": " crm , billing,crm",
            "MAX_SUBSCRIPTIONS": "3",
            "RESYNC_INTERVAL": "0",
            "UNKNOWN_OUTCOME_TIMEOUT": "1.5",
        }
    )
    assert s.admin_callers == {"crm", "billing"}
    assert (s.max_subscriptions, s.resync_interval, s.unknown_outcome_timeout) == (3, 0, 1.5)


def test_sandbox_makes_the_demo_caller_an_admin_unless_told_otherwise() -> None:
    assert Settings.from_environ({}, sandbox=True).admin_callers == {"sandbox"}
    # Own tokens in the sandbox: the demo caller does not exist, so it is no admin.
    assert Settings.from_environ({"API_TOKENS": "a:b"}, sandbox=True).admin_callers == frozenset()
    env = {"API_TOKENS": "a:tok-a,b:tok-b", "ADMIN_CALLERS": "b"}
    assert Settings.from_environ(env, sandbox=True).admin_callers == {"b"}


def test_admin_callers_must_be_callers_of_api_tokens() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ({**REQUIRED, "ADMIN_CALLERS": "crm,ops,audit"})
    assert set(caught.value.problems) == {"ADMIN_CALLERS"}
    assert "audit, ops" in caught.value.problems["ADMIN_CALLERS"]
    assert "tok-" not in str(caught.value)


def test_public_url_must_be_https_outside_the_sandbox() -> None:
    env = {
        **REQUIRED,
        "PUBLIC_URL": "http://gw.example.com",
        "VYTE_WEBHOOK_TOKEN": "a-token-of-enough-length",
    }
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ(env)
    assert set(caught.value.problems) == {"PUBLIC_URL"}
    assert "PUBLIC_URL" in str(caught.value) and "https" in str(caught.value)
    assert Settings.from_environ(env, sandbox=True).public_url == "http://gw.example.com"
    https = Settings.from_environ({**env, "PUBLIC_URL": "https://gw.example.com"})
    assert https.public_url == "https://gw.example.com"


def test_rediss_urls_carry_credentials_and_tls_options() -> None:
    url = (
        "rediss://gateway:p%40ss@redis.internal:6380/2?ssl_ca_certs=/etc/tls/ca.crt"
        "&ssl_certfile=/etc/tls/tls.crt&ssl_keyfile=/etc/tls/tls.key&ssl_cert_reqs=required"
        "&ssl_password=key-passphrase-1&ssl_check_hostname=false"
    )
    s = Settings.from_environ({**REQUIRED, "STORE_URL": url})
    assert s.store_url == url and s.store_is_redis
    assert {"p@ss", "p%40ss"} <= set(s.secret_values())
    assert "key-passphrase-1" in s.secret_values()
    assert Settings.from_environ({**REQUIRED, "STORE_URL": "rediss://r:6379"}).store_is_redis


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://r:6379/0?ssl_ca_certs=/ca.crt", "needs rediss://"),
        ("rediss://r:6379/0?ssl_ca_cert=/ca.crt", "unknown option 'ssl_ca_cert'"),
        ("rediss://r:6379/0?ssl_cert_reqs=maybe", "ssl_cert_reqs"),
        ("rediss://r:6379/0?ssl_certfile=", "ssl_certfile"),
        ("rediss://r:6379/zero", "database number"),
        ("rediss://:6379/0", "needs a host"),
        ("rediss://r:port/0", "valid port"),
    ],
)
def test_bad_redis_urls_are_refused_with_the_reason(url: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ({**REQUIRED, "STORE_URL": url})
    assert set(caught.value.problems) == {"STORE_URL"}
    assert says in caught.value.problems["STORE_URL"]


def test_redis_option_values_are_never_echoed() -> None:
    url = "rediss://r:6379/0?ssl_password=&ssl_cert_reqs=very-secret-value"
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ({**REQUIRED, "STORE_URL": url})
    assert "very-secret-value" not in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MAX_SUBSCRIPTIONS", "-1"),
        ("MAX_SUBSCRIPTIONS", "many"),
        ("RESYNC_INTERVAL", "-5"),
        ("UNKNOWN_OUTCOME_TIMEOUT", "0"),
        ("UNKNOWN_OUTCOME_TIMEOUT", "nan"),
    ],
)
def test_new_numeric_settings_are_bounded(name: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ({**REQUIRED, name: value})
    assert set(caught.value.problems) == {name}

"""`booking-gateway check`: settings, the store and Vyte, each tested as `serve` would use them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

import aiohttp
import attrs

from service.config import ConfigError, Settings
from service.store import open_store
from service.vyte import errors as vyte_errors
from service.vyte.client import VyteClient, VyteOptions

# Seconds the store may take to open and answer; `serve` itself would wait as long.
STORE_TIMEOUT = 10.0
# Only what the store and Vyte checks need; they run even when other settings are bad.
_MIN_SECRET = 6
_CONNECTION_SETTINGS = (
    "STORE_URL",
    "VYTE_BASE_URL",
    "VYTE_API_KEY",
    "VYTE_TIMEOUT",
    "REQUEST_BUDGET",
)


@attrs.frozen
class Result:
    """One line of the report: `name: ok (detail)` or `name: FAIL: problem; fix: remedy`."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    #: a failure of Vyte itself (unreachable, timing out, in trouble), not of our settings
    outage: bool = False

    def line(self, *, warn: bool = False) -> str:
        if self.ok:
            return f"{self.name}: ok ({self.detail})" if self.detail else f"{self.name}: ok"
        fix = f"; fix: {self.fix}" if self.fix else ""
        return f"{self.name}: {'WARN' if warn else 'FAIL'}: {self.detail}{fix}"


async def run_checks(env: Mapping[str, str], *, sandbox: bool = False) -> list[Result]:
    """Every check, in order: settings, then the store and Vyte (also when a setting they
    do not need is bad, so one run names every problem)."""
    results: list[Result] = []
    try:
        settings = Settings.from_environ(env, sandbox=sandbox)
    except ConfigError as err:
        for name, why in sorted(err.problems.items()):
            fix = f"set {name}" if why.startswith("required") else f"correct {name}"
            results.append(Result(f"setting {name}", False, why, fix))
        connection = {k: env[k] for k in _CONNECTION_SETTINGS if k in env and k not in err.problems}
        try:
            # sandbox=True only lifts the requirements that belong to the settings check.
            settings = Settings.from_environ(connection, sandbox=True)
        except ConfigError:  # pragma: no cover - every bad one was left out above
            return results
        bad = set(err.problems)
    else:
        results.append(Result("settings", True, "every variable is valid"))
        bad = set()
    results.append(await _check_store(settings, bad))
    results.append(await _check_vyte(settings, bad, sandbox=sandbox))
    return [_redacted(r, settings.secret_values()) for r in results]


async def _check_store(settings: Settings, bad: set[str]) -> Result:
    if "STORE_URL" in bad:
        return Result("store", False, "not checked: STORE_URL is invalid", "correct STORE_URL")
    where = _store_where(settings.store_url)
    try:
        store = await asyncio.wait_for(open_store(settings.store_url), STORE_TIMEOUT)
    except TimeoutError:
        return Result(
            "store",
            False,
            f"{where} did not answer within {STORE_TIMEOUT:g}s",
            "check that the store runs and that this pod may reach it (NetworkPolicy, firewall)",
        )
    except Exception as err:  # every failure is reported, none is a crash
        return Result(
            "store",
            False,
            f"cannot use {where}: {err}",
            "check STORE_URL (host, port, credentials, TLS options) and that the store"
            " accepts connections from here",
        )
    try:
        await asyncio.wait_for(store.ping(), STORE_TIMEOUT)
    except Exception as err:
        return Result("store", False, f"{where} does not answer: {err}", "check the store")
    finally:
        await store.close()
    return Result("store", True, f"{where} answers")


def _store_where(url: str) -> str:
    """The store's address without credentials or options (those may hold secrets)."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return url
    host = parts.hostname or "?"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


async def _check_vyte(settings: Settings, bad: set[str], *, sandbox: bool) -> Result:
    base = settings.vyte_base_url
    if names := sorted(bad & {"VYTE_BASE_URL", "VYTE_API_KEY"}):
        listed = " and ".join(names)
        return Result("vyte", False, f"not checked: {listed} not valid", f"correct {listed}")
    if settings.vyte_api_key is None:
        if sandbox:
            return Result("vyte", True, "the embedded sandbox stands in for Vyte")
        return Result("vyte", False, "not checked: VYTE_API_KEY is not set", "set VYTE_API_KEY")
    where = f"{base}/v2/auth/test"
    options = VyteOptions(
        base_url=base,
        api_key=settings.vyte_api_key,
        timeout=settings.vyte_timeout,
        concurrency=1,
        budget=settings.request_budget,
        # The check itself must never be refused by its own breaker.
        breaker_threshold=10_000,
    )
    try:
        async with aiohttp.ClientSession() as session:
            await VyteClient(session, options).auth_test()
    except vyte_errors.VyteAuthError as err:
        return Result(
            "vyte",
            False,
            f"{where} refused VYTE_API_KEY (HTTP {err.status})",
            "set VYTE_API_KEY to a valid API key of the Vyte account",
        )
    except (vyte_errors.VyteConnectionError, vyte_errors.VyteTimeout) as err:
        return Result(
            "vyte",
            False,
            f"cannot reach {where}: {err}",
            "check VYTE_BASE_URL and that this pod may reach it (DNS, egress NetworkPolicy, proxy)",
            outage=True,
        )
    except vyte_errors.VyteNotFound:
        return Result(
            "vyte",
            False,
            f"{where} does not exist (HTTP 404)",
            "point VYTE_BASE_URL at Vyte's API root (https://api.vyte.in)",
        )
    except vyte_errors.VyteBadResponse as err:
        return Result(
            "vyte",
            False,
            f"{where} did not answer like Vyte: {err}",
            "point VYTE_BASE_URL at Vyte's API root (https://api.vyte.in)",
        )
    except vyte_errors.VyteError as err:
        status = f"HTTP {err.status}" if err.status else err.outcome
        return Result(
            "vyte",
            False,
            f"{where} answered {status}: {err}",
            "Vyte is in trouble or limiting us: try again later",
            outage=True,
        )
    return Result("vyte", True, f"{where} accepted VYTE_API_KEY")


def _redacted(result: Result, secrets: Iterable[str]) -> Result:
    """A result whose text names no secret (error texts may quote what they were given)."""
    detail, fix = result.detail, result.fix
    # Very short values would mangle the text; no real secret is that short.
    for secret in sorted((s for s in secrets if len(s) >= _MIN_SECRET), key=len, reverse=True):
        detail, fix = detail.replace(secret, "***"), fix.replace(secret, "***")
    return attrs.evolve(result, detail=detail, fix=fix)


async def check(
    env: Mapping[str, str], *, sandbox: bool = False, allow_vyte_outage: bool = False
) -> tuple[int, list[str]]:
    """(exit status, report lines): 0 when every check passed, 1 otherwise.

    With `allow_vyte_outage`, a Vyte that cannot be reached or is failing is a warning: an
    init container must not keep new pods from starting while Vyte is down, since the
    gateway serves (503s, queued async work) through such an outage. A refused key still
    fails.
    """
    results = await run_checks(env, sandbox=sandbox)
    lines, failed = [], False
    for result in results:
        warn = allow_vyte_outage and result.outage
        failed |= not result.ok and not warn
        lines.append(result.line(warn=warn))
    return (1 if failed else 0), lines

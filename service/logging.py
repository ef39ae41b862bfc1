"""structlog configuration: JSON lines (console on a TTY), request context, redaction.

Records from the standard library's loggers (aiohttp, asyncio) go through the same
processors, so they are JSON lines too and get the same redaction.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import orjson
import structlog

from service.tracing import add_trace_ids

REDACTED = "[redacted]"

# Keys whose values are secret whatever they hold.
_SECRET_KEYS = re.compile(r"(authorization|token|secret|api_key|password)", re.IGNORECASE)
_NOT_SECRET_KEYS = frozenset({"caller"})
# Secret shapes, redacted even when the value itself was never configured here.
_SECRET_SHAPES = (
    # `Authorization: Bearer <token>`, as a header value or inside any text (eight characters
    # at least, so prose such as "a bearer token is required" survives).
    (re.compile(r"(?i)\b(bearer\s+)[^\s\"',;]{8,}"), rf"\g<1>{REDACTED}"),
    # Standard Webhooks secrets.
    (re.compile(r"whsec_[A-Za-z0-9+/=_-]+"), REDACTED),
    # The inbound Vyte hook path carries its secret token as the last segment (the route
    # template, `{token}`, is kept).
    (
        re.compile(r"(/v1/vyte/webhooks/)(?!\{token\}(?:[/?#\s\"']|$))[^/?#\s\"']+"),
        rf"\g<1>{REDACTED}",
    ),
)
# Shorter values would redact ordinary words; Settings never holds secrets that short.
_MIN_SECRET = 4
# Keys of nested dicts come from data (e.g. upstream bodies): remember only so many.
_MAX_KEYS_REMEMBERED = 1024
# Values that render as themselves and hold no text.
_PLAIN = frozenset({int, float, bool})


# What every pattern above needs to find before it can match: one search of this finds out
# whether a text can hold a secret at all, so the common text (no secret) costs one pass, not
# one per pattern. Each alternative is a prefix of what one pattern matches.
_SHAPE_TRIGGERS = (r"(?i:\bbearer\s)", "whsec_", re.escape("/v1/vyte/webhooks/"))


class Redactor:
    """Removes secrets from every log event: by key, by known value, and by shape."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        known = sorted({s for s in secrets if len(s) >= _MIN_SECRET}, key=len, reverse=True)
        self._known = re.compile("|".join(map(re.escape, known))) if known else None
        self._trigger = re.compile("|".join([*_SHAPE_TRIGGERS, *map(re.escape, known)]))
        # Whether a key names a secret, per key seen (log keys are a small, fixed set).
        self._secret_key: dict[str, bool] = {}

    def scrub(self, text: str) -> str:
        if self._trigger.search(text) is None:
            return text
        if self._known is not None:
            text = self._known.sub(REDACTED, text)
        for pattern, replacement in _SECRET_SHAPES:
            text = pattern.sub(replacement, text)
        return text

    def _scrub(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.scrub(value)
        if value is None or type(value) in _PLAIN:  # the usual non-text fields, checked once
            return value
        if isinstance(value, dict):
            return {k: self._value(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self._scrub(v) for v in value]
        if isinstance(value, bytes | bytearray):
            return self.scrub(bytes(value).decode("utf-8", "replace"))
        if value is None or isinstance(value, bool | int | float):
            return value
        # Anything else is rendered as text anyway: redact what it renders to.
        return self.scrub(str(value))

    def _value(self, key: str, value: Any) -> Any:
        secret = self._secret_key.get(key)
        if secret is None:
            secret = bool(_SECRET_KEYS.search(key)) and key not in _NOT_SECRET_KEYS
            if len(self._secret_key) < _MAX_KEYS_REMEMBERED:
                self._secret_key[key] = secret
        if secret and value is not None:
            return REDACTED
        return self._scrub(value)

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for key, value in list(event.items()):
            if key.startswith("_"):  # structlog's own bookkeeping (e.g. the stdlib record)
                continue
            event[key] = self._value(key, value)
        return event


def _fallback(value: Any) -> Any:
    # As structlog's JSONRenderer: an object's own log form if it has one, else its repr.
    if hasattr(value, "__structlog__"):
        return value.__structlog__()
    return repr(value)


def _render_json(logger: Any, method: str, event: MutableMapping[str, Any]) -> str:
    """One JSON line per event: orjson (a fifth of the access line's cost in the /livez
    profile went to json.dumps), the standard library for what orjson refuses."""
    try:
        return orjson.dumps(event, default=_fallback).decode()
    except TypeError:
        return json.dumps(event, default=_fallback)


def configure(
    level: str = "info",
    fmt: str = "json",
    secrets: Iterable[str] = (),
    stream: TextIO | None = None,
) -> None:
    """Configure structlog once per process (logs go to stderr unless `stream`)."""
    out = stream or sys.stderr
    renderer: Any = (
        _render_json if fmt == "json" else structlog.dev.ConsoleRenderer(colors=out.isatty())
    )
    redactor = Redactor(secrets)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        add_trace_ids,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            *shared,
            structlog.processors.format_exc_info,
            redactor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        # One PrintLogger for every logger: loggers are not cached (a later `configure` must
        # reach module-level ones), and building a PrintLogger per log call cost 2% of /livez.
        logger_factory=_SharedLogger(structlog.PrintLogger(out)),
        cache_logger_on_first_use=False,
    )
    _route_stdlib(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redactor,
                renderer,
            ],
        ),
        out,
        numeric_level,
    )


class _SharedLogger:
    """A logger factory that hands out the same output logger whatever it is asked for."""

    def __init__(self, logger: structlog.PrintLogger) -> None:
        self._logger = logger

    def __call__(self, *args: Any) -> structlog.PrintLogger:
        return self._logger


class _Handler(logging.StreamHandler[TextIO]):
    """Ours, so a second `configure` replaces it instead of adding another."""


# Loggers whose levels `configure` changes, and their levels before it did. The store
# drivers' debug lines carry what they send (SQL parameters, Redis command arguments):
# callback URLs with their tokens, emails, messages. They stay at WARNING whatever LOG_LEVEL.
_QUIETED = ("aiohttp.access", "aiosqlite", "redis")
_saved_levels: dict[str, int] = {}


def _route_stdlib(formatter: logging.Formatter, stream: TextIO, level: int) -> None:
    for name in ("", *_QUIETED):
        _saved_levels.setdefault(name, logging.getLogger(name).level)
    root = logging.getLogger()
    for old in _our_handlers(root):
        root.removeHandler(old)
    handler = _Handler(stream)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    root.setLevel(level)
    # The gateway writes its own access line; aiohttp's (e.g. the embedded sandbox's, with
    # full query strings) would only repeat it. The drivers: see _QUIETED.
    for name in _QUIETED:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


def _our_handlers(root: logging.Logger) -> list[_Handler]:
    return [h for h in root.handlers if isinstance(h, _Handler)]


def reset() -> None:
    """Undo `configure` (for tests): structlog's defaults, stdlib logging as it was."""
    structlog.reset_defaults()
    root = logging.getLogger()
    for old in _our_handlers(root):
        root.removeHandler(old)
    for name, level in _saved_levels.items():
        logging.getLogger(name).setLevel(level)
    _saved_levels.clear()


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


def current_request_id() -> str | None:
    """The X-Request-ID bound for the request (or operation) being handled, if any."""
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    return request_id if isinstance(request_id, str) else None

"""structlog configuration: JSON lines (console on a TTY), request context, redaction.

Records from the standard library's loggers (aiohttp, asyncio) go through the same
processors, so they are JSON lines too and get the same redaction.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import time
from collections.abc import Iterable, MutableMapping
from datetime import UTC, datetime
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
# What each trigger contains, as plain text: `bearer` (in the text lowered: its letters have no
# case-insensitive match outside ASCII) and the literal triggers.
_TRIGGER_WORD = "bearer"
_TRIGGER_LITERALS = ("whsec_", "/v1/vyte/webhooks/")


class Redactor:
    """Removes secrets from every log event: by key, by known value, and by shape."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        known = sorted({s for s in secrets if len(s) >= _MIN_SECRET}, key=len, reverse=True)
        self._known = re.compile("|".join(map(re.escape, known))) if known else None
        self._trigger = re.compile("|".join([*_SHAPE_TRIGGERS, *map(re.escape, known)]))
        self._literals = (*_TRIGGER_LITERALS, *known)
        # Whether a key names a secret, per key seen (log keys are a small, fixed set).
        self._secret_key: dict[str, bool] = {}

    def _may_hold_secret(self, text: str) -> bool:
        """False when no trigger can match `text`; plain substring scans, much faster than
        the trigger's alternation, which the regex engine tries at every position."""
        if _TRIGGER_WORD in text.lower():
            return True
        for literal in self._literals:  # noqa: SIM110 - any() and its generator cost more
            if literal in text:
                return True
        return False

    def _triggered(self, text: str) -> bool:
        """Whether some pattern can begin a match in `text` (the cheap scans first)."""
        return self._may_hold_secret(text) and self._trigger.search(text) is not None

    def scrub(self, text: str) -> str:
        if not self._triggered(text):
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

    def _is_secret_key(self, key: str) -> bool:
        secret = self._secret_key.get(key)
        if secret is None:
            secret = bool(_SECRET_KEYS.search(key)) and key not in _NOT_SECRET_KEYS
            if len(self._secret_key) < _MAX_KEYS_REMEMBERED:
                self._secret_key[key] = secret
        return secret

    def _value(self, key: str, value: Any) -> Any:
        if value is not None and self._is_secret_key(key):
            return REDACTED
        return self._scrub(value)

    def _clean(self, event: MutableMapping[str, Any]) -> bool:
        """Whether the event holds nothing to redact, found in one search over all its texts
        (the usual line: flat, text and numbers, no secret key). A trigger matched across two
        joined texts only sends the event down the per-field path, which finds nothing."""
        # Keys starting with "_" (which __call__ skips) need no test here: they can only
        # send the event down the per-field path.
        texts = []
        secret_key = self._secret_key
        for key, value in event.items():
            kind = type(value)
            if kind is str:
                texts.append(value)
            elif value is None:
                continue
            elif kind not in _PLAIN:
                return False
            if secret_key.get(key, True) and self._is_secret_key(key):
                return False
        return not self._triggered("\n".join(texts))

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        if self._clean(event):
            return event
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


class UtcTimestamp:
    """structlog processor: `timestamp` as `TimeStamper(fmt="iso", utc=True)` writes it
    (`2026-12-02T06:13:17.583717Z`, no fraction at a whole second), with the date and time of
    day formatted once per second rather than through a datetime on every line."""

    def __init__(self) -> None:
        # (second, its text): one attribute, so threads never see the two out of step
        self._second: tuple[int, str] = (-1, "")

    def __call__(
        self, logger: Any, method: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        second, nanos = divmod(time.time_ns(), 1_000_000_000)
        cached, text = self._second
        if second != cached:
            text = datetime.fromtimestamp(second, UTC).isoformat()[:19]
            self._second = (second, text)
        micros = nanos // 1000
        event["timestamp"] = f"{text}.{micros:06d}Z" if micros else f"{text}Z"
        return event


class _LineWriter:
    """structlog's output: one line per event on `stream`, flushed, as PrintLogger writes it
    without `print`'s separate writes of text and newline."""

    def __init__(self, stream: TextIO) -> None:
        self._write = stream.write
        self._flush = stream.flush
        self._lock = threading.Lock()  # lines from other threads stay whole

    def msg(self, message: str) -> None:
        with self._lock:
            self._write(message + "\n")
            self._flush()

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


def _format_exc_info(
    logger: Any, method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog's `format_exc_info`, skipped for the lines without `exc_info` (nearly all):
    it would look for an exception to format in each of them."""
    if "exc_info" not in event:
        return event
    return structlog.processors.format_exc_info(logger, method, event)


class Loggers:
    """Loggers written on every request (the access line) and every Vyte call (its
    `upstream` line), built once by `configure` (structlog's lazy proxy would bind a new one
    on every call); structlog's own lazy ones until then."""

    access: Any = structlog.get_logger("access")
    upstream: Any = structlog.get_logger("vyte")


class _InfoLines:
    """`info` lines through structlog's configured processors to its output, as a bound
    logger without context writes them, minus its copies of the context and keywords on
    every call (2 of the access line's 7.6 us). The processors are structlog's own list, which
    `structlog.testing.capture_logs` changes in place (its last processor drops the event)."""

    def __init__(self, processors: list[Any], output: Any) -> None:
        self._processors = processors
        self._output = output

    def info(self, event: str, **fields: Any) -> None:
        fields["event"] = event
        line: Any = fields
        try:
            for processor in self._processors:
                line = processor(self._output, "info", line)
        except structlog.DropEvent:
            return
        # As BoundLoggerBase._proxy_to_logger passes on what the last processor returns.
        if isinstance(line, tuple):
            self._output.info(*line[0], **line[1])
        elif isinstance(line, dict):
            self._output.info(**line)
        else:
            self._output.info(line)


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
    output = _LineWriter(out)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        UtcTimestamp(),
    ]
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            *shared,
            _format_exc_info,
            redactor,
            # After the redactor: the ids are hex the gateway made or checked (a traceparent
            # matches a hex pattern), nothing it needs to look through.
            add_trace_ids,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        # One output for every logger: loggers are not cached (a later `configure` must reach
        # module-level ones), and building a PrintLogger per log call cost 2% of /livez.
        logger_factory=_SharedLogger(output),
        cache_logger_on_first_use=False,
    )
    # On the processors list structlog keeps (capture_logs changes it in place).
    if numeric_level <= logging.INFO:
        Loggers.access = Loggers.upstream = _InfoLines(structlog.get_config()["processors"], output)
    else:
        Loggers.access = structlog.get_logger("access").bind()
        Loggers.upstream = structlog.get_logger("vyte").bind()
    _route_stdlib(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                _format_exc_info,
                redactor,
                add_trace_ids,
                renderer,
            ],
        ),
        out,
        numeric_level,
    )


class _SharedLogger:
    """A logger factory that hands out the same output logger whatever it is asked for."""

    def __init__(self, logger: _LineWriter) -> None:
        self._logger = logger

    def __call__(self, *args: Any) -> _LineWriter:
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
    Loggers.access = structlog.get_logger("access")
    Loggers.upstream = structlog.get_logger("vyte")
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

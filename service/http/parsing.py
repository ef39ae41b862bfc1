"""The raw request: its JSON body (415, 413, or 400 when it is not JSON) and its query string
(400 for a parameter given twice or not known)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from aiohttp import web

from service.errors import (
    FieldError,
    PayloadTooLarge,
    UnsupportedMediaType,
    ValidationFailed,
)
from service.http import render

MAX_BODY = 1024 * 1024


class UnreadableBody(ValidationFailed):
    """The body's bytes are not what its framing or Content-Encoding says (a corrupt gzip
    body): 400, and the answer closes the connection, since nothing after it can be read."""


async def _body(request: web.Request) -> bytes:
    """The raw body (read once, cached by aiohttp); 413 above MAX_BODY."""
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise PayloadTooLarge(f"body exceeds {MAX_BODY} bytes")
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"body exceeds {MAX_BODY} bytes") from None
    except web.RequestPayloadError:
        # The caller's input, not our failure. The stream ends here: aiohttp would go on
        # reading it after the answer, and log the same failure again as an error.
        request.content.feed_eof()
        raise UnreadableBody(
            [FieldError("body", "cannot be decoded as its Content-Encoding says")]
        ) from None


async def read_json(request: web.Request, *, allow_empty: bool = False) -> dict[str, Any] | None:
    """The body as a JSON object (None when empty and `allow_empty`).

    415 unless the body is application/json, 413 above 1 MiB, 400 when it is
    not a JSON object.
    """
    raw = await _body(request)
    if not raw.strip() and allow_empty:
        return None
    data = await read_json_value(request)
    if not isinstance(data, dict):
        raise ValidationFailed([FieldError("body", "must be a JSON object")])
    return data


async def read_json_value(request: web.Request) -> Any:
    """Any JSON value (webhook bodies may be an object or a list)."""
    raw = await _body(request)
    if request.content_type != "application/json":
        raise UnsupportedMediaType("the body must be application/json")
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ValidationFailed([FieldError("body", "not valid JSON")]) from None
    except RecursionError:
        raise ValidationFailed([FieldError("body", "nested too deeply")]) from None


def reject_unknown(
    names: Iterable[str], allowed: Iterable[str], prefix: str = ""
) -> list[FieldError]:
    known = set(allowed)
    return [FieldError(f"{prefix}{n}", "unknown field") for n in names if n not in known]


def single_query(request: web.Request, allowed: Iterable[str]) -> dict[str, str]:
    """Query parameters as a dict; unknown or repeated ones are 400."""
    query = request.rel_url.query
    problems = reject_unknown(query.keys(), allowed)
    for name in set(query.keys()):
        if len(query.getall(name)) > 1:
            problems.append(FieldError(name, "given more than once"))
    if problems:
        raise ValidationFailed(problems)
    return dict(query)


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return render.json_response(data, status, headers)

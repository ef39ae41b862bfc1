"""JSON bodies of answers: orjson, with the standard library for what orjson refuses."""

from __future__ import annotations

import json
from typing import Any

import orjson
from aiohttp import web


def dumps(data: Any) -> bytes:
    """Compact UTF-8 JSON of a plain answer tree (dicts, lists, text, numbers, None).

    orjson writes the same JSON as ``json.dumps(separators=(",", ":"))`` for such trees, about
    ten times faster (bench/RESULTS.md, warm path); what it refuses (integers beyond 64 bits,
    keys that are not text) goes to the standard library as before.
    """
    try:
        return orjson.dumps(data)
    except TypeError:
        return json.dumps(data, separators=(",", ":"), check_circular=False).encode()


def json_response(
    data: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """An application/json answer (charset utf-8, as aiohttp writes it for text bodies)."""
    return web.Response(
        body=dumps(data),
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )

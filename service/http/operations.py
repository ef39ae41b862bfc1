"""Operational endpoints: liveness, readiness, metrics and the API contract."""

from __future__ import annotations

from functools import cache
from importlib import resources

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from service import keys, metrics
from service.http.parsing import json_response
from service.store.base import StoreUnavailable


async def livez(request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    # 503 only for this replica's own trouble (draining, no store); Vyte's state and its
    # hooks are reported in `checks` but never fail it (DESIGN §3.4).
    ready, report = await request.app[keys.HEALTH].check()
    return json_response(
        {"status": "ok" if ready else "unavailable", "checks": report}, 200 if ready else 503
    )


async def prometheus(request: web.Request) -> web.Response:
    try:
        deliveries, operations = await request.app[keys.STORE].pending_counts()
    except StoreUnavailable:
        pass  # metrics stay available; the gauges keep their last reading
    else:
        metrics.OUTBOX_DEPTH.set(deliveries)
        metrics.OPERATIONS_PENDING.set(operations)
    response = web.Response(body=generate_latest(metrics.REGISTRY))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


@cache
def _spec() -> bytes:
    return (resources.files("service") / "openapi.yaml").read_bytes()


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=_spec(), content_type="application/yaml")

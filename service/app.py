"""The application factory: wiring only, no I/O until the app starts."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web

from service import keys
from service.availability import AvailabilityService
from service.bookings import BookingService
from service.config import Settings
from service.health import Health
from service.http import routes
from service.http.middlewares import bearer_auth, problems, request_context
from service.http.parsing import MAX_BODY
from service.notify.outbox import Outbox
from service.store import open_store
from service.vyte.client import VyteClient, VyteOptions

WEBHOOK_PREFIX = "/v1/vyte/webhooks/"


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[
            request_context,
            problems,
            bearer_auth(settings.api_tokens, exempt_prefixes=(WEBHOOK_PREFIX,)),
        ],
        client_max_size=MAX_BODY,
    )
    app[keys.SETTINGS] = settings
    app.cleanup_ctx.append(_store)
    app.cleanup_ctx.append(_vyte)
    app.cleanup_ctx.append(_services)
    routes.setup(app)
    return app


async def _store(app: web.Application) -> AsyncIterator[None]:
    store = await open_store(app[keys.SETTINGS].store_url)
    app[keys.STORE] = store
    yield
    await store.close()


async def _vyte(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    assert settings.vyte_api_key is not None, "Vyte key checked by Settings"
    connector = aiohttp.TCPConnector(limit=settings.vyte_concurrency, ttl_dns_cache=300)
    async with aiohttp.ClientSession(connector=connector, raise_for_status=False) as session:
        app[keys.VYTE] = VyteClient(
            session,
            VyteOptions(
                base_url=settings.vyte_base_url,
                api_key=settings.vyte_api_key,
                timeout=settings.vyte_timeout,
                concurrency=settings.vyte_concurrency,
                budget=settings.request_budget,
                breaker_threshold=settings.breaker_threshold,
                breaker_cooldown=settings.breaker_cooldown,
            ),
        )
        yield


async def _services(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    store, vyte = app[keys.STORE], app[keys.VYTE]
    availability = AvailabilityService(vyte, store, cache_ttl=settings.slot_cache_ttl)
    app[keys.AVAILABILITY] = availability
    app[keys.BOOKINGS] = BookingService(vyte, store, availability, settings, Outbox(store))
    app[keys.HEALTH] = Health(store, vyte)
    yield

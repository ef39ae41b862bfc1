"""The application factory: wiring only, no I/O until the app starts."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import structlog
from aiohttp import web

from service import keys
from service.availability import AvailabilityService
from service.bookings import BookingService
from service.config import Settings
from service.health import Health
from service.http import routes
from service.http.middlewares import bearer_auth, problems, request_context
from service.http.parsing import MAX_BODY
from service.notify.connector import webhook_session
from service.notify.dispatcher import Dispatcher
from service.notify.inbound import VyteHooks, register_hooks
from service.notify.loop import purge
from service.notify.operations import OperationWorker
from service.notify.outbox import Outbox
from service.store import open_store
from service.store.base import SharedCache
from service.vyte.client import VyteClient, VyteOptions
from service.vyte.errors import VyteError

WEBHOOK_PREFIX = "/v1/vyte/webhooks/"
# Seconds between purges of finished deliveries and operations (RETENTION_DAYS).
PURGE_INTERVAL = 3600.0
log = structlog.get_logger("app")


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
    app.cleanup_ctx.append(_workers)
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
    outbox = Outbox(store)
    shared = store if settings.slot_cache_shared and isinstance(store, SharedCache) else None
    availability = AvailabilityService(
        vyte, store, cache_ttl=settings.slot_cache_ttl, shared=shared
    )
    bookings = BookingService(vyte, store, availability, settings, outbox)
    app[keys.OUTBOX] = outbox
    app[keys.AVAILABILITY] = availability
    app[keys.BOOKINGS] = bookings
    app[keys.HEALTH] = Health(store, vyte)
    app[keys.VYTE_HOOKS] = VyteHooks(vyte, store, bookings, outbox)
    yield


async def _workers(app: web.Application) -> AsyncIterator[None]:
    """Background work: the webhook dispatcher, the operations worker, the purge of what
    finished long ago, hook registration."""
    settings = app[keys.SETTINGS]
    store = app[keys.STORE]
    owner = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    async with webhook_session(settings.callback_deny_networks) as session:
        dispatcher = Dispatcher(
            store,
            session,
            settings.webhook_secrets,
            settings.webhook_retry_schedule,
            owner,
            settings.egress,
        )
        worker = OperationWorker(
            store,
            app[keys.BOOKINGS],
            app[keys.OUTBOX],
            owner=owner,
            retry_base=settings.retry_base,
            retry_cap=settings.retry_cap,
            budget_seconds=settings.request_budget,
        )
        app[keys.DISPATCHER] = dispatcher
        app[keys.OPERATIONS] = worker
        tasks = [
            asyncio.create_task(dispatcher.run(), name="webhook-dispatcher"),
            asyncio.create_task(worker.run(), name="operations-worker"),
            asyncio.create_task(
                purge(store, timedelta(days=settings.retention_days), PURGE_INTERVAL),
                name="purge",
            ),
        ]
        if settings.public_url and settings.vyte_webhook_token:
            target = (
                f"{settings.public_url.rstrip('/')}{WEBHOOK_PREFIX}{settings.vyte_webhook_token}"
            )
            tasks.append(asyncio.create_task(_register_hooks(app[keys.VYTE], target), name="hooks"))
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _register_hooks(vyte: VyteClient, target: str) -> None:
    """Register our Vyte hooks, retrying until Vyte takes them."""
    delay = 1.0
    while True:
        try:
            created = await register_hooks(vyte, target)
        except VyteError as err:
            log.warning("hook_registration_failed", error=str(err), retry_in=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 300)
            continue
        log.info("hooks_registered", created=created)
        return

"""The application factory: wiring only, no I/O until the app starts."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from functools import partial

import aiohttp
import structlog
from aiohttp import web

from service import keys, tracing, tracing_export
from service.availability import AvailabilityService
from service.bookings import BookingService
from service.config import Settings
from service.health import Health
from service.http import routes
from service.http.cursors import cursor_key
from service.http.handlers import created_answer
from service.http.middlewares import request_edge
from service.http.parsing import MAX_BODY
from service.http.resources import webhook_body
from service.listing import BookingListing
from service.notify.connector import webhook_session
from service.notify.dispatcher import Dispatcher
from service.notify.egress import EgressPolicy
from service.notify.inbound import VyteHooks, keep_registering
from service.notify.loop import purge
from service.notify.operations import Operations, OperationWorker
from service.notify.outbox import Outbox
from service.notify.reconciler import Reconciler
from service.notify.resync import Resync, resync_permits
from service.notify.subscriptions import Subscriptions
from service.reschedule import RescheduleService
from service.store import open_store
from service.store.base import SharedCache
from service.vyte.client import VyteClient, VyteOptions

WEBHOOK_PREFIX = "/v1/vyte/webhooks/"
# Seconds between purges of finished deliveries and operations (RETENTION_DAYS).
PURGE_INTERVAL = 3600.0
log = structlog.get_logger("app")


def create_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[
            request_edge(
                settings.api_tokens, (WEBHOOK_PREFIX,), budget_seconds=settings.request_budget
            ),
        ],
        client_max_size=MAX_BODY,
    )
    app[keys.SETTINGS] = settings
    app.cleanup_ctx.append(tracing_export.export)
    app.cleanup_ctx.append(_store)
    app.cleanup_ctx.append(_vyte)
    app.cleanup_ctx.append(_services)
    app.cleanup_ctx.append(_workers)
    routes.setup(app)
    return app


async def _store(app: web.Application) -> AsyncIterator[None]:
    store = await open_store(app[keys.SETTINGS].store_url)
    app[keys.STORE] = tracing.trace_store(store)
    yield
    await store.close()


async def _vyte(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    connector = aiohttp.TCPConnector(limit=settings.vyte_concurrency, ttl_dns_cache=300)
    # The Vyte client gives each call its span itself (aiohttp's TraceConfig signals cost more
    # than the calls' spans: bench/RESULTS.md).
    async with aiohttp.ClientSession(connector=connector, raise_for_status=False) as session:
        app[keys.VYTE] = VyteClient(session, VyteOptions.from_settings(settings))
        yield


async def _services(app: web.Application) -> AsyncIterator[None]:
    settings = app[keys.SETTINGS]
    store, vyte = app[keys.STORE], app[keys.VYTE]
    outbox = Outbox(store, webhook_body, settings.admin_callers)
    shared = store if settings.slot_cache_shared and isinstance(store, SharedCache) else None
    availability = AvailabilityService(
        vyte, store, cache_ttl=settings.slot_cache_ttl, shared=shared
    )
    bookings = BookingService(vyte, store, availability, settings, outbox)
    reschedule = RescheduleService(bookings, vyte, store, availability)
    worker = OperationWorker(
        store,
        bookings,
        outbox,
        owner=_owner(),
        retry_base=settings.retry_base,
        retry_cap=settings.retry_cap,
        budget_seconds=settings.request_budget,
        reschedule=reschedule,
    )
    app[keys.OUTBOX] = outbox
    app[keys.RESCHEDULE] = reschedule
    app[keys.LISTING] = BookingListing(store, settings.admin_callers)
    app[keys.CURSOR_KEY] = cursor_key(settings)
    app[keys.AVAILABILITY] = availability
    app[keys.BOOKINGS] = bookings
    app[keys.HEALTH] = Health(store, vyte)
    app[keys.VYTE_HOOKS] = VyteHooks(vyte, store, bookings)
    app[keys.OPERATIONS] = worker
    reconciler = Reconciler(
        store,
        bookings,
        created_answer,
        owner=_owner(),
        timeout=settings.unknown_outcome_timeout,
        budget_seconds=settings.request_budget,
    )
    bookings.on_unknown = reconciler.wake
    app[keys.RECONCILER] = reconciler
    app[keys.ASYNC_OPERATIONS] = Operations(store, worker.wake)
    app[keys.SUBSCRIPTIONS] = Subscriptions(store, outbox.due, settings.max_subscriptions)
    yield
    await app[keys.HEALTH].close()


def _owner() -> str:
    """This process's name on the leases it takes."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


async def _workers(app: web.Application) -> AsyncIterator[None]:
    """Background work: the webhook dispatcher, the operations worker, the reconciler of
    unknown outcomes, the purge of what finished long ago, hook registration, the resync."""
    settings = app[keys.SETTINGS]
    store = app[keys.STORE]
    worker = app[keys.OPERATIONS]
    async with webhook_session(settings.callback_deny_networks) as session:
        dispatcher = Dispatcher(
            store,
            session,
            settings.webhook_secrets,
            settings.webhook_retry_schedule,
            _owner(),
            EgressPolicy(settings.callback_hosts, settings.callback_deny_networks),
        )
        app[keys.DISPATCHER] = dispatcher
        app[keys.OUTBOX].on_due(dispatcher.wake)
        tasks = [
            asyncio.create_task(dispatcher.run(), name="webhook-dispatcher"),
            asyncio.create_task(worker.run(), name="operations-worker"),
            asyncio.create_task(app[keys.RECONCILER].run(), name="reconciler"),
            asyncio.create_task(
                purge(store, timedelta(days=settings.retention_days), PURGE_INTERVAL),
                name="purge",
            ),
        ]
        if settings.public_url and settings.vyte_webhook_token:
            target = (
                f"{settings.public_url.rstrip('/')}{WEBHOOK_PREFIX}{settings.vyte_webhook_token}"
            )
            health = app[keys.HEALTH]
            health.hooks = "not registered yet"
            registering = keep_registering(
                app[keys.VYTE], target, report=partial(setattr, health, "hooks")
            )
            tasks.append(asyncio.create_task(registering, name="hooks"))
        if settings.resync_interval > 0:
            resync = Resync(
                app[keys.VYTE],
                store,
                app[keys.VYTE_HOOKS],
                interval=settings.resync_interval,
                owner=_owner(),
                permits=resync_permits(settings.vyte_concurrency),
            )
            tasks.append(asyncio.create_task(resync.run(), name="resync"))
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

"""Every typed application key, and nothing else (no import cycles)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from service.availability import AvailabilityService
    from service.bookings import BookingService
    from service.config import Settings
    from service.health import Health
    from service.listing import BookingListing
    from service.notify.dispatcher import Dispatcher
    from service.notify.inbound import VyteHooks
    from service.notify.operations import Operations, OperationWorker
    from service.notify.outbox import Outbox
    from service.notify.reconciler import Reconciler
    from service.notify.subscriptions import Subscriptions
    from service.reschedule import RescheduleService
    from service.store.base import Store
    from service.vyte.client import VyteClient

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
VYTE: web.AppKey[VyteClient] = web.AppKey("vyte")
STORE: web.AppKey[Store] = web.AppKey("store")
AVAILABILITY: web.AppKey[AvailabilityService] = web.AppKey("availability")
BOOKINGS: web.AppKey[BookingService] = web.AppKey("bookings")
HEALTH: web.AppKey[Health] = web.AppKey("health")
OUTBOX: web.AppKey[Outbox] = web.AppKey("outbox")
DISPATCHER: web.AppKey[Dispatcher] = web.AppKey("dispatcher")
OPERATIONS: web.AppKey[OperationWorker] = web.AppKey("operations")
VYTE_HOOKS: web.AppKey[VyteHooks] = web.AppKey("vyte_hooks")
ASYNC_OPERATIONS: web.AppKey[Operations] = web.AppKey("async_operations")
SUBSCRIPTIONS: web.AppKey[Subscriptions] = web.AppKey("subscriptions")
RESCHEDULE: web.AppKey[RescheduleService] = web.AppKey("reschedule")
LISTING: web.AppKey[BookingListing] = web.AppKey("listing")
CURSOR_KEY: web.AppKey[bytes] = web.AppKey("cursor_key")
RECONCILER: web.AppKey[Reconciler] = web.AppKey("reconciler")

"""The route table: every path the service answers."""

from __future__ import annotations

from aiohttp import web

from service.http import handlers, lifecycle, operations, webhooks


def setup(app: web.Application) -> None:
    app.router.add_get("/livez", operations.livez, allow_head=False)
    app.router.add_get("/readyz", operations.readyz, allow_head=False)
    app.router.add_get("/metrics", operations.prometheus, allow_head=False)
    app.router.add_get("/openapi.yaml", operations.openapi, allow_head=False)
    app.router.add_get("/v1/availability", handlers.availability, allow_head=False)
    app.router.add_post("/v1/bookings", handlers.create_booking)
    app.router.add_get("/v1/bookings", lifecycle.list_bookings, allow_head=False)
    app.router.add_get("/v1/bookings/{booking_id}", handlers.get_booking, allow_head=False)
    app.router.add_post("/v1/bookings/{booking_id}/confirm", handlers.confirm_booking)
    app.router.add_post("/v1/bookings/{booking_id}/cancel", handlers.cancel_booking)
    app.router.add_post("/v1/bookings/{booking_id}/reschedule", lifecycle.reschedule_booking)
    app.router.add_get("/v1/operations/{operation_id}", webhooks.get_operation, allow_head=False)
    app.router.add_post("/v1/subscriptions", webhooks.create_subscription)
    app.router.add_get("/v1/subscriptions", webhooks.list_subscriptions, allow_head=False)
    app.router.add_delete("/v1/subscriptions/{subscription_id}", webhooks.delete_subscription)
    app.router.add_get("/v1/deliveries", webhooks.list_deliveries, allow_head=False)
    app.router.add_post("/v1/deliveries/{delivery_id}/retry", webhooks.retry_delivery)
    app.router.add_post("/v1/vyte/webhooks/{token}", webhooks.vyte_hook)

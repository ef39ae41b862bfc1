"""The route table: every path the service answers."""

from __future__ import annotations

from aiohttp import web

from service.http import handlers, operations


def setup(app: web.Application) -> None:
    app.router.add_get("/livez", operations.livez, allow_head=False)
    app.router.add_get("/readyz", operations.readyz, allow_head=False)
    app.router.add_get("/metrics", operations.prometheus, allow_head=False)
    app.router.add_get("/openapi.yaml", operations.openapi, allow_head=False)
    app.router.add_get("/v1/availability", handlers.availability, allow_head=False)
    app.router.add_post("/v1/bookings", handlers.create_booking)
    app.router.add_get("/v1/bookings/{booking_id}", handlers.get_booking, allow_head=False)
    app.router.add_post("/v1/bookings/{booking_id}/confirm", handlers.confirm_booking)
    app.router.add_post("/v1/bookings/{booking_id}/cancel", handlers.cancel_booking)

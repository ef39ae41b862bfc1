"""The route table: every path the service answers."""

from __future__ import annotations

from aiohttp import web

from service.http import handlers


def setup(app: web.Application) -> None:
    app.router.add_get("/livez", handlers.livez, allow_head=False)
    app.router.add_get("/readyz", handlers.readyz, allow_head=False)
    app.router.add_get("/v1/availability", handlers.availability, allow_head=False)
    app.router.add_post("/v1/bookings", handlers.create_booking)
    app.router.add_get("/v1/bookings/{booking_id}", handlers.get_booking, allow_head=False)
    app.router.add_post("/v1/bookings/{booking_id}/confirm", handlers.confirm_booking)
    app.router.add_post("/v1/bookings/{booking_id}/cancel", handlers.cancel_booking)

"""Request handlers: parse input, call one use-case, shape the answer."""

from __future__ import annotations

from aiohttp import web

from service import keys
from service.availability import parse_query
from service.bookings import parse_booking
from service.errors import FieldError, ValidationFailed
from service.http.idempotency import run_idempotent
from service.http.middlewares import CALLER
from service.http.parsing import json_response, read_json, single_query
from service.representation import booking_resource
from service.vyte.policy import budget


async def availability(request: web.Request) -> web.Response:
    raw = request.rel_url.query
    repeated = [FieldError(n, "given more than once") for n in set(raw) if len(raw.getall(n)) > 1]
    query = parse_query(dict(raw), repeated)
    settings = request.app[keys.SETTINGS]
    with budget(settings.request_budget):
        answer = await request.app[keys.AVAILABILITY].query(query)
    return json_response(answer)


async def create_booking(request: web.Request) -> web.Response:
    app = request.app
    settings = app[keys.SETTINGS]
    caller = request[CALLER]
    single_query(request, ())

    async def handle() -> web.Response:
        body = await read_json(request)
        assert body is not None
        booking_request = parse_booking(body, settings.callback_hosts)
        with budget(settings.request_budget):
            booking = await app[keys.BOOKINGS].create(caller, booking_request)
        return json_response(
            booking_resource(booking),
            status=201,
            headers={"Location": f"/v1/bookings/{booking.id}"},
        )

    return await run_idempotent(request, app[keys.STORE], caller, _lease(request), handle)


async def get_booking(request: web.Request) -> web.Response:
    single_query(request, ())
    settings = request.app[keys.SETTINGS]
    with budget(settings.request_budget):
        booking = await request.app[keys.BOOKINGS].get(request.match_info["booking_id"])
    return json_response(booking_resource(booking))


async def confirm_booking(request: web.Request) -> web.Response:
    return await _transition(request, "confirm")


async def cancel_booking(request: web.Request) -> web.Response:
    return await _transition(request, "cancel")


async def _transition(request: web.Request, action: str) -> web.Response:
    app = request.app
    settings = app[keys.SETTINGS]
    single_query(request, ())
    booking_id = request.match_info["booking_id"]

    async def handle() -> web.Response:
        body = await read_json(request, allow_empty=True)
        if body:
            raise ValidationFailed([FieldError(name, "unknown field") for name in body])
        service = app[keys.BOOKINGS]
        with budget(settings.request_budget):
            if action == "confirm":
                booking = await service.confirm(booking_id)
            else:
                booking = await service.cancel(booking_id)
        return json_response(booking_resource(booking))

    return await run_idempotent(request, app[keys.STORE], request[CALLER], _lease(request), handle)


def _lease(request: web.Request) -> float:
    settings = request.app[keys.SETTINGS]
    return settings.request_budget + settings.vyte_timeout + 30

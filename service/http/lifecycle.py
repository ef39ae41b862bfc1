"""Handlers of moving and listing bookings: reschedule, and GET /v1/bookings with its cursor."""

from __future__ import annotations

import attrs
from aiohttp import web

from service import keys
from service.http import cursors
from service.http.handlers import lease, prefers_async
from service.http.idempotency import run_idempotent
from service.http.middlewares import CALLER
from service.http.parsing import json_response, read_json, single_query
from service.http.requests import booking_list_query, reschedule_command
from service.http.resources import booking_list, booking_resource, operation_resource
from service.store.base import OperationType

_LIST_PARAMS = ("organizer", "status", "from", "to", "limit", "cursor")


async def reschedule_booking(request: web.Request) -> web.Response:
    app = request.app
    caller = request[CALLER]
    single_query(request, ())
    booking_id = request.match_info["booking_id"]

    async def handle() -> web.Response:
        move = reschedule_command(await read_json(request))
        service = app[keys.RESCHEDULE]
        if prefers_async(request):
            # Another caller's booking is 404 before anything is accepted (DESIGN §3.0).
            checked = await app[keys.BOOKINGS].check_access(caller, booking_id)
            operations = app[keys.ASYNC_OPERATIONS]
            op = await operations.accept(OperationType.RESCHEDULE, caller, checked, move)
            return json_response(
                operation_resource(op),
                status=202,
                headers={
                    "Location": f"/v1/operations/{op.id}",
                    "Preference-Applied": "respond-async",
                },
            )
        booking = await service.reschedule(caller, booking_id, move)
        return json_response(booking_resource(booking))

    return await run_idempotent(request, app[keys.STORE], caller, lease(request), handle)


async def list_bookings(request: web.Request) -> web.Response:
    app = request.app
    caller = request[CALLER]
    query, cursor = booking_list_query(single_query(request, _LIST_PARAMS))
    key = app[keys.CURSOR_KEY]
    if cursor is not None:
        query = attrs.evolve(query, after=cursors.read(key, caller, query, cursor))
    page = await app[keys.LISTING].page(caller, query)
    following = None
    if page.next_after is not None:
        following = cursors.issue(key, caller, query, page.next_after)
    return json_response(booking_list(page.bookings, following))

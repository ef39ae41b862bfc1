"""Handlers of availability and bookings: read the request into a command, call one use
case, shape its answer."""

from __future__ import annotations

from aiohttp import web

from service import keys
from service.availability import Availability
from service.budget import claim_lease
from service.commands import AvailabilityQuery, NewBooking
from service.domain.booking import Booking
from service.errors import FieldError
from service.http.idempotency import idempotency_key, kept_for_replay, run_idempotent
from service.http.middlewares import CALLER
from service.http.parsing import json_response, read_json, single_query
from service.http.render import dumps
from service.http.requests import availability_query, booking_command, empty_body
from service.http.resources import availability_answer, booking_resource, operation_resource
from service.store.base import OperationType, StoredResponse

# Queries read from a query string, by that string (reading depends on nothing else), and
# bodies rendered of an answer, by the answer (AvailabilityService hands a reused answer out
# again as the same object): the repeated query of the warm path is read and rendered once.
# Both drop their oldest entries beyond their bounds.
_QUERIES: dict[str, tuple[AvailabilityQuery, bool]] = {}
QUERY_ENTRIES = 1024
_BODIES: dict[tuple[int, bool], tuple[Availability, bytes]] = {}
BODY_BYTES = 4 << 20
_body_bytes = 0


async def availability(request: web.Request) -> web.Response:
    text = request.rel_url.raw_query_string
    parsed = _QUERIES.get(text)
    if parsed is None:
        raw = request.rel_url.query
        repeated = [
            FieldError(n, "given more than once") for n in set(raw) if len(raw.getall(n)) > 1
        ]
        parsed = availability_query(raw, repeated)
        _QUERIES[text] = parsed
        if len(_QUERIES) > QUERY_ENTRIES:
            del _QUERIES[next(iter(_QUERIES))]
    query, by_day = parsed
    answer = await request.app[keys.AVAILABILITY].query(query)
    return web.Response(
        body=_body(answer, by_day), content_type="application/json", charset="utf-8"
    )


def _body(answer: Availability, by_day: bool) -> bytes:
    """The JSON body of `answer`, rendered once per answer object."""
    global _body_bytes
    key = (id(answer), by_day)
    kept = _BODIES.get(key)
    # Kept entries hold their answer, so an id here is never one reused by another object.
    if kept is not None and kept[0] is answer:
        return kept[1]
    body = dumps(availability_answer(answer, by_day))
    _BODIES[key] = (answer, body)
    _body_bytes += len(body)
    while _body_bytes > BODY_BYTES and _BODIES:
        _body_bytes -= len(_BODIES.pop(next(iter(_BODIES)))[1])
    return body


async def create_booking(request: web.Request) -> web.Response:
    app = request.app
    settings = app[keys.SETTINGS]
    caller = request[CALLER]
    single_query(request, ())

    async def handle() -> web.Response:
        body = await read_json(request)
        booking_request = booking_command(
            body, settings.callback_hosts, settings.callback_deny_networks
        )
        if prefers_async(request):
            return await _accept(request, OperationType.CREATE, None, booking_request)
        key = idempotency_key(request)
        if key is None:
            booking = await app[keys.BOOKINGS].create(caller, booking_request)
        else:
            booking = await app[keys.BOOKINGS].create_keyed(caller, booking_request, key)
        return created(booking)

    # A create whose outcome is unknown keeps its key until the reconciler has decided.
    unknown = settings.unknown_outcome_timeout + lease(request)
    return await run_idempotent(
        request, app[keys.STORE], caller, lease(request), handle, unknown_lease=unknown
    )


def created(booking: Booking) -> web.Response:
    """The answer to a create that made `booking`."""
    return json_response(
        booking_resource(booking), status=201, headers={"Location": f"/v1/bookings/{booking.id}"}
    )


def created_answer(booking: Booking) -> StoredResponse:
    """What a keyed create replays once the reconciler found its event."""
    return kept_for_replay(created(booking))


async def get_booking(request: web.Request) -> web.Response:
    single_query(request, ())
    bookings = request.app[keys.BOOKINGS]
    booking = await bookings.get_for(request[CALLER], request.match_info["booking_id"])
    return json_response(booking_resource(booking))


async def confirm_booking(request: web.Request) -> web.Response:
    return await _transition(request, "confirm")


async def cancel_booking(request: web.Request) -> web.Response:
    return await _transition(request, "cancel")


async def _transition(request: web.Request, action: str) -> web.Response:
    app = request.app
    single_query(request, ())
    booking_id = request.match_info["booking_id"]
    caller = request[CALLER]

    async def handle() -> web.Response:
        empty_body(await read_json(request, allow_empty=True))
        service = app[keys.BOOKINGS]
        if prefers_async(request):
            kind = OperationType.CONFIRM if action == "confirm" else OperationType.CANCEL
            # Another caller's booking is refused before anything is accepted (DESIGN §3.0).
            checked = await service.check_access(caller, booking_id)
            return await _accept(request, kind, checked, None)
        if action == "confirm":
            booking = await service.confirm(caller, booking_id)
        else:
            booking = await service.cancel(caller, booking_id)
        return json_response(booking_resource(booking))

    return await run_idempotent(request, app[keys.STORE], caller, lease(request), handle)


def lease(request: web.Request) -> float:
    """How long an Idempotency-Key stays claimed by a request still running."""
    settings = request.app[keys.SETTINGS]
    return claim_lease(settings.request_budget, settings.vyte_timeout)


def prefers_async(request: web.Request) -> bool:
    """`Prefer: respond-async` (RFC 7240), among other preferences."""
    for header in request.headers.getall("Prefer", []):
        for preference in header.split(","):
            if preference.split(";")[0].strip().lower() == "respond-async":
                return True
    return False


async def _accept(
    request: web.Request,
    kind: OperationType,
    booking_id: str | None,
    command: NewBooking | None,
) -> web.Response:
    """Store the operation durably, then answer 202; the worker applies it."""
    operations = request.app[keys.ASYNC_OPERATIONS]
    op = await operations.accept(kind, request[CALLER], booking_id, command)
    return json_response(
        operation_resource(op),
        status=202,
        headers={"Location": f"/v1/operations/{op.id}", "Preference-Applied": "respond-async"},
    )

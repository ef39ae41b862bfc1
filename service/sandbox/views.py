"""The Vyte v2 endpoints the sandbox emulates (auth test, slots, events, hooks)."""

from __future__ import annotations

import json
import re

from aiohttp import web

from . import availability
from .events import Event
from .keys import HOOKS, STATE
from .state import EventQuery
from .wire import BadRequest, now

routes = web.RouteTableDef()

_LIMIT = re.compile(r"^\d{1,6}$")


@routes.get("/v2/auth/test")
async def auth_test(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].seed.organization.to_json())


@routes.get("/v2/slots")
async def slots(request: web.Request) -> web.Response:
    state = request.app[STATE]
    query = availability.parse_slot_query(request.query, state)
    return web.json_response(availability.slots_answer(query, state, by_day=False))


@routes.get("/v2/slots/days")
async def slots_by_day(request: web.Request) -> web.Response:
    state = request.app[STATE]
    query = availability.parse_slot_query(request.query, state)
    return web.json_response(availability.slots_answer(query, state, by_day=True))


@routes.post("/v2/events")
async def create_event(request: web.Request) -> web.Response:
    state = request.app[STATE]
    event = state.create_event(await json_body(request), now())
    actions = ["event.created", "event.confirmed"] if event.confirmed else ["event.created"]
    announce(request.app, event, *actions)
    return web.json_response(state.event_json(event), status=201)


@routes.get("/v2/events")
async def list_events(request: web.Request) -> web.Response:
    state = request.app[STATE]
    query = _event_query(request)
    found = state.find_events(query, now())
    return web.json_response([state.event_json(event) for event in found])


@routes.get("/v2/events/{id}")
async def get_event(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response(state.event_json(state.event(request.match_info["id"])))


@routes.put("/v2/events/{id}")
async def update_event(request: web.Request) -> web.Response:
    state = request.app[STATE]
    event = state.event(request.match_info["id"])
    body = await json_body(request)
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    # Vyte fires event.updated only "when an event that was already confirmed has been
    # edited and reconfirmed": edits to a requested event are announced to nobody.
    if event.update(body, now()) and event.confirmed:
        announce(request.app, event, "event.updated")
    return web.json_response(state.event_json(event))


@routes.post("/v2/events/{id}/confirm")
async def confirm_event(request: web.Request) -> web.Response:
    date_id, place_id = await _confirm_choice(request)
    event = confirm(request.app, request.match_info["id"], date_id, place_id)
    return web.json_response(request.app[STATE].event_json(event))


@routes.post("/v2/events/{id}/cancel")
async def cancel_event(request: web.Request) -> web.Response:
    cancel(request.app, request.match_info["id"])
    return web.Response(text="OK")


@routes.post("/v2/hooks")
async def create_hook(request: web.Request) -> web.Response:
    hook = request.app[STATE].add_hook(await json_body(request), now())
    return web.json_response(hook.to_json(), status=201)


@routes.get("/v2/hooks")
async def list_hooks(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].hooks_json())


@routes.get("/v2/hooks/{id}")
async def get_hook(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].hook(request.match_info["id"]).to_json())


@routes.put("/v2/hooks/{id}")
async def update_hook(request: web.Request) -> web.Response:
    state = request.app[STATE]
    hook = state.update_hook(request.match_info["id"], await json_body(request), now())
    return web.json_response(hook.to_json())


@routes.delete("/v2/hooks/{id}")
async def delete_hook(request: web.Request) -> web.Response:
    request.app[STATE].remove_hook(request.match_info["id"])
    return web.Response(status=204)


# Shared with the admin endpoints, which act as an invitee inside Vyte.


def confirm(
    app: web.Application, event_id: str, date_id: str | None, place_id: str | None
) -> Event:
    event = app[STATE].event(event_id)
    if event.confirm(date_id, place_id, now()):
        announce(app, event, "event.confirmed")
    return event


def cancel(app: web.Application, event_id: str) -> Event:
    event = app[STATE].event(event_id)
    if event.cancel(now()):
        announce(app, event, "event.cancelled")
    return event


def announce(app: web.Application, event: Event, *actions: str) -> None:
    """Fire the hooks subscribed to `actions`, with the event as it is now."""
    state = app[STATE]
    resource = state.event_json(event)
    for action in actions:
        app[HOOKS].fire(
            state.hooks_for(action),
            action,
            state.organization_id,
            resource,
            batch=state.switches.hook_batch,
        )


async def json_body(request: web.Request) -> object:
    try:
        return json.loads(await request.text())
    except ValueError as err:
        raise BadRequest("body must be JSON") from err


async def _confirm_choice(request: web.Request) -> tuple[str | None, str | None]:
    """The `d` (date id) and `p` (place id) to confirm, from the query string or the body."""
    choice: dict[str, object] = {}
    if request.body_exists:
        if request.content_type == "application/json":
            body = await json_body(request)
            if isinstance(body, dict):
                choice.update(body)
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            choice.update(await request.post())
    choice.update(request.query)
    date_id, place_id = choice.get("d"), choice.get("p")
    if date_id is not None and not isinstance(date_id, str):
        raise BadRequest("d must be a date id")
    if place_id is not None and not isinstance(place_id, str):
        raise BadRequest("p must be a place id")
    return date_id or None, place_id or None


def _event_query(request: web.Request) -> EventQuery:
    params = request.query
    limit = params.get("limit", "100")
    if not _LIMIT.match(limit) or int(limit) < 1:
        raise BadRequest("limit must be a positive integer")
    filter_ = params.get("filter")
    if filter_ not in (None, "confirmed", "upcoming"):
        raise BadRequest("filter must be confirmed or upcoming")
    return EventQuery(
        limit=int(limit),
        title=_title_pattern(params.get("q")),
        confirmed_only=filter_ == "confirmed",
        upcoming_only=filter_ == "upcoming",
        creator_users=frozenset(_csv(params.get("creator_users"))),
        creator_emails=frozenset(e.lower() for e in _csv(params.get("creator_emails"))),
        invitee_users=frozenset(_csv(params.get("invitee_users"))),
        invitee_emails=frozenset(e.lower() for e in _csv(params.get("invitee_emails"))),
    )


def _title_pattern(raw: str | None) -> re.Pattern[str] | None:
    """`q` is "a regex" on the title (Vyte's words), searched anywhere in it.

    Vyte does not say whether case matters; matching case-insensitively, as a search box
    would, answers a superset, so a client must compare titles itself either way.
    """
    if not raw:
        return None
    try:
        return re.compile(raw, re.IGNORECASE)
    except re.error as err:
        raise BadRequest(f"q is not a valid regular expression: {err}") from err


def _csv(raw: str | None) -> list[str]:
    return [part.strip() for part in (raw or "").split(",") if part.strip()]

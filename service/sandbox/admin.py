"""`/_sandbox/*`: test controls (faults, stats, reset) and acting as an invitee inside Vyte.

None of these need the API key: they stand for things that happen outside the API.
"""

from __future__ import annotations

from aiohttp import web

from . import views
from .faults import parse_fault
from .keys import HOOKS, STATE

routes = web.RouteTableDef()


@routes.post("/_sandbox/faults")
async def set_fault(request: web.Request) -> web.Response:
    faults = request.app[STATE].faults
    faults.set(parse_fault(await views.json_body(request)))
    return web.json_response(faults.to_json())


@routes.get("/_sandbox/faults")
async def get_fault(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].faults.to_json())


@routes.delete("/_sandbox/faults")
async def clear_fault(request: web.Request) -> web.Response:
    request.app[STATE].faults.clear()
    return web.Response(status=204)


@routes.get("/_sandbox/stats")
async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].stats_json())


@routes.delete("/_sandbox/stats")
async def clear_stats(request: web.Request) -> web.Response:
    request.app[STATE].requests.clear()
    return web.Response(status=204)


@routes.post("/_sandbox/reset")
async def reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    request.app[HOOKS].forget()
    return web.Response(status=204)


@routes.get("/_sandbox/settings")
async def get_settings(request: web.Request) -> web.Response:
    return web.json_response(request.app[STATE].switches.to_json())


@routes.patch("/_sandbox/settings")
async def change_settings(request: web.Request) -> web.Response:
    """Switch a documented-two-ways behaviour for this sandbox until the next reset."""
    switches = request.app[STATE].switches
    switches.update(await views.json_body(request))
    return web.json_response(switches.to_json())


@routes.get("/_sandbox/users")
async def users(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response([state.user_json(user) for user in state.seed.users])


@routes.patch("/_sandbox/users/{id}")
async def change_user(request: web.Request) -> web.Response:
    """`{"auto_confirm": bool}`: the user's booking page setting, until the next reset."""
    state = request.app[STATE]
    user = state.set_auto_confirm(request.match_info["id"], await views.json_body(request))
    return web.json_response(state.user_json(user))


@routes.get("/_sandbox/events")
async def events(request: web.Request) -> web.Response:
    state = request.app[STATE]
    return web.json_response([state.event_json(event) for event in state.events.values()])


@routes.post("/_sandbox/events/{id}/confirm")
async def confirm_as_invitee(request: web.Request) -> web.Response:
    params = request.query
    event = views.confirm(
        request.app, request.match_info["id"], params.get("d") or None, params.get("p") or None
    )
    return web.json_response(request.app[STATE].event_json(event))


@routes.post("/_sandbox/events/{id}/cancel")
async def cancel_as_invitee(request: web.Request) -> web.Response:
    event = views.cancel(request.app, request.match_info["id"])
    return web.json_response(request.app[STATE].event_json(event))


@routes.get("/_sandbox/deliveries")
async def deliveries(request: web.Request) -> web.Response:
    hooks = request.app[HOOKS]
    return web.json_response(
        {"pending": hooks.pending, "deliveries": [d.to_json() for d in hooks.deliveries]}
    )


@routes.post("/_sandbox/deliveries/drain")
async def drain_deliveries(request: web.Request) -> web.Response:
    """Answers once every hook delivery under way has finished."""
    hooks = request.app[HOOKS]
    await hooks.drain()
    return web.json_response(
        {"pending": hooks.pending, "deliveries": [d.to_json() for d in hooks.deliveries]}
    )

"""Handlers of webhook-style work (operations, subscriptions, deliveries) and of Vyte's hooks."""

from __future__ import annotations

import hmac

from aiohttp import web

from service import keys
from service.errors import NotFound
from service.http.handlers import lease
from service.http.idempotency import run_idempotent
from service.http.middlewares import CALLER
from service.http.parsing import json_response, read_json, read_json_value, single_query
from service.http.requests import delivery_query, empty_body, subscription_command
from service.http.resources import (
    delivery_resource,
    operation_resource,
    subscription_resource,
)


async def get_operation(request: web.Request) -> web.Response:
    single_query(request, ())
    operations = request.app[keys.ASYNC_OPERATIONS]
    op = await operations.get(request[CALLER], request.match_info["operation_id"])
    return json_response(operation_resource(op))


async def create_subscription(request: web.Request) -> web.Response:
    single_query(request, ())
    store = request.app[keys.STORE]
    return await run_idempotent(
        request, store, request[CALLER], lease(request), lambda: _subscribe(request)
    )


async def _subscribe(request: web.Request) -> web.Response:
    settings = request.app[keys.SETTINGS]
    command = subscription_command(
        await read_json(request), settings.callback_hosts, settings.callback_deny_networks
    )
    sub, created = await request.app[keys.SUBSCRIPTIONS].subscribe(request[CALLER], command)
    # The same subscription again is the one already held (200), never a duplicate.
    return json_response(
        subscription_resource(sub),
        201 if created else 200,
        headers={"Location": f"/v1/subscriptions/{sub.id}"},
    )


async def list_subscriptions(request: web.Request) -> web.Response:
    single_query(request, ())
    subs = await request.app[keys.SUBSCRIPTIONS].of(request[CALLER])
    return json_response({"subscriptions": [subscription_resource(s) for s in subs]})


async def delete_subscription(request: web.Request) -> web.Response:
    single_query(request, ())
    subscriptions = request.app[keys.SUBSCRIPTIONS]
    await subscriptions.delete(request[CALLER], request.match_info["subscription_id"])
    return web.Response(status=204)


async def list_deliveries(request: web.Request) -> web.Response:
    query = delivery_query(single_query(request, ("status", "limit")))
    deliveries = await request.app[keys.SUBSCRIPTIONS].deliveries(request[CALLER], query)
    return json_response({"deliveries": [delivery_resource(d) for d in deliveries]})


async def retry_delivery(request: web.Request) -> web.Response:
    single_query(request, ())
    store = request.app[keys.STORE]
    return await run_idempotent(
        request, store, request[CALLER], lease(request), lambda: _retry(request)
    )


async def _retry(request: web.Request) -> web.Response:
    empty_body(await read_json(request, allow_empty=True))
    subscriptions = request.app[keys.SUBSCRIPTIONS]
    delivery = await subscriptions.retry(request[CALLER], request.match_info["delivery_id"])
    return json_response(delivery_resource(delivery), 202)


async def vyte_hook(request: web.Request) -> web.Response:
    """Vyte's notification: authenticated by the secret token in the path only."""
    settings = request.app[keys.SETTINGS]
    expected = (settings.vyte_webhook_token or "").encode()
    given = request.match_info["token"].encode()
    if not expected or not hmac.compare_digest(given, expected):
        raise NotFound("no such resource")
    # Vyte's own wire format: the use case reads it with Vyte's models.
    await request.app[keys.VYTE_HOOKS].receive(await read_json_value(request))
    return web.Response(status=204)

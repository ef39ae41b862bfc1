"""Handlers for webhook-style work: operations, subscriptions, deliveries, Vyte's hooks."""

from __future__ import annotations

import hmac
import uuid
from datetime import UTC, datetime
from typing import Any

import attrs
from aiohttp import web

from service import keys
from service.bookings import upstream_problem, validate_url
from service.errors import Conflict, FieldError, NotFound, ValidationFailed
from service.http.handlers import lease
from service.http.idempotency import run_idempotent
from service.http.middlewares import CALLER
from service.http.parsing import json_response, read_json, read_json_value, single_query
from service.notify.inbound import parse_notifications
from service.notify.operations import operation_resource
from service.notify.outbox import EVENT_TYPES
from service.store.base import Delivery, DeliveryStatus, Subscription
from service.vyte.errors import VyteError
from service.vyte.policy import budget

_DELIVERY_STATUSES = tuple(s.value for s in DeliveryStatus)


async def get_operation(request: web.Request) -> web.Response:
    single_query(request, ())
    op = await request.app[keys.STORE].get_operation(request.match_info["operation_id"])
    if op is None or op.caller != request[CALLER]:
        # Another caller's operation is not there for this one.
        raise NotFound("no such operation")
    return json_response(operation_resource(op))


def subscription_resource(sub: Subscription) -> dict[str, Any]:
    return {
        "id": sub.id,
        "url": sub.url,
        "events": list(sub.events),
        "created_at": sub.created_at.isoformat(timespec="seconds"),
    }


async def create_subscription(request: web.Request) -> web.Response:
    single_query(request, ())
    store = request.app[keys.STORE]
    return await run_idempotent(
        request, store, request[CALLER], lease(request), lambda: _subscribe(request)
    )


async def _subscribe(request: web.Request) -> web.Response:
    settings = request.app[keys.SETTINGS]
    body = await read_json(request)
    assert body is not None
    problems = [FieldError(k, "unknown field") for k in body if k not in ("url", "events")]
    if body.get("url") is None:
        problems.append(FieldError("url", "required"))
    url = validate_url(body.get("url"), "url", problems, settings.egress)
    events = body.get("events")
    if (
        not isinstance(events, list)
        or not events
        or any(e not in EVENT_TYPES for e in events)
        or len(set(events)) != len(events)
    ):
        problems.append(
            FieldError(
                "events", f"a non-empty list of distinct event types: {', '.join(EVENT_TYPES)}"
            )
        )
    if problems:
        raise ValidationFailed(problems)
    assert url is not None and isinstance(events, list)
    sub = Subscription(
        id=f"sub_{uuid.uuid4().hex}",
        url=url,
        events=tuple(events),
        caller=request[CALLER],
        created_at=datetime.now(UTC),
    )
    await request.app[keys.STORE].add_subscription(sub)
    return json_response(
        subscription_resource(sub), 201, headers={"Location": f"/v1/subscriptions/{sub.id}"}
    )


async def list_subscriptions(request: web.Request) -> web.Response:
    single_query(request, ())
    caller = request[CALLER]
    subs = await request.app[keys.STORE].list_subscriptions()
    return json_response(
        {"subscriptions": [subscription_resource(s) for s in subs if s.caller == caller]}
    )


async def delete_subscription(request: web.Request) -> web.Response:
    single_query(request, ())
    store = request.app[keys.STORE]
    sub_id = request.match_info["subscription_id"]
    owned = [s for s in await store.list_subscriptions() if s.id == sub_id]
    if (
        not owned
        or owned[0].caller != request[CALLER]
        or not await store.delete_subscription(sub_id)
    ):
        raise NotFound("no such subscription")
    return web.Response(status=204)


def delivery_resource(d: Delivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "event_type": d.event_type,
        "url": d.url,
        "booking_id": d.booking_id,
        "status": d.status.value,
        "attempts": d.attempts,
        "last_error": d.last_error,
        "next_attempt_at": d.next_attempt_at.isoformat(timespec="seconds"),
        "created_at": d.created_at.isoformat(timespec="seconds"),
        "updated_at": d.updated_at.isoformat(timespec="seconds"),
    }


async def list_deliveries(request: web.Request) -> web.Response:
    query = single_query(request, ("status", "limit"))
    problems = []
    status = query.get("status")
    if status is not None and status not in _DELIVERY_STATUSES:
        problems.append(FieldError("status", f"one of {', '.join(_DELIVERY_STATUSES)}"))
    raw_limit = query.get("limit", "100")
    if not (raw_limit.isascii() and raw_limit.isdigit()) or not 1 <= int(raw_limit) <= 500:
        problems.append(FieldError("limit", "an integer from 1 to 500"))
    if problems:
        raise ValidationFailed(problems)
    deliveries = await request.app[keys.STORE].list_deliveries(
        DeliveryStatus(status) if status else None, int(raw_limit), request[CALLER]
    )
    return json_response({"deliveries": [delivery_resource(d) for d in deliveries]})


async def retry_delivery(request: web.Request) -> web.Response:
    single_query(request, ())
    store = request.app[keys.STORE]
    return await run_idempotent(
        request, store, request[CALLER], lease(request), lambda: _retry(request)
    )


async def _retry(request: web.Request) -> web.Response:
    body = await read_json(request, allow_empty=True)
    if body:
        raise ValidationFailed([FieldError(name, "unknown field") for name in body])
    store = request.app[keys.STORE]
    delivery = await store.get_delivery(request.match_info["delivery_id"])
    if delivery is None or delivery.caller != request[CALLER]:
        # Another caller's delivery (and its URL) is not there for this one.
        raise NotFound("no such delivery")
    if delivery.status == DeliveryStatus.DELIVERED:
        # Sending it again could put an old event after newer ones at the receiver.
        raise Conflict(f"delivery {delivery.id} was delivered; only failed ones are re-sent")
    if delivery.status == DeliveryStatus.FAILED:
        now = datetime.now(UTC)
        delivery = attrs.evolve(
            delivery, status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=now, updated_at=now
        )
        await store.update_delivery(delivery)
        request.app[keys.DISPATCHER].wake()
    return json_response(delivery_resource(delivery), 202)


async def vyte_hook(request: web.Request) -> web.Response:
    """Vyte's notification: authenticated by the secret token in the path only."""
    settings = request.app[keys.SETTINGS]
    expected = (settings.vyte_webhook_token or "").encode()
    given = request.match_info["token"].encode()
    if not expected or not hmac.compare_digest(given, expected):
        raise NotFound("no such resource")
    body = await read_json_value(request)
    _check_hook_fields(body)
    notifications = parse_notifications(body)
    hooks = request.app[keys.VYTE_HOOKS]
    try:
        with budget(settings.request_budget):
            for notification in notifications:
                await hooks.handle(notification)
    except VyteError as err:
        raise upstream_problem(err) from err
    request.app[keys.DISPATCHER].wake()
    return web.Response(status=204)


def _check_hook_fields(body: object) -> None:
    """400 unless the fields read from a notification have Vyte's types.

    The Vyte converter would coerce them (`{"_id": {}}` becomes the id "{}").
    """
    items = body if isinstance(body, list) else [body]
    bad = []
    for i, item in enumerate(items):
        resource = item.get("resource") if isinstance(item, dict) else None
        if not (
            isinstance(item, dict)
            and isinstance(item.get("action"), str)
            and isinstance(item.get("organization"), str | dict | None)
            and isinstance(resource, dict)
            and isinstance(resource.get("_id"), str)
        ):
            bad.append(FieldError(f"[{i}]", "not a Vyte hook notification"))
    if bad:
        raise ValidationFailed(bad)

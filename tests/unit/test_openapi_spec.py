"""openapi.yaml: a valid OpenAPI 3.1 document that describes exactly the app's routes, with the
conventions every operation shares (auth, problem+json errors, X-Request-ID, idempotency)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from service import errors
from service.app import create_app
from service.config import Settings
from service.http import problems
from service.notify.outbox import EVENT_TYPES
from tests.conftest import AUTH, make_settings
from tests.contract import (
    SPEC_PATH,
    ContractViolation,
    contract_middleware,
    spec_document,
    spec_operations,
)

PROBLEM = "application/problem+json"
UNAUTHENTICATED = {"/livez", "/readyz", "/metrics", "/openapi.yaml", "/v1/vyte/webhooks/{token}"}


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec_document()["paths"].items():
        for method, operation in item.items():
            if method in ("get", "put", "post", "delete", "patch"):
                yield method.upper(), path, operation


def resolve(node: Any) -> Any:
    """Follow local `$ref`s (the spec only has local ones)."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = spec_document()
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def parameters_of(path: str, operation: dict[str, Any]) -> list[dict[str, Any]]:
    shared = spec_document()["paths"][path].get("parameters", [])
    return [resolve(p) for p in [*shared, *operation.get("parameters", [])]]


def test_the_spec_is_valid_openapi_3_1() -> None:
    document = spec_document()
    assert document["openapi"].startswith("3.1.")
    validate(document)


def test_app_routes_and_spec_operations_match_both_ways(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path))
    routed = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method not in ("HEAD", "OPTIONS")
    }
    in_spec = spec_operations()
    assert routed - in_spec == set(), "routes the spec does not describe"
    assert in_spec - routed == set(), "operations the app does not serve"


def test_path_parameters_are_named_as_in_the_route() -> None:
    for method, path, operation in operations():
        in_path = set(re.findall(r"{([^}]+)}", path))
        declared = {p["name"] for p in parameters_of(path, operation) if p["in"] == "path"}
        assert in_path == declared, (method, path)


def test_operation_ids_are_unique_lower_camel_case() -> None:
    ids = [operation["operationId"] for _, _, operation in operations()]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"[a-z]+(?:[A-Z][a-z]+)*", i) for i in ids), ids


def test_v1_operations_need_the_bearer_token_and_say_401() -> None:
    assert spec_document()["security"] == [{"bearerAuth": []}]
    scheme = spec_document()["components"]["securitySchemes"]["bearerAuth"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for method, path, operation in operations():
        if path in UNAUTHENTICATED:
            assert operation["security"] == [], (method, path)
        else:
            assert "security" not in operation, (method, path)
            assert "401" in operation["responses"], (method, path)


def test_every_response_carries_x_request_id_and_every_error_is_a_problem() -> None:
    problem = {"$ref": "#/components/schemas/Problem"}
    for method, path, operation in operations():
        assert "500" in operation["responses"], (method, path)
        for status, response in operation["responses"].items():
            response = resolve(response)
            header = resolve(response["headers"]["X-Request-ID"])
            assert header["required"] is True, (method, path, status)
            if (status == "default" or int(status) >= 400) and (path, status) != (
                "/readyz",
                "503",
            ):
                # (a not-ready /readyz answers its usual report, naming the failing checks)
                assert list(response["content"]) == [PROBLEM], (method, path, status)
                assert response["content"][PROBLEM]["schema"] == problem, (method, path, status)


def test_x_request_id_is_documented_but_never_validated() -> None:
    # DESIGN §3: an unusable X-Request-ID is replaced, never a reason to reject a request.
    parameter = spec_document()["components"]["parameters"]["RequestId"]
    assert parameter["schema"] == {"type": "string"}
    for method, path, operation in operations():
        names = [p["name"] for p in parameters_of(path, operation) if p["in"] == "header"]
        assert "X-Request-ID" in names, (method, path)


def test_posts_take_idempotency_keys_and_json_posts_say_413_and_415() -> None:
    for method, path, operation in operations():
        if method != "POST":
            continue
        names = {p["name"] for p in parameters_of(path, operation)}
        if path in UNAUTHENTICATED:  # Vyte's hook has no caller to scope a key to
            assert "Idempotency-Key" not in names
        else:
            assert "Idempotency-Key" in names, path
            assert "422" in operation["responses"], path
        if "requestBody" in operation:
            assert {"413", "415"} <= operation["responses"].keys(), path


def test_async_capable_posts_document_prefer_and_202() -> None:
    for path in (
        "/v1/bookings",
        "/v1/bookings/{booking_id}/confirm",
        "/v1/bookings/{booking_id}/cancel",
        "/v1/bookings/{booking_id}/reschedule",
    ):
        operation = spec_document()["paths"][path]["post"]
        assert "Prefer" in {p["name"] for p in parameters_of(path, operation)}
        accepted = resolve(operation["responses"]["202"])
        assert {"Location", "Preference-Applied"} <= accepted["headers"].keys()


def test_outbound_webhooks_are_callbacks_of_the_urls_given_covering_every_event_type() -> None:
    # Callbacks, not a top-level `webhooks` section: generators that turn `webhooks` into
    # client methods (POST /booking.confirmed) skip callbacks, and the URL a webhook goes to
    # is exactly the one given in the request body.
    assert "webhooks" not in spec_document()
    schemas = spec_document()["components"]["schemas"]
    assert schemas["EventType"]["enum"] == list(EVENT_TYPES)
    event = schemas["WebhookEvent"]
    assert set(event["discriminator"]["mapping"]) == set(EVENT_TYPES)
    for name, target in event["discriminator"]["mapping"].items():
        kind = resolve({"$ref": target})["properties"]["type"]
        assert name in kind.get("enum", [kind.get("const")]), name
    paths = spec_document()["paths"]
    where = {
        "{$request.body#/callback_url}": paths["/v1/bookings"]["post"],
        "{$request.body#/url}": paths["/v1/subscriptions"]["post"],
    }
    for expression, operation in where.items():
        (callback,) = operation["callbacks"].values()
        delivery = callback[expression]["post"]
        assert delivery["security"] == []
        headers = {resolve(p)["name"] for p in delivery["parameters"]}
        assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature", "X-Request-ID"}
        body = resolve(delivery["requestBody"])["content"]["application/json"]["schema"]
        assert body == {"$ref": "#/components/schemas/WebhookEvent"}


def _service_error_classes() -> Iterator[type[errors.ServiceError]]:
    pending = [errors.ServiceError]
    while pending:
        cls = pending.pop()
        yield cls
        pending.extend(cls.__subclasses__())


def test_problem_types_are_registered_once_matching_the_code_both_ways() -> None:
    registry = spec_document()["components"]["schemas"]["Problem"]["x-problem-types"]
    raised = {cls.slug: cls.status for cls in _service_error_classes()}
    routed = {slug: status for status, slug in problems._SLUGS.items()}
    # aiohttp's other errors (a malformed request, 408, 431...) share one fallback type.
    in_code = {**raised, **routed, "http-error": 400}
    registered = {slug: entry["status"] for slug, entry in registry.items()}
    assert registered == in_code, "x-problem-types of Problem and service/errors.py differ"


def test_every_problem_example_uses_a_registered_type_and_its_status() -> None:
    registry = spec_document()["components"]["schemas"]["Problem"]["x-problem-types"]
    seen = set()
    for where, schema, value in _examples():
        if schema == {"$ref": "#/components/schemas/Problem"}:
            slug = value["type"].removeprefix("/problems/")
            assert registry[slug]["status"] == value["status"], where
            seen.add(slug)
    assert "conflict" in registry and len(seen) > 10


def test_responses_are_open_for_extension_and_requests_are_strict() -> None:
    # A member added to an answer later must not break a strict client (RFC 9457 allows
    # extension members in problems), while a request's unknown field stays a 400.
    schemas = spec_document()["components"]["schemas"]
    strict = {
        "BookingRequest",
        "InviteeRequest",
        "PlaceRequest",
        "SubscriptionRequest",
        "RescheduleRequest",
    }
    for name, schema in schemas.items():
        if "properties" in schema:
            closed = schema.get("additionalProperties") is False
            assert closed == (name in strict), name
    no_fields = spec_document()["components"]["requestBodies"]["NoFields"]
    assert no_fields["content"]["application/json"]["schema"]["additionalProperties"] is False


def test_request_fields_filled_in_by_the_gateway_stay_optional_in_generated_types() -> None:
    # openapi-typescript makes every property with a `default` required; request fields
    # the gateway fills in say their default in words instead.
    schemas = spec_document()["components"]["schemas"]
    for name in ("BookingRequest", "InviteeRequest", "PlaceRequest", "SubscriptionRequest"):
        for field, prop in schemas[name]["properties"].items():
            assert "default" not in prop, (name, field)
    assert "not" not in schemas["BookingRequest"]  # a generator turns it into a bogus model
    booking = schemas["BookingRequest"]["properties"]
    assert "`UTC` when left out" in booking["timezone"]["description"]
    assert "`true` when left out" in booking["check_availability"]["description"]


def test_a_server_entry_and_a_typed_openapi_document() -> None:
    (server,) = spec_document()["servers"]
    defaults = {k: v["default"] for k, v in server["variables"].items()}
    assert server["url"].format(**defaults) == "http://127.0.0.1:8080"
    fields = attrs.fields(Settings)
    assert (fields.host.default, str(fields.port.default)) == ("127.0.0.1", "8080")
    operation = spec_document()["paths"]["/openapi.yaml"]["get"]
    yaml_body = operation["responses"]["200"]["content"]["application/yaml"]
    assert yaml_body["schema"]["type"] == "string"


def test_replayable_error_answers_say_idempotent_replayed() -> None:
    for name in ("BadRequest", "NotFound", "Conflict", "PayloadTooLarge", "UnsupportedMediaType"):
        response = spec_document()["components"]["responses"][name]
        assert "Idempotent-Replayed" in response["headers"], name
    reused = spec_document()["components"]["responses"]["IdempotencyKeyReused"]
    assert "Idempotent-Replayed" in reused["headers"]
    allowed = spec_document()["components"]["responses"]["MethodNotAllowed"]
    assert resolve(allowed["headers"]["Allow"])["required"] is True


def test_links_name_existing_operations_and_parameters() -> None:
    by_id = {operation["operationId"]: (path, operation) for _, path, operation in operations()}
    for method, path, operation in operations():
        for response in operation["responses"].values():
            for link in resolve(response).get("links", {}).values():
                link = resolve(link)
                target_path, target = by_id[link["operationId"]]
                names = {p["name"] for p in parameters_of(target_path, target)}
                assert set(link["parameters"]) <= names, (method, path, link)


def _examples() -> Iterator[tuple[str, Any, Any]]:
    """(where, schema, example value) for every example in the spec."""
    for method, path, operation in operations():
        for parameter in parameters_of(path, operation):
            values = [e["value"] for e in parameter.get("examples", {}).values()]
            if "example" in parameter:
                values.append(parameter["example"])
            for value in values:
                yield f"{method} {path} {parameter['name']}", parameter["schema"], value
        bodies = [("request", resolve(operation.get("requestBody", {})))]
        bodies += [(status, resolve(r)) for status, r in operation["responses"].items()]
        for where, body in bodies:
            for media in body.get("content", {}).values():
                values = [resolve(e)["value"] for e in media.get("examples", {}).values()]
                if "example" in media:
                    values.append(media["example"])
                for value in values:
                    yield f"{method} {path} {where}", media["schema"], value


def _validator(schema: Any) -> Draft202012Validator:
    # Local refs (#/components/...) resolve against the document root: give it the components.
    rooted = {**schema, "components": spec_document()["components"]}
    return Draft202012Validator(rooted, format_checker=Draft202012Validator.FORMAT_CHECKER)


@pytest.mark.parametrize(("where", "schema", "value"), list(_examples()))
def test_examples_match_their_schemas(where: str, schema: Any, value: Any) -> None:
    errors = [e.message for e in _validator(schema).iter_errors(value)]
    assert errors == [], where


async def test_the_served_document_is_this_file(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path))
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        resp = await client.get("/openapi.yaml")
        assert resp.status == 200
        assert resp.content_type == "application/yaml"
        assert await resp.read() == SPEC_PATH.read_bytes()


async def _answers_of(
    app: web.Application, *requests: tuple[str, str, dict[str, str]]
) -> list[int]:
    """Statuses of (method, path, headers) requests, through a client that checks answers
    against the spec."""
    client = TestClient(TestServer(app, host="127.0.0.1"), middlewares=(contract_middleware(app),))
    statuses = []
    async with client:
        for method, path, headers in requests:
            statuses.append((await client.request(method, path, headers=headers)).status)
    return statuses


async def test_the_contract_check_allows_only_the_routers_own_404_and_405(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path))
    statuses = await _answers_of(
        app,
        ("GET", "/v1/nowhere", AUTH),
        ("GET", "/v1/nowhere", {}),
        ("DELETE", "/v1/bookings", AUTH),
    )
    assert statuses == [404, 401, 405]

    async def extra(request: web.Request) -> web.Response:
        return web.json_response({})

    app = create_app(make_settings(tmp_path))
    app.router.add_get("/v1/undocumented", extra)
    with pytest.raises(ContractViolation, match=r"openapi\.yaml lacks it"):
        await _answers_of(app, ("GET", "/v1/undocumented", AUTH))


@pytest.mark.parametrize(
    ("body", "headers", "message"),
    [
        ({"status": "ok", "uptime": 3}, {"X-Request-ID": "r1"}, "uptime"),
        ({"status": "ok"}, {}, "X-Request-ID"),
    ],
)
async def test_the_contract_check_catches_drift(
    body: dict[str, Any], headers: dict[str, str], message: str
) -> None:
    async def livez(request: web.Request) -> web.Response:
        return web.json_response(body, headers=headers)

    app = web.Application()
    app.router.add_get("/livez", livez)
    with pytest.raises(ContractViolation, match=message):
        await _answers_of(app, ("GET", "/livez", {}))

"""Every answer the test clients get is checked against openapi.yaml (openapi-core), so the
contract cannot drift from the code.

A path or method the spec does not have is only allowed when the app does not route it either:
then the answer must be the router's own 404 or 405 problem (a 405 with the spec's methods in
`Allow`), or the 401 problem that comes first on /v1 without a valid token. A route the app
serves but the spec does not describe fails the test, whatever it answers.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import attrs
import yaml
from aiohttp import ClientRequest, ClientResponse, web
from aiohttp.client_middlewares import ClientHandlerType, ClientMiddlewareType
from aiohttp.test_utils import make_mocked_request
from jsonschema import Draft202012Validator
from multidict import CIMultiDictProxy
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.deserializing.media_types.util import json_loads
from openapi_core.templating.paths.exceptions import OperationNotFound, PathNotFound
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012
from yarl import URL

SPEC_PATH = Path(__file__).resolve().parents[1] / "openapi.yaml"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
PROBLEM = "application/problem+json"


class ContractViolation(AssertionError):
    """An answer the spec does not allow."""


@cache
def spec_document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
    return document


@cache
def checked_document() -> dict[str, Any]:
    """The spec as answers are checked against: clients must tolerate new members and
    statuses (the document leaves objects open and has `default` responses), but this
    service must send exactly what it documents, so here every object schema is closed and
    only the declared statuses are allowed."""
    document = copy.deepcopy(spec_document())

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    schemas = document["components"]["schemas"]
    close({name: s for name, s in schemas.items() if name != "VyteHookNotification"})
    # (Vyte's hook body is taken as Vyte sends it.) Checkers parse a YAML answer into an
    # object, while the document calls it text for generated clients; the unit tests compare
    # the served bytes with the file instead.
    served = document["paths"]["/openapi.yaml"]["get"]["responses"]["200"]["content"]
    served["application/yaml"]["schema"] = {}
    for item in document["paths"].values():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                operation["responses"].pop("default", None)
    return document


def _yaml_loads(value: bytes | str, **parameters: str) -> Any:
    return yaml.safe_load(value)


@cache
def openapi() -> OpenAPI:
    config = Config(
        extra_media_type_deserializers={
            PROBLEM: json_loads,
            "application/yaml": _yaml_loads,
        }
    )
    return OpenAPI.from_dict(checked_document(), config=config)


@cache
def _schema_validator(name: str) -> Draft202012Validator:
    registry: Registry[Any] = Registry().with_resource(
        "urn:openapi", Resource.from_contents(checked_document(), DRAFT202012)
    )
    return Draft202012Validator(
        {"$ref": f"urn:openapi#/components/schemas/{name}"}, registry=registry
    )


@attrs.frozen
class _Request:
    """openapi-core's Request protocol, for a request the client sent."""

    host_url: str
    path: str
    method: str
    parameters: RequestParameters
    content_type: str = "application/json"
    body: bytes | None = None


@attrs.frozen
class _Response:
    """openapi-core's Response protocol, for an answer the client read."""

    status_code: int
    content_type: str
    headers: Mapping[str, str]
    data: bytes


def spec_operations() -> set[tuple[str, str]]:
    """(METHOD, path template) for every operation in the spec."""
    return {
        (method.upper(), path)
        for path, item in spec_document()["paths"].items()
        for method in item
        if method in HTTP_METHODS
    }


async def validate_response(
    response: ClientResponse,
    *,
    method: str | None = None,
    url: URL | None = None,
    router: web.UrlDispatcher | None = None,
) -> None:
    """Raise ContractViolation unless the spec allows `response` to the request it answers.

    `method` and `url` (with its query) default to the response's own; `router` is the app's,
    to tell a route missing from the spec from a path nothing serves.
    """
    method = method or response.method
    url = url or response.url
    body = await response.read()
    headers = response.headers
    request = _Request(
        host_url=f"{url.scheme}://{url.raw_authority}",
        path=url.raw_path,
        method=method.lower(),
        parameters=RequestParameters(query=url.query, header={}, cookie={}),
    )
    answer = _Response(response.status, headers.get("Content-Type", ""), headers, body)
    try:
        openapi().validate_response(request, answer)
    except (PathNotFound, OperationNotFound) as err:
        where = f"{method} {url.path} -> {response.status}"
        if router is None:
            raise ContractViolation(f"{where}: not in openapi.yaml ({err})") from err
        match = await router.resolve(make_mocked_request(method, url.raw_path_qs))
        if match.http_exception is None:
            raise ContractViolation(
                f"{where}: the app routes it but openapi.yaml lacks it"
            ) from err
        _check_router_problem(
            where, match.http_exception.status, url, response.status, headers, body
        )
    except Exception as err:
        raise ContractViolation(
            f"{method} {url.path_qs} -> {response.status} breaks openapi.yaml: {err}\n"
            f"body: {body[:2000]!r}"
        ) from err


def _check_router_problem(
    where: str,
    expected: int,
    url: URL,
    status: int,
    headers: CIMultiDictProxy[str],
    body: bytes,
) -> None:
    """The router's own 404/405 (or the 401 that comes first without a valid token) for what
    nothing serves: a Problem, with the spec's methods in Allow."""
    if status not in (expected, 401):
        raise ContractViolation(f"{where}: nothing serves it, the router answers {expected}")
    if not headers.get("Content-Type", "").startswith(PROBLEM) or "X-Request-ID" not in headers:
        raise ContractViolation(f"{where}: not a problem+json answer with X-Request-ID")
    errors = sorted(e.message for e in _schema_validator("Problem").iter_errors(json.loads(body)))
    if errors:
        raise ContractViolation(f"{where}: not a Problem: {errors}")
    if status == 405:
        allowed = {m.strip() for m in headers.get("Allow", "").split(",") if m.strip()}
        in_spec = {m for m, path in spec_operations() if _template_matches(path, url.path)}
        if allowed != in_spec:
            raise ContractViolation(f"{where}: Allow {allowed} but openapi.yaml has {in_spec}")


def _template_matches(template: str, path: str) -> bool:
    parts, given = template.strip("/").split("/"), path.strip("/").split("/")
    return len(parts) == len(given) and all(
        p == g or (p.startswith("{") and p.endswith("}") and bool(g))
        for p, g in zip(parts, given, strict=True)
    )


def contract_middleware(app: web.Application | None = None) -> ClientMiddlewareType:
    """A client middleware that checks every answer against the spec (see validate_response)."""

    async def middleware(request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        response = await handler(request)
        await validate_response(
            response,
            method=request.method,
            url=request.url,
            router=app.router if app is not None else None,
        )
        return response

    return middleware

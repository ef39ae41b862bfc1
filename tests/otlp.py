"""A test OTLP/HTTP trace receiver on 127.0.0.1, decoding with opentelemetry-proto."""

from __future__ import annotations

import asyncio
import gzip
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
from aiohttp import web
from aiohttp.test_utils import TestServer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as ProtoSpan

SERVER, CLIENT, INTERNAL = (
    ProtoSpan.SPAN_KIND_SERVER,
    ProtoSpan.SPAN_KIND_CLIENT,
    ProtoSpan.SPAN_KIND_INTERNAL,
)


def _value(value: AnyValue) -> Any:
    return getattr(value, value.WhichOneof("value")) if value.WhichOneof("value") else None


@attrs.frozen
class Span:
    trace_id: str
    span_id: str
    parent_id: str
    name: str
    kind: int
    start: int
    end: int
    attributes: dict[str, Any]
    service: str


@attrs.define
class Receiver:
    url: str = ""
    spans: list[Span] = attrs.field(factory=list)
    posts: int = 0

    def find(self, **match: Any) -> list[Span]:
        return [s for s in self.spans if all(getattr(s, k) == v for k, v in match.items())]

    async def wait_for(
        self, ready: Callable[[Receiver], bool], timeout: float = 15.0, what: str = "spans"
    ) -> None:
        deadline = time.monotonic() + timeout
        while not ready(self):
            names = sorted({s.name for s in self.spans})
            assert time.monotonic() < deadline, f"no {what} within {timeout}s; got {names}"
            await asyncio.sleep(0.05)


@asynccontextmanager
async def otlp_receiver() -> AsyncIterator[Receiver]:
    """Serves POST /v1/traces (OTLP/HTTP, protobuf) until the block ends."""
    state = Receiver()

    async def traces(request: web.Request) -> web.Response:
        body = await request.read()
        if request.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        export = ExportTraceServiceRequest.FromString(body)
        state.posts += 1
        for resource_spans in export.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    state.spans.append(
                        Span(
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            name=span.name,
                            kind=span.kind,
                            start=span.start_time_unix_nano,
                            end=span.end_time_unix_nano,
                            attributes={a.key: _value(a.value) for a in span.attributes},
                            service=str(resource.get("service.name")),
                        )
                    )
        return web.Response(
            body=ExportTraceServiceResponse().SerializeToString(),
            content_type="application/x-protobuf",
        )

    app = web.Application()
    app.router.add_post("/v1/traces", traces)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    state.url = str(server.make_url("")).rstrip("/")
    try:
        yield state
    finally:
        await server.close()

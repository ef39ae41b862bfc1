"""Export on or off, from the OTEL_* variables: the app's cleanup context that, while the app
runs, sends spans to the OTLP/HTTP endpoint they name (service.otlp.export), and flushes them
when it stops."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from urllib.parse import urlsplit

import structlog

from service import tracing
from service.otlp.export import BatchExporter, settings
from service.otlp.spans import RecordingTracer, sampler

log = structlog.get_logger("tracing")

SERVICE_NAME = "booking-gateway"
#: seconds the last spans may take to leave at shutdown
FLUSH_SECONDS = 3.0


def _names(environ: Mapping[str, str], key: str) -> set[str]:
    return {n.strip().lower() for n in environ.get(key, "").split(",") if n.strip()}


def exporter_configured(environ: Mapping[str, str]) -> bool:
    """Whether the standard OTEL_* variables ask for an OTLP trace exporter: an OTLP endpoint,
    or OTEL_TRACES_EXPORTER=otlp; never with OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = _names(environ, "OTEL_TRACES_EXPORTER")
    if "none" in exporters:
        return False
    if exporters:
        unsupported = exporters - {"otlp"}
        if unsupported:
            log.warning("tracing_exporter_unsupported", exporters=sorted(unsupported))
        return "otlp" in exporters
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


def _protocol(environ: Mapping[str, str]) -> str:
    return (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or environ.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    ).strip()


def _safe_endpoint(environ: Mapping[str, str]) -> str:
    """Where spans go, for the start-up line: scheme, host and port only."""
    url = (
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or "http://localhost:4318"
    )
    try:
        parts = urlsplit(url)
        return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"
    except ValueError:
        return "(unparsable URL)"


async def export(app: object) -> AsyncIterator[None]:
    """cleanup_ctx: while the app runs, spans go to the OTLP/HTTP endpoint the OTEL_*
    variables name (read from the process environment, as the SDK itself reads them);
    they are flushed when it stops."""
    environ = os.environ
    if not exporter_configured(environ):
        yield
        return
    if _protocol(environ) != "http/protobuf":
        log.warning(
            "tracing_protocol_unsupported", protocol=_protocol(environ), supported="http/protobuf"
        )
        yield
        return
    # Imported only when exporting. The SDK gives the resource (OTEL_SERVICE_NAME,
    # OTEL_RESOURCE_ATTRIBUTES); spans, their encoding and export are service.otlp's, at a
    # fraction of the SDK's cost per span (bench/RESULTS.md).
    from opentelemetry.sdk.resources import Resource

    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": SERVICE_NAME}))
    exporter = BatchExporter(settings(environ), resource.attributes, SERVICE_NAME)
    tracing.use_tracer(RecordingTracer(sampler(environ), exporter.add))
    exporter.start()
    log.info("tracing_export", endpoint=_safe_endpoint(environ), protocol="http/protobuf")
    try:
        yield
    finally:
        tracing.use_tracer(None)
        await _flush(exporter.shutdown, exporter.abort)


async def _flush(shutdown: Callable[[], object], abort: Callable[[], object]) -> None:
    """Flush what is left, for at most FLUSH_SECONDS: a collector that is down would
    otherwise hold the exporter in its retries for its whole timeout, past the pod's grace
    period."""
    flushing = threading.Thread(target=shutdown, name="otlp-flush", daemon=True)
    flushing.start()
    await asyncio.to_thread(flushing.join, FLUSH_SECONDS)
    if flushing.is_alive():
        log.warning("tracing_flush_abandoned", after_seconds=FLUSH_SECONDS)
        abort()  # ends the exporter's retries; the spans still queued are dropped
        await asyncio.to_thread(flushing.join, 1.0)

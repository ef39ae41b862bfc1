"""Spans and their OTLP/HTTP export, without the OpenTelemetry SDK: `spans` (the quiet span
every request gets, the recorded span, its tracer, the sampler, the ids), `context` (W3C
`traceparent` and `tracestate` headers), `encoding` (OTLP protobuf, by hand), `export` (the
OTEL_* settings, the bounded queue and the thread that posts batches).
service.tracing_export turns it on or off, as the OTEL_* variables say.

The SDK's span and encoder cost about 50 µs per span, half of what a cached availability
answer costs the server; these cost a fraction of that (bench/RESULTS.md).
"""

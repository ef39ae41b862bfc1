"""Prometheus metric families of the service (one registry per process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "gateway_http_requests", "Requests answered", ["method", "route", "status"], registry=REGISTRY
)
HTTP_LATENCY = Histogram(
    "gateway_http_request_seconds", "Request latency", ["method", "route"], registry=REGISTRY
)
UPSTREAM_REQUESTS = Counter(
    "gateway_upstream_requests", "Vyte calls by outcome", ["endpoint", "outcome"], registry=REGISTRY
)
UPSTREAM_LATENCY = Histogram(
    "gateway_upstream_request_seconds", "Vyte call latency", ["endpoint"], registry=REGISTRY
)
UPSTREAM_RETRIES = Counter(
    "gateway_upstream_retries", "Vyte calls retried", ["endpoint"], registry=REGISTRY
)
BREAKER_STATE = Gauge(
    "gateway_circuit_state", "Vyte circuit: 0 closed, 1 half-open, 2 open", registry=REGISTRY
)
SLOT_CACHE = Counter("gateway_slot_cache", "Slot cache lookups", ["result"], registry=REGISTRY)
AVAILABILITY_PARTICIPANTS = Histogram(
    "gateway_availability_participants",
    "Participants per availability query",
    buckets=(1, 2, 5, 10, 20, 50),
    registry=REGISTRY,
)
OUTBOX_DEPTH = Gauge("gateway_outbox_pending", "Webhook deliveries waiting", registry=REGISTRY)
DELIVERIES = Counter(
    "gateway_webhook_deliveries", "Webhook delivery attempts", ["outcome"], registry=REGISTRY
)
OPERATIONS_PENDING = Gauge(
    "gateway_operations_pending", "Asynchronous operations not yet applied", registry=REGISTRY
)

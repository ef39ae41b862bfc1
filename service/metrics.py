"""Prometheus metric families of the service (one registry per process, served at /metrics).

Labels carry route and endpoint templates, never raw paths, ids or secrets.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

# Up to the longest request budget and attempt timeout (seconds).
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30)

HTTP_REQUESTS = Counter(
    "gateway_http_requests",
    "Requests answered, by route template and status",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "gateway_http_request_seconds",
    "Request latency, by route template and status",
    ["method", "route", "status"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
UPSTREAM_REQUESTS = Counter(
    "gateway_upstream_requests",
    "Vyte calls by endpoint and outcome (circuit_open and saturated ones were never sent)",
    ["endpoint", "outcome"],
    registry=REGISTRY,
)
UPSTREAM_LATENCY = Histogram(
    "gateway_upstream_request_seconds",
    "Vyte call latency (one attempt), by endpoint and outcome",
    ["endpoint", "outcome"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
UPSTREAM_RETRIES = Counter(
    "gateway_upstream_retries",
    "Vyte calls retried, by endpoint and the outcome that caused the retry",
    ["endpoint", "reason"],
    registry=REGISTRY,
)
UPSTREAM_IN_FLIGHT = Gauge(
    "gateway_upstream_in_flight",
    "Vyte calls under way in this process (bounded by VYTE_CONCURRENCY)",
    registry=REGISTRY,
)
BREAKER_STATE = Gauge(
    "gateway_circuit_state",
    "Circuit breaker per upstream host: 0 closed, 1 half-open, 2 open",
    ["host"],
    registry=REGISTRY,
)
VYTE_UP = Gauge(
    "gateway_vyte_up",
    "1 while Vyte answers this process (breaker closed, last calls or probe fine), else 0;"
    " never part of readiness",
    registry=REGISTRY,
)
BREAKER_TRANSITIONS = Counter(
    "gateway_circuit_transitions",
    "Circuit breaker changes of state, by upstream host and the state entered",
    ["host", "state"],
    registry=REGISTRY,
)
SLOT_CACHE = Counter(
    "gateway_slot_cache",
    "Slot cache lookups: hit, miss (not in this process), shared_hit (a miss the replicas'"
    " shared cache answered), joined (single-flight); misses - shared_hit = upstream calls",
    ["result"],
    registry=REGISTRY,
)
AVAILABILITY_PARTICIPANTS = Histogram(
    "gateway_availability_participants",
    "Participants per availability query",
    buckets=(1, 2, 5, 10, 20, 50),
    registry=REGISTRY,
)
# Both gauges count the whole store (every replica on one Redis reports the same), read at
# each scrape.
OUTBOX_DEPTH = Gauge("gateway_outbox_pending", "Webhook deliveries waiting", registry=REGISTRY)
DELIVERIES = Counter(
    "gateway_webhook_deliveries", "Webhook delivery attempts", ["outcome"], registry=REGISTRY
)
OPERATIONS_PENDING = Gauge(
    "gateway_operations_pending", "Asynchronous operations not yet applied", registry=REGISTRY
)
HOOK_REGISTRATION_FAILURES = Counter(
    "gateway_vyte_hook_registration_failures",
    "Failed attempts to register this process's hooks in Vyte, by outcome (each is retried)",
    ["outcome"],
    registry=REGISTRY,
)
HOOKS_REGISTERED = Gauge(
    "gateway_vyte_hooks_registered",
    "1 once this process has made sure its hooks are registered in Vyte, else 0",
    registry=REGISTRY,
)
RESYNC_READS = Counter(
    "gateway_resync_reads",
    "Active bookings re-read from Vyte by the resync, by what the read changed",
    ["result"],
    registry=REGISTRY,
)

# The labelled children of the two request families, per (method, route template, status):
# `.labels()` on every request validates and joins the labels again; the set of keys is bounded
# (routes are templates, statuses a few codes, methods those aiohttp routes).
_request_children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request and its latency."""
    key = (method, route, status)
    children = _request_children.get(key)
    if children is None:
        labels = (method, route, str(status))
        children = (HTTP_REQUESTS.labels(*labels), HTTP_LATENCY.labels(*labels))
        _request_children[key] = children
    children[0].inc()
    children[1].observe(seconds)


_upstream_children: dict[tuple[str, str], tuple[Counter, Histogram]] = {}


def observe_upstream(endpoint: str, outcome: str, seconds: float | None) -> None:
    """Count one Vyte call attempt and, when it was sent (`seconds` not None), its latency;
    children kept as for requests (endpoints and outcomes are a handful of values each)."""
    key = (endpoint, outcome)
    children = _upstream_children.get(key)
    if children is None:
        children = (UPSTREAM_REQUESTS.labels(*key), UPSTREAM_LATENCY.labels(*key))
        _upstream_children[key] = children
    children[0].inc()
    if seconds is not None:
        children[1].observe(seconds)


# Known label values start at zero, so rates and dashboards work before the first event.
for _result in ("hit", "miss", "shared_hit", "joined"):
    SLOT_CACHE.labels(_result)
for _outcome in ("delivered", "error", "failed"):
    DELIVERIES.labels(_outcome)
for _result in ("unchanged", "changed", "gone", "failed"):
    RESYNC_READS.labels(_result)

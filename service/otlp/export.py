"""The OTLP/HTTP export of recorded spans: settings from the OTEL_* variables, a bounded queue
(spans past OTEL_BSP_MAX_QUEUE_SIZE are dropped and counted) and the thread that encodes and
posts batches, retrying transient failures within the export timeout as the SDK does."""

from __future__ import annotations

import gzip
import http.client
import random
import ssl
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

import attrs
import structlog
from opentelemetry.util.re import parse_env_headers

from service.otlp import encoding
from service.otlp.spans import RecordingSpan, RequestRecord

log = structlog.get_logger("tracing")

_RETRYABLE = frozenset({429, 502, 503, 504})
_MAX_RETRIES = 6

# -- settings ----------------------------------------------------------------------------------


@attrs.frozen
class ExportSettings:
    """Where and how batches go, from the OTEL_* variables (the SDK's names and defaults)."""

    endpoint: str = "http://localhost:4318/v1/traces"
    headers: Mapping[str, str] = attrs.field(factory=dict)
    timeout: float = 10.0  # seconds per export, retries included (as the Python SDK reads it)
    compression: str = "none"
    certificate: str | None = None
    client_certificate: str | None = None
    client_key: str | None = None
    schedule_delay: float = 5.0  # seconds between exports of a batch that is not full
    max_batch: int = 512
    max_queue: int = 2048


def _traces_or_all(environ: Mapping[str, str], name: str) -> str | None:
    value = environ.get(f"OTEL_EXPORTER_OTLP_TRACES_{name}") or environ.get(
        f"OTEL_EXPORTER_OTLP_{name}"
    )
    return value.strip() if value and value.strip() else None


def _number(environ: Mapping[str, str], key: str, default: float, minimum: float) -> float:
    raw = environ.get(key, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        log.warning("tracing_setting_invalid", variable=key, value=raw, using=default)
        return default
    return value


def settings(environ: Mapping[str, str]) -> ExportSettings:
    """The export settings the OTEL_* variables give; an invalid value is logged and its
    default used, as the SDK does."""
    endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if not endpoint:
        base = environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip() or "http://localhost:4318"
        endpoint = f"{base.removesuffix('/')}/v1/traces"
    compression = (_traces_or_all(environ, "COMPRESSION") or "none").lower()
    if compression not in ("none", "gzip", "deflate"):
        log.warning("tracing_setting_invalid", variable="compression", value=compression)
        compression = "none"
    timeout_key = (
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT"
        if environ.get("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "").strip()
        else "OTEL_EXPORTER_OTLP_TIMEOUT"
    )
    max_queue = int(_number(environ, "OTEL_BSP_MAX_QUEUE_SIZE", 2048, 1))
    max_batch = int(_number(environ, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512, 1))
    if max_batch > max_queue:  # a batch could never fill: cut it to the queue
        if environ.get("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "").strip():
            log.warning("tracing_setting_invalid", variable="OTEL_BSP_MAX_EXPORT_BATCH_SIZE")
        max_batch = max_queue
    return ExportSettings(
        endpoint=endpoint,
        headers=parse_env_headers(_traces_or_all(environ, "HEADERS") or "", liberal=True),
        timeout=_number(environ, timeout_key, 10.0, 0.001),
        compression=compression,
        certificate=_traces_or_all(environ, "CERTIFICATE"),
        client_certificate=_traces_or_all(environ, "CLIENT_CERTIFICATE"),
        client_key=_traces_or_all(environ, "CLIENT_KEY"),
        schedule_delay=_number(environ, "OTEL_BSP_SCHEDULE_DELAY", 5000, 0) / 1000,
        max_batch=max_batch,
        max_queue=max_queue,
    )


# -- the queue and its thread --------------------------------------------------------------


class BatchExporter:
    """Ended spans wait in a bounded queue (past `max_queue`, a span is dropped and counted);
    a thread encodes and posts them in batches of `max_batch`, at once when a batch is full,
    else every `schedule_delay`. `flush` exports what is queued and waits for it; `shutdown`
    exports what is left and stops; `abort` gives up on it."""

    def __init__(
        self,
        settings: ExportSettings,
        resource: Mapping[str, object],
        scope: str,
        post: Callable[[bytes], bool] | None = None,
    ) -> None:
        self.settings = settings
        self.dropped = 0
        self.exported = 0
        self._queue: deque[RecordingSpan | RequestRecord] = deque()
        self._max_queue, self._max_batch = settings.max_queue, settings.max_batch
        self._resource = encoding.encode_resource(resource)
        self._scope = encoding.encode_scope(scope)
        self._wake = threading.Event()
        self._aborted = threading.Event()
        self._stopping = False
        self._flushes: list[threading.Event] = []
        self._flushes_lock = threading.Lock()
        self._post = post or HTTPPoster(settings, self._aborted)
        self._thread = threading.Thread(target=self._run, name="otlp-export", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, span: RecordingSpan | RequestRecord) -> None:
        """A span's sink: called as it ends, in whatever thread ends it. The thread encodes
        (a batch at a time costs less than a span at a time between requests)."""
        queue = self._queue
        if len(queue) >= self._max_queue:
            if not self.dropped:
                log.warning("tracing_queue_full", max_queue=self._max_queue)
            self.dropped += 1
            return
        queue.append(span)
        if len(queue) == self._max_batch:
            self._wake.set()

    def flush(self, timeout: float = 30.0) -> bool:
        """Export every span queued so far, in the export thread; wait up to `timeout` for
        it. False when it did not finish in time (or the thread is not running)."""
        if not self._thread.is_alive():
            return False
        done = threading.Event()
        with self._flushes_lock:
            self._flushes.append(done)
        self._wake.set()
        return done.wait(timeout)

    def shutdown(self) -> None:
        """Export what is queued, then stop (blocks: service.tracing runs it in a thread)."""
        self._stopping = True
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join()
        else:  # never started: export in this thread
            self._drain(everything=True)
            self._close()
        if self.dropped:
            log.warning("tracing_spans_dropped", dropped=self.dropped, exported=self.exported)

    def abort(self) -> None:
        """Stop retrying and exporting; what is still queued is dropped."""
        self._aborted.set()
        self._wake.set()

    def _run(self) -> None:
        try:
            while not self._stopping and not self._aborted.is_set():
                timed_out = not self._wake.wait(self.settings.schedule_delay)
                self._wake.clear()
                # The flushes asked for so far: what they wait for is queued by now.
                with self._flushes_lock:
                    flushes, self._flushes = self._flushes, []
                self._drain(everything=timed_out or self._stopping or bool(flushes))
                for done in flushes:
                    done.set()
            self._drain(everything=True)
        finally:
            self._close()

    def _close(self) -> None:
        close = getattr(self._post, "close", None)
        if close is not None:
            close()

    def _drain(self, everything: bool) -> None:
        """Export full batches, and the last partial one when `everything`."""
        queue = self._queue
        while queue and (everything or len(queue) >= self._max_batch):
            if self._aborted.is_set():
                return
            batch = [queue.popleft() for _ in range(min(len(queue), self._max_batch))]
            try:
                body = encoding.encode_request(self._resource, self._scope, batch)
            except Exception:  # a bug here must not end the thread: log it, drop the batch
                log.exception("tracing_encode_failed", spans=len(batch))
                continue
            if self._post(body):
                self.exported += len(batch)


# -- the HTTP client ---------------------------------------------------------------------------


class HTTPPoster:
    """POSTs an encoded request to the endpoint over one kept-alive connection; retries
    429, 502, 503, 504 and connection errors with exponential backoff (1 s, 2 s ... with
    jitter) while the export timeout allows, as the SDK's exporter does."""

    def __init__(self, settings: ExportSettings, aborted: threading.Event) -> None:
        parts = urlsplit(settings.endpoint)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "localhost"
        self._port = parts.port or (443 if self._https else 80)
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._timeout = settings.timeout
        self._compression = settings.compression
        self._headers = {"Content-Type": "application/x-protobuf", **settings.headers}
        if settings.compression != "none":
            self._headers["Content-Encoding"] = settings.compression
        self._tls: ssl.SSLContext | None = None
        if self._https:
            self._tls = ssl.create_default_context(cafile=settings.certificate)
            if settings.client_certificate:
                self._tls.load_cert_chain(settings.client_certificate, settings.client_key)
        self._aborted = aborted
        self._connection: http.client.HTTPConnection | None = None

    def __call__(self, body: bytes) -> bool:
        if self._compression == "gzip":
            body = gzip.compress(body, compresslevel=6)
        elif self._compression == "deflate":
            body = zlib.compress(body)
        deadline = time.monotonic() + self._timeout
        for retry in range(_MAX_RETRIES):
            status, error = self._send(body, max(deadline - time.monotonic(), 0.001))
            if status is not None and 200 <= status < 300:
                return True
            backoff = 2**retry * random.uniform(0.8, 1.2)
            if (
                (status is not None and status not in _RETRYABLE)
                or retry + 1 == _MAX_RETRIES
                or backoff > deadline - time.monotonic()
            ):
                break
            if self._aborted.wait(backoff):
                break
        log.warning("tracing_export_failed", status=status, error=error)
        return False

    def _send(self, body: bytes, timeout: float) -> tuple[int | None, str | None]:
        """One POST: its status, or None and the error. A kept-alive connection the collector
        closed meanwhile fails at once; then it is tried once more on a new one."""
        for _ in range(2):
            reused = self._connection is not None
            try:
                connection = self._connection or self._connect(timeout)
                if connection.sock is not None:
                    connection.sock.settimeout(timeout)
                connection.request("POST", self._path, body, self._headers)
                response = connection.getresponse()
                response.read()
                if response.will_close:
                    self._close()
                return response.status, None
            except (OSError, http.client.HTTPException) as err:
                self._close()
                if not reused:
                    return None, type(err).__name__
        return None, "closed"

    def _connect(self, timeout: float) -> http.client.HTTPConnection:
        if self._https:
            connection: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._host, self._port, timeout=timeout, context=self._tls
            )
        else:
            connection = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
        self._connection = connection
        return connection

    def close(self) -> None:
        """Close the kept-alive connection (the exporter's thread does, as it ends)."""
        self._close()

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None

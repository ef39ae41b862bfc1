"""Injected upstream failures: what a test asks for through `/_sandbox/faults`, and its budget."""

from __future__ import annotations

import attrs

from .wire import JSON, BadRequest

_FIELDS = frozenset(
    {
        "latency",
        "error_rate",
        "status",
        "retry_after",
        "hang",
        "malformed",
        "count",
        "path",
        "method",
        "apply",
    }
)


@attrs.frozen
class Fault:
    """How the next matching `/v2` requests misbehave.

    `apply` runs the real handler first, so the request takes effect in the sandbox and only
    its answer is lost or garbled, the case where a client cannot know whether a POST worked.
    """

    latency: float = 0.0
    error_rate: float = 0.0
    status: int | None = None
    retry_after: str | None = None
    hang: bool = False
    malformed: bool = False
    count: int | None = None
    path: str = "/v2/"
    method: str | None = None
    apply: bool = False

    @property
    def replaces_answer(self) -> bool:
        return self.hang or self.malformed or self.status is not None

    def to_json(self) -> JSON:
        return attrs.asdict(self)


def parse_fault(body: object) -> Fault:
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    unknown = set(body) - _FIELDS
    if unknown:
        raise BadRequest(f"unknown fields {sorted(unknown)}; known: {sorted(_FIELDS)}")
    status = body.get("status")
    if status is not None and (not _is_int(status) or not 400 <= status <= 599):
        raise BadRequest("status must be an integer from 400 to 599")
    count = body.get("count")
    if count is not None and (not _is_int(count) or count < 1):
        raise BadRequest("count must be a positive integer")
    path = body.get("path", "/v2/")
    if not isinstance(path, str) or not path.startswith("/"):
        raise BadRequest("path must be a path prefix such as /v2/slots")
    method = body.get("method")
    if method is not None and (not isinstance(method, str) or not method.isalpha()):
        raise BadRequest("method must be an HTTP method such as POST")
    return Fault(
        latency=_number(body, "latency", upper=None),
        error_rate=_number(body, "error_rate", upper=1.0),
        status=status,
        retry_after=_retry_after(body.get("retry_after")),
        hang=_flag(body, "hang"),
        malformed=_flag(body, "malformed"),
        count=count,
        path=path,
        method=method.upper() if method else None,
        apply=_flag(body, "apply"),
    )


class FaultBook:
    """The active fault, if any, and how many more requests it applies to."""

    def __init__(self) -> None:
        self.fault: Fault | None = None
        self.remaining: int | None = None

    def set(self, fault: Fault) -> None:
        self.fault = fault
        self.remaining = fault.count

    def clear(self) -> None:
        self.fault = None
        self.remaining = None

    def take(self, path: str, method: str = "GET") -> Fault | None:
        """The fault for a `method` request to `path`, counting it against the fault's budget."""
        fault = self.fault
        if fault is None or not path.startswith(fault.path):
            return None
        if fault.method is not None and fault.method != method.upper():
            return None
        if self.remaining is not None:
            self.remaining -= 1
            if self.remaining <= 0:
                self.clear()
        return fault

    def to_json(self) -> JSON:
        if self.fault is None:
            return {"fault": None}
        return {"fault": self.fault.to_json(), "remaining": self.remaining}


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(body: JSON, key: str, upper: float | None) -> float:
    value = body.get(key, 0.0)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or value < 0
        or (upper is not None and value > upper)
    ):
        limit = f" and at most {upper}" if upper is not None else ""
        raise BadRequest(f"{key} must be a number, at least 0{limit}")
    return float(value)


def _flag(body: JSON, key: str) -> bool:
    value = body.get(key, False)
    if not isinstance(value, bool):
        raise BadRequest(f"{key} must be a boolean")
    return value


def _retry_after(value: object) -> str | None:
    """Seconds as a number (fractions kept, for fast tests) or a literal header value."""
    if value is None:
        return None
    if isinstance(value, str) and value and value.isprintable():
        return value
    if not isinstance(value, bool) and isinstance(value, int | float) and value >= 0:
        return str(int(value)) if float(value).is_integer() else str(value)
    raise BadRequest("retry_after must be a non-negative number of seconds or a header value")

"""What can go wrong upstream, as exception types (`mapping.upstream_problem` turns them
into the gateway's errors, DESIGN §4)."""

from __future__ import annotations

from typing import ClassVar


class VyteError(Exception):
    """Base of every upstream failure."""

    #: counts towards opening the circuit breaker
    transient: ClassVar[bool] = False
    #: the `outcome` label of upstream metrics and log lines
    outcome: ClassVar[str] = "error"

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class VyteRejected(VyteError):
    """400: Vyte refused the parameters (for a participant: unknown to Vyte)."""

    outcome = "rejected"


class VyteNotFound(VyteError):
    """404: the user, event or hook is unknown to Vyte."""

    outcome = "not_found"


class VyteAuthError(VyteError):
    """401/403: our own key is wrong or lacks rights."""

    outcome = "auth_error"


class VyteServerError(VyteError):
    """5xx other than 503/504, or an unexpected status."""

    transient = True
    outcome = "server_error"


class VyteUnavailable(VyteError):
    """503 or 429: Vyte asks us to come back later (`retry_after` seconds when known)."""

    transient = True
    outcome = "unavailable"

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class CircuitOpen(VyteUnavailable):
    """The breaker is open: Vyte is not asked at all until the cool-down ends."""

    outcome = "circuit_open"


class Saturated(VyteUnavailable):
    """Too many upstream requests in flight in this process: refused without queueing long."""

    outcome = "saturated"


class VyteTimeout(VyteError):
    """No answer within the attempt timeout or the request budget (or Vyte's own 504)."""

    transient = True
    outcome = "timeout"


class VyteConnectionError(VyteError):
    """The connection failed before an answer arrived."""

    transient = True
    outcome = "connection_error"


class VyteBadResponse(VyteError):
    """Vyte answered, but not with the JSON we expect."""

    transient = True
    outcome = "bad_response"

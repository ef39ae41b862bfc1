"""What can go wrong upstream, as exception types (DESIGN §4 maps them to HTTP)."""

from __future__ import annotations


class VyteError(Exception):
    """Base of every upstream failure."""

    #: counts towards opening the circuit breaker
    transient = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class VyteRejected(VyteError):
    """400: Vyte refused the parameters (for a participant: unknown to Vyte)."""


class VyteNotFound(VyteError):
    """404: the user, event or hook is unknown to Vyte."""


class VyteAuthError(VyteError):
    """401/403: our own key is wrong or lacks rights."""


class VyteServerError(VyteError):
    """5xx other than 503, or an unexpected status."""

    transient = True


class VyteUnavailable(VyteError):
    """503 or 429: Vyte asks us to come back later (`retry_after` seconds when known)."""

    transient = True

    def __init__(
        self, message: str, *, status: int | None = None, retry_after: float | None = None
    ) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after


class CircuitOpen(VyteUnavailable):
    """The breaker is open: Vyte is not asked at all until the cool-down ends."""


class Saturated(VyteUnavailable):
    """Too many upstream requests in flight in this process."""


class VyteTimeout(VyteError):
    """No answer within the attempt timeout or the request budget."""

    transient = True


class VyteConnectionError(VyteError):
    """The connection failed before an answer arrived."""

    transient = True


class VyteBadResponse(VyteError):
    """Vyte answered, but not with the JSON we expect."""

    transient = True

"""The time an incoming request (or a worker's attempt) may spend on upstream work.

A deadline in a context variable: set once per request at the edge, read by every
upstream call made on its behalf, so retries and waits all fit inside it.
"""

from __future__ import annotations

import contextvars
import time

#: monotonic deadline by which the current incoming request must be done with Vyte
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "vyte_deadline", default=None
)


class budget:  # lower case: it reads as the function it was, `with budget(seconds):`
    """Give the code inside at most `seconds` (wall time) for upstream work.

    A tighter budget already in force is kept. A class rather than a generator: every request
    enters one, and contextlib's generator wrapper cost a microsecond more (bench/RESULTS.md).
    """

    __slots__ = ("_seconds", "_token")

    def __init__(self, seconds: float) -> None:
        self._seconds = seconds

    def __enter__(self) -> None:
        deadline = time.monotonic() + self._seconds
        outer = _deadline.get()
        self._token = _deadline.set(deadline if outer is None else min(outer, deadline))

    def __exit__(self, *exc_info: object) -> None:
        _deadline.reset(self._token)


def remaining(default: float) -> float:
    """Seconds left in the current budget (`default` when none is set)."""
    deadline = _deadline.get()
    if deadline is None:
        return default
    return deadline - time.monotonic()


# Seconds a claim outlives the longest request, for its store writes after the last call.
_CLAIM_MARGIN = 30.0


def claim_lease(request_budget: float, attempt_timeout: float) -> float:
    """How long what a running request claims (a slot's hold, an Idempotency-Key) is kept
    before it lapses: longer than the request can run, so only a crashed replica's lapse."""
    return request_budget + attempt_timeout + _CLAIM_MARGIN

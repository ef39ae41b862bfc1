"""The time an incoming request (or a worker's attempt) may spend on upstream work.

A deadline in a context variable: set once per request at the edge, read by every
upstream call made on its behalf, so retries and waits all fit inside it.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Iterator
from contextlib import contextmanager

#: monotonic deadline by which the current incoming request must be done with Vyte
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "vyte_deadline", default=None
)


@contextmanager
def budget(seconds: float) -> Iterator[None]:
    """Give the code inside at most `seconds` (wall time) for upstream work.

    A tighter budget already in force is kept.
    """
    deadline = time.monotonic() + seconds
    outer = _deadline.get()
    token = _deadline.set(deadline if outer is None else min(outer, deadline))
    try:
        yield
    finally:
        _deadline.reset(token)


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

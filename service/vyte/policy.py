"""How the gateway treats the upstream: request budgets, retries and the circuit breaker."""

from __future__ import annotations

import contextvars
import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import attrs

from service.vyte.errors import CircuitOpen

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


def backoff(attempt: int, base: float, cap: float) -> float:
    """Full-jitter exponential backoff for retry number `attempt` (1-based)."""
    return random.uniform(0, min(cap, base * 2 ** (attempt - 1)))


class BreakerState:
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@attrs.define
class CircuitBreaker:
    """Opens after `threshold` consecutive failures; one probe after `cooldown`."""

    threshold: int
    cooldown: float
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return BreakerState.CLOSED
        if self.clock() - self.opened_at >= self.cooldown:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def before_call(self) -> None:
        """Raise CircuitOpen unless this call may go to the upstream."""
        state = self.state
        if state == BreakerState.CLOSED:
            return
        if state == BreakerState.HALF_OPEN and not self.probing:
            self.probing = True
            return
        assert self.opened_at is not None
        wait = max(0.0, self.cooldown - (self.clock() - self.opened_at))
        raise CircuitOpen(
            "circuit open: Vyte is failing", retry_after=wait if wait > 0 else self.cooldown
        )

    def on_success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self.probing = False

    def on_failure(self) -> None:
        self.failures += 1
        if self.probing or self.failures >= self.threshold:
            self.opened_at = self.clock()
        self.probing = False

    def on_neutral(self) -> None:
        """The call ended without telling whether Vyte is healthy (e.g. cancelled)."""
        self.probing = False

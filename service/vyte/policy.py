"""The circuit breaker the gateway keeps in front of the upstream."""

from __future__ import annotations

import time
from collections.abc import Callable

import attrs

from service.vyte.errors import CircuitOpen


class BreakerState:
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


#: the value of the circuit-state gauge for each state
STATE_VALUE = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}

# What a caller is told to wait while the one half-open probe is under way.
_PROBE_WAIT = 1.0


@attrs.define
class CircuitBreaker:
    """Opens after `threshold` consecutive failures; lets one probe through after `cooldown`.

    A call asks `before_call()` first (which says whether it is the probe) and then reports
    exactly one of `on_success()`, `on_failure(probe)` or `on_neutral(probe)`.
    `listener(old, new)` hears every change of state made by those calls.
    """

    threshold: int
    cooldown: float
    clock: Callable[[], float] = time.monotonic
    listener: Callable[[str, str], None] | None = None
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

    def retry_after(self) -> float:
        """Seconds until the breaker will let a call through again (0 when closed)."""
        if self.opened_at is None:
            return 0.0
        wait = self.cooldown - (self.clock() - self.opened_at)
        return wait if wait > 0 else _PROBE_WAIT

    def before_call(self) -> bool:
        """Raise CircuitOpen unless this call may go to the upstream; True for the probe."""
        state = self.state
        if state == BreakerState.CLOSED:
            return False
        if state == BreakerState.HALF_OPEN and not self.probing:
            self.probing = True
            self._changed(BreakerState.OPEN, BreakerState.HALF_OPEN)
            return True
        raise CircuitOpen("circuit open: Vyte is failing", retry_after=self.retry_after())

    def on_success(self) -> None:
        old = self.state
        self.failures = 0
        self.opened_at = None
        self.probing = False
        self._changed(old, BreakerState.CLOSED)

    def on_failure(self, probe: bool = False) -> None:
        old = self.state
        self.failures += 1
        if probe:
            self.probing = False
        if probe or (self.opened_at is None and self.failures >= self.threshold):
            self.opened_at = self.clock()
            self._changed(old, BreakerState.OPEN)

    def on_neutral(self, probe: bool = False) -> None:
        """The call ended without telling whether Vyte is healthy (cancelled, refused locally)."""
        if probe:
            self.probing = False

    def _changed(self, old: str, new: str) -> None:
        if old != new and self.listener is not None:
            self.listener(old, new)

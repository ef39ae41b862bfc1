"""Readiness: this replica is ready unless it drains or cannot reach the store; Vyte's
state (and whether its hooks are registered) is reported beside it, never failing it."""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref

from service import metrics
from service.store.base import Store, StoreUnavailable
from service.vyte.client import VyteClient
from service.vyte.errors import VyteAuthError, VyteError
from service.vyte.policy import BreakerState

# How long one Vyte answer counts as "recently"; after that, a readiness check asks
# /v2/auth/test (a cheap call, at most once per this many seconds and replica while idle).
_VYTE_FRESH = 5.0
_PROBE_TIMEOUT = 2.0
# How long a readiness answer waits for a Vyte probe under way: Vyte is information only,
# so a hanging Vyte must not slow the probe of our own readiness past its timeout.
_PROBE_PATIENCE = 0.5
OK = "ok"
# Component names in the readiness body; only these two decide the status.
GATING = ("draining", "store")


class Health:
    """What /readyz reports, and the gauges derived from it."""

    def __init__(self, store: Store, vyte: VyteClient) -> None:
        self._store = store
        self._vyte = vyte
        self._probe: asyncio.Task[str] | None = None
        #: Vyte's state as the last probe found it ("ok" or why not); None before one ran
        self._probed: str | None = None
        self.draining = False
        #: Vyte hook registration: "ok", or why not (set by the registration task)
        self.hooks = "off: PUBLIC_URL is not set"
        health = weakref.ref(self)

        def vyte_up() -> float:
            current = health()
            return 1.0 if current is not None and current.vyte_state() == OK else 0.0

        metrics.VYTE_UP.set_function(vyte_up)

    async def check(self) -> tuple[bool, dict[str, str]]:
        """(ready, component -> "ok" or why not).

        Ready means not draining and the store answers. While draining the answer is
        "not ready" at once, without probing anything.
        """
        if self.draining:
            return False, {"draining": "yes", "vyte": self.vyte_state(), "hooks": self.hooks}
        report = {"draining": OK}
        try:
            await asyncio.wait_for(self._store.ping(), _PROBE_TIMEOUT)
            report["store"] = OK
        except (StoreUnavailable, TimeoutError) as err:
            report["store"] = f"unavailable: {type(err).__name__}"
        report["vyte"] = await self._refresh_vyte()
        report["hooks"] = self.hooks
        return all(report[name] == OK for name in GATING), report

    def vyte_state(self) -> str:
        """Vyte as this process sees it now, without asking it."""
        breaker = self._vyte.breaker.state
        if breaker == BreakerState.OPEN:
            return "unavailable: circuit open"
        if breaker == BreakerState.HALF_OPEN:
            return "unavailable: circuit half-open, probing"
        if self._vyte.breaker.failures:
            return f"unavailable: the last {self._vyte.breaker.failures} calls failed"
        if self._answered_recently():
            return OK
        return self._probed or "unknown: not asked yet"

    async def _refresh_vyte(self) -> str:
        """Vyte's state, asking /v2/auth/test unless a call just went well.

        The probe is an ordinary call, so it is also the breaker's half-open probe and a
        success closes the breaker.
        """
        if self._answered_recently() and self.vyte_state() == OK:
            return OK
        if self._probe is None or self._probe.done():
            self._probe = asyncio.create_task(self._ask_vyte(), name="vyte-probe")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._probe), _PROBE_PATIENCE)
        return self.vyte_state()

    async def _ask_vyte(self) -> str:
        try:
            await asyncio.wait_for(self._vyte.auth_test(), _PROBE_TIMEOUT)
        except VyteAuthError as err:
            state = f"unavailable: Vyte refuses VYTE_API_KEY (HTTP {err.status})"
        except VyteError as err:
            state = f"unavailable: {err.outcome}"
        except TimeoutError:
            state = "unavailable: timeout"
        else:
            state = OK
        self._probed = state
        return state

    def _answered_recently(self) -> bool:
        last = self._vyte.last_answer_at
        return last is not None and time.monotonic() - last < _VYTE_FRESH

    async def close(self) -> None:
        """Stop a probe under way (the Vyte session closes after this)."""
        if self._probe is not None and not self._probe.done():
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe

"""Readiness: the store answers, Vyte answered recently, and we are not draining."""

from __future__ import annotations

import asyncio
import time

from service.store.base import Store, StoreUnavailable
from service.vyte.client import VyteClient
from service.vyte.errors import VyteError

# How long one Vyte answer counts as "recently".
_VYTE_FRESH = 30.0
_PROBE_TIMEOUT = 2.0


class Health:
    def __init__(self, store: Store, vyte: VyteClient) -> None:
        self._store = store
        self._vyte = vyte
        self._probe_lock = asyncio.Lock()
        self.draining = False

    async def check(self) -> dict[str, str]:
        """Component -> "ok" or why not; all "ok" means ready.

        While draining the answer is "not ready" at once, without probing anything.
        """
        if self.draining:
            return {"draining": "yes"}
        report = {"draining": "ok"}
        try:
            await asyncio.wait_for(self._store.ping(), _PROBE_TIMEOUT)
            report["store"] = "ok"
        except (StoreUnavailable, TimeoutError) as err:
            report["store"] = f"unavailable: {type(err).__name__}"
        report["vyte"] = await self._vyte_status()
        return report

    async def _vyte_status(self) -> str:
        if self._answered_recently():
            return "ok"
        async with self._probe_lock:
            if self._answered_recently():
                return "ok"
            try:
                await asyncio.wait_for(self._vyte.auth_test(), _PROBE_TIMEOUT)
            except VyteError as err:
                # An answer that says no still proves Vyte is reachable.
                if self._answered_recently():
                    return "ok"
                return f"unavailable: {type(err).__name__}"
            except TimeoutError:
                return "unavailable: timeout"
            return "ok"

    def _answered_recently(self) -> bool:
        last = self._vyte.last_answer_at
        return last is not None and time.monotonic() - last < _VYTE_FRESH

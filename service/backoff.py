"""The one backoff schedule of the gateway: exponential, capped, optionally jittered.

Used for upstream retries (full jitter), asynchronous operations (half jitter) and hook
registration (none); webhook deliveries follow their own configured schedule.
"""

from __future__ import annotations

import random


def exponential(attempt: int, base: float, cap: float, *, jitter: float = 1.0) -> float:
    """The delay before retry number `attempt` (1-based): `base` doubling with each attempt,
    at most `cap`, then shortened by up to `jitter` of itself at random (1.0: anywhere from
    zero, "full jitter"; 0.5: between half and all of it; 0: exactly)."""
    if not 0.0 <= jitter <= 1.0:
        raise ValueError(f"jitter must be between 0 and 1, not {jitter}")
    nominal = min(cap, base * 2.0 ** max(0, attempt - 1))
    if jitter == 0.0:
        return nominal
    return nominal * random.uniform(1.0 - jitter, 1.0)

"""The per-participant slot cache: entries expire after the TTL and never exceed the bound."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import pytest

from service import availability
from service.availability import AvailabilityService
from service.domain.participant import Participant
from service.store.base import Store, StoreUnavailable
from service.vyte.client import VyteClient
from tests.dates import in_days

TTL = 30.0


class NoMarks:
    """A store in which no booking was ever written."""

    async def booking_marks(self, organizers: Sequence[str]) -> tuple[str, ...]:
        return tuple("" for _ in organizers)


STORE = cast(Store, NoMarks())


class CountingVyte:
    """Answers every slot query with no windows, counting the calls per user."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}

    async def slot_windows(self, *, users: str | None = None, **_: Any) -> list[tuple[str, str]]:
        assert users is not None
        self.calls[users] = self.calls.get(users, 0) + 1
        return []


async def ask(service: AvailabilityService, who: str) -> None:
    await service.free_windows(
        Participant(who), duration=30, first=in_days(2), last=in_days(3), timezone="UTC"
    )


@pytest.fixture
def clock() -> list[float]:
    return [1000.0]


@pytest.fixture
def vyte() -> CountingVyte:
    return CountingVyte()


@pytest.fixture
def service(vyte: CountingVyte, clock: list[float]) -> AvailabilityService:
    return AvailabilityService(cast(VyteClient, vyte), STORE, cache_ttl=TTL, clock=lambda: clock[0])


async def test_entries_are_reused_until_the_ttl_ends(
    service: AvailabilityService, vyte: CountingVyte, clock: list[float]
) -> None:
    await ask(service, "u1")
    clock[0] += TTL - 1
    await ask(service, "u1")
    assert vyte.calls == {"u1": 1}
    clock[0] += 2
    await ask(service, "u1")
    assert vyte.calls == {"u1": 2}


async def test_expired_entries_leave_as_new_ones_arrive(
    service: AvailabilityService, clock: list[float]
) -> None:
    for i in range(5):
        await ask(service, f"old{i}")
    clock[0] += TTL + 1
    await ask(service, "new")
    assert len(service._cache) == 1


async def test_the_cache_never_holds_more_than_its_bound(
    service: AvailabilityService,
    vyte: CountingVyte,
    clock: list[float],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(availability, "CACHE_ENTRIES", 3)
    for i in range(5):
        await ask(service, f"u{i}")
        clock[0] += 1
    assert len(service._cache) == 3
    # The oldest went first; the newest three are still answered from the cache.
    for i in (2, 3, 4):
        await ask(service, f"u{i}")
    await ask(service, "u0")
    assert vyte.calls == {"u0": 2, "u1": 1, "u2": 1, "u3": 1, "u4": 1}


async def test_a_ttl_below_the_clocks_resolution_caches_nothing_and_fails_nothing(
    vyte: CountingVyte, clock: list[float]
) -> None:
    assert clock[0] + 1e-14 == clock[0]  # the entry expires as it is made
    service = AvailabilityService(
        cast(VyteClient, vyte), STORE, cache_ttl=1e-14, clock=lambda: clock[0]
    )
    await ask(service, "u1")
    await ask(service, "u1")
    assert vyte.calls == {"u1": 2} and service._cache == {}


class DictCache:
    """A shared cache in a dict (what Redis is to the replicas); `down` makes it fail."""

    def __init__(self, clock: list[float]) -> None:
        self.values: dict[str, tuple[str, float]] = {}
        self.clock = clock
        self.down = False

    async def cache_get(self, key: str) -> tuple[str, float] | None:
        if self.down:
            raise StoreUnavailable("redis: gone")
        found = self.values.get(key)
        if found is None or found[1] <= self.clock[0]:
            return None
        return found[0], found[1] - self.clock[0]

    async def cache_set(self, key: str, value: str, ttl: float) -> None:
        if self.down:
            raise StoreUnavailable("redis: gone")
        self.values[key] = (value, self.clock[0] + ttl)


def replica(vyte: CountingVyte, clock: list[float], shared: DictCache) -> AvailabilityService:
    return AvailabilityService(
        cast(VyteClient, vyte),
        STORE,
        cache_ttl=TTL,
        clock=lambda: clock[0],
        shared=shared,
    )


async def test_replicas_share_answers_through_the_shared_cache(
    vyte: CountingVyte, clock: list[float]
) -> None:
    shared = DictCache(clock)
    first, second = replica(vyte, clock, shared), replica(vyte, clock, shared)
    await ask(first, "u1")
    await ask(second, "u1")
    await ask(second, "u1")  # now in the second replica's own cache too
    assert vyte.calls == {"u1": 1}
    assert len(shared.values) == 1
    ((value, _),) = shared.values.values()
    assert value == "[]"  # CountingVyte's answer: no free windows


async def test_a_failing_shared_cache_only_costs_an_upstream_call(
    vyte: CountingVyte, clock: list[float]
) -> None:
    shared = DictCache(clock)
    shared.down = True
    first, second = replica(vyte, clock, shared), replica(vyte, clock, shared)
    await ask(first, "u1")
    await ask(second, "u1")
    assert vyte.calls == {"u1": 2}


async def test_a_shared_answer_is_kept_only_for_what_it_has_left(
    vyte: CountingVyte, clock: list[float]
) -> None:
    shared = DictCache(clock)
    first, second = replica(vyte, clock, shared), replica(vyte, clock, shared)
    await ask(first, "u1")
    clock[0] += TTL - 5
    await ask(second, "u1")  # from the shared cache, with 5 s left
    clock[0] += 6
    await ask(second, "u1")  # one TTL after Vyte answered: asked again
    assert vyte.calls == {"u1": 2}


@pytest.mark.parametrize("garbage", ["not json", "[1, 2]", '[["a", "b"]]', "{}"])
async def test_an_unreadable_shared_answer_is_ignored(
    vyte: CountingVyte, clock: list[float], garbage: str
) -> None:
    shared = DictCache(clock)
    first = replica(vyte, clock, shared)
    await ask(first, "u1")
    (key,) = shared.values
    shared.values[key] = (garbage, clock[0] + TTL)
    await ask(replica(vyte, clock, shared), "u1")
    assert vyte.calls == {"u1": 2}

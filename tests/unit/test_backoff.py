"""The one backoff helper, and the Vyte options read from the settings."""

from __future__ import annotations

import pytest

from service.backoff import exponential
from service.config import Settings
from service.vyte.client import VyteOptions


def test_the_nominal_delay_doubles_up_to_the_cap() -> None:
    assert [exponential(a, 1.0, 300.0, jitter=0.0) for a in (1, 2, 3, 9, 10, 40)] == [
        1.0,
        2.0,
        4.0,
        256.0,
        300.0,
        300.0,
    ]


@pytest.mark.parametrize("jitter", [1.0, 0.5, 0.25])
def test_jitter_shortens_by_at_most_its_share(jitter: float) -> None:
    for attempt in range(1, 12):
        nominal = min(20.0, 0.5 * 2 ** (attempt - 1))
        delays = [exponential(attempt, 0.5, 20.0, jitter=jitter) for _ in range(300)]
        assert all(nominal * (1 - jitter) <= d <= nominal for d in delays)
        assert len(set(delays)) > 1


def test_jitter_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="jitter"):
        exponential(1, 1.0, 2.0, jitter=1.5)


def test_vyte_options_follow_the_settings() -> None:
    settings = Settings(
        vyte_base_url="https://vyte.example",
        vyte_api_key="key",
        vyte_timeout=3.0,
        vyte_concurrency=7,
        request_budget=9.0,
        breaker_threshold=2,
        breaker_cooldown=4.0,
    )
    options = VyteOptions.from_settings(settings)
    assert (options.base_url, options.api_key) == ("https://vyte.example", "key")
    assert (options.timeout, options.concurrency, options.budget) == (3.0, 7, 9.0)
    assert (options.breaker_threshold, options.breaker_cooldown) == (2, 4.0)
    # Left unset, an option is the setting's own default.
    plain = VyteOptions(base_url="https://vyte.example", api_key="key")
    assert plain == VyteOptions.from_settings(
        Settings(vyte_base_url=plain.base_url, vyte_api_key="key")
    )


async def test_hook_registration_backs_off_until_vyte_takes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from service.notify import inbound
    from service.vyte import errors
    from service.vyte.models import Hook

    class FlakyVyte:
        def __init__(self) -> None:
            self.failures = 3
            self.hooks: list[Hook] = []

        async def list_hooks(self) -> list[Hook]:
            if self.failures:
                self.failures -= 1
                raise errors.VyteServerError("down", status=502)
            return list(self.hooks)

        async def create_hook(self, action: str, target_url: str) -> Hook:
            hook = Hook(id=f"h{len(self.hooks)}", action=action, target_url=target_url)
            self.hooks.append(hook)
            return hook

    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(inbound.asyncio, "sleep", sleep)
    vyte = FlakyVyte()
    await inbound.keep_registering(vyte, "https://gw.example/v1/vyte/webhooks/t")  # type: ignore[arg-type]
    assert waits == [1.0, 2.0, 4.0]
    assert sorted(h.action for h in vyte.hooks) == sorted(inbound.ACTIONS)

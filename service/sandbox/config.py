"""How a sandbox instance is set up: accepted API keys, seed file and baseline faults."""

from __future__ import annotations

from pathlib import Path

import attrs

# Shaped like a real Vyte key (50 lowercase alphanumerics) so clients that validate the
# format accept it.
SANDBOX_API_KEY = "sandbox0123456789abcdefghijklmnopqrstuvwxyzsandbox"

DEFAULT_SEED_PATH = Path(__file__).with_name("seed.json")

# `GET /v2/hooks`: the webhook guide shows a bare array, the reference `{"hooks": [...]}`.
HOOK_LIST_SHAPES = ("array", "object")


def _check_fraction(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be between 0 and 1, got {value!r}")


def _check_positive(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, got {value!r}")


def _check_hook_list_shape(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in HOOK_LIST_SHAPES:
        raise ValueError(f"{attribute.name} must be one of {HOOK_LIST_SHAPES}, got {value!r}")


def _check_non_negative(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative, got {value!r}")


@attrs.frozen
class SandboxConfig:
    """Settings of one sandbox app.

    `latency` and `error_rate` apply to every `/v2` request for the app's whole life; the
    `/_sandbox/faults` endpoint adds temporary faults on top of them.
    """

    api_keys: frozenset[str] = attrs.field(
        default=frozenset({SANDBOX_API_KEY}), converter=frozenset
    )
    seed_path: Path | None = None
    latency: float = attrs.field(default=0.0, validator=_check_non_negative)
    error_rate: float = attrs.field(default=0.0, validator=_check_fraction)
    hook_timeout: float = attrs.field(default=5.0, validator=_check_positive)
    # Vyte's prose says a hook body is a one-element array while its example shows a bare
    # object (the default); `/_sandbox/settings` switches it at run time too.
    hook_batch: bool = False
    # Both shapes are documented; the array is the default as the guide's walk-through
    # (the way most clients are written) shows it.
    hook_list_shape: str = attrs.field(default="array", validator=_check_hook_list_shape)
    # Vyte wants https hook targets; a gateway on loopback (`serve --sandbox`, tests) can
    # only offer plain http, so this lets such targets in.
    allow_http_hooks: bool = False
    # Ids of users whose booking page has `auto_confirm` on: their `vyteme` events come back
    # from the create already confirmed. `/_sandbox/users/{id}` changes it at run time.
    auto_confirm_users: frozenset[str] = attrs.field(default=frozenset(), converter=frozenset)

    @property
    def resolved_seed_path(self) -> Path:
        return self.seed_path if self.seed_path is not None else DEFAULT_SEED_PATH

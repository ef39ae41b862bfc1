"""Run-time switches: what Vyte documents two ways, and users' booking-page auto_confirm."""

from __future__ import annotations

from typing import Any

import attrs

from .config import HOOK_LIST_SHAPES, SandboxConfig
from .wire import JSON, BadRequest


@attrs.define
class Switches:
    """The live settings; `/_sandbox/reset` goes back to the config's."""

    hook_list_shape: str
    hook_batch: bool
    auto_confirm: set[str]
    """Users whose booking page confirms what is booked on it (set per user)."""

    @classmethod
    def from_config(cls, config: SandboxConfig) -> Switches:
        return cls(
            hook_list_shape=config.hook_list_shape,
            hook_batch=config.hook_batch,
            auto_confirm=set(config.auto_confirm_users),
        )

    def to_json(self) -> JSON:
        return {"hook_list_shape": self.hook_list_shape, "hook_batch": self.hook_batch}

    def update(self, body: object) -> None:
        """Apply a partial settings body; nothing changes unless all of it is valid."""
        if not isinstance(body, dict):
            raise BadRequest("body must be a JSON object")
        unknown = sorted(set(body) - set(self.to_json()))
        if unknown:
            raise BadRequest(f"unknown settings {unknown}")
        changes: dict[str, Any] = {}
        if "hook_list_shape" in body:
            shape = body["hook_list_shape"]
            if shape not in HOOK_LIST_SHAPES:
                raise BadRequest(f"hook_list_shape must be one of {list(HOOK_LIST_SHAPES)}")
            changes["hook_list_shape"] = shape
        if "hook_batch" in body:
            if not isinstance(body["hook_batch"], bool):
                raise BadRequest("hook_batch must be a boolean")
            changes["hook_batch"] = body["hook_batch"]
        for name, value in changes.items():
            setattr(self, name, value)

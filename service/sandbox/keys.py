"""Every `web.AppKey` of the sandbox app, kept apart so handlers and the factory share them."""

from __future__ import annotations

import asyncio

from aiohttp import web

from .config import SandboxConfig
from .hooks import HookDispatcher
from .state import SandboxState

CONFIG = web.AppKey("sandbox_config", SandboxConfig)
STATE = web.AppKey("sandbox_state", SandboxState)
HOOKS = web.AppKey("sandbox_hooks", HookDispatcher)
STOPPING = web.AppKey("sandbox_stopping", asyncio.Event)
"""Set on shutdown so delayed and hanging requests end instead of holding the server."""

"""The sandbox aiohttp app: its factory, the `/v2` gate (auth, faults, counts) and its runners."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler

from . import admin, views
from .config import SandboxConfig
from .faults import Fault
from .hooks import HookDispatcher
from .keys import CONFIG, HOOKS, STATE, STOPPING
from .seed import load_seed
from .state import SandboxState
from .wire import VyteError

log = logging.getLogger(__name__)

_SHUTDOWN_TIMEOUT = 5.0
_HANG_POLL = 0.05
# Truncated JSON under a JSON content type: the unreadable answer a client must not trust.
_MALFORMED_BODY = b'{"timezone": "Europe/Paris", "slots": [{"start": {"dateTi'


def create_sandbox_app(config: SandboxConfig | None = None) -> web.Application:
    """The emulator app; the seed is read and the hook client opened only when it starts."""
    app = web.Application(middlewares=[upstream_gate, vyte_errors])
    app[CONFIG] = config if config is not None else SandboxConfig()
    app[STOPPING] = asyncio.Event()
    app.cleanup_ctx.append(_resources)
    app.on_shutdown.append(_stop_waiting)
    app.add_routes(views.routes)
    app.add_routes(admin.routes)
    return app


async def start_sandbox(
    config: SandboxConfig | None = None, host: str = "127.0.0.1", port: int = 0
) -> tuple[web.AppRunner, str]:
    """Serve a sandbox on `host:port` (0 picks a free port); returns its runner and base URL.

    The caller owns the runner and stops the sandbox with `await runner.cleanup()`.
    """
    runner = web.AppRunner(create_sandbox_app(config), shutdown_timeout=_SHUTDOWN_TIMEOUT)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    bound_host, bound_port = runner.addresses[0][:2]
    if ":" in bound_host:
        bound_host = f"[{bound_host}]"
    return runner, f"http://{bound_host}:{bound_port}"


async def run_sandbox(host: str, port: int, config: SandboxConfig) -> None:
    """Serve a sandbox until the calling task is cancelled."""
    runner, url = await start_sandbox(config, host, port)
    log.info("vyte sandbox listening on %s", url)
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        await runner.cleanup()


async def _resources(app: web.Application) -> AsyncIterator[None]:
    config = app[CONFIG]
    seed = await asyncio.to_thread(load_seed, config.resolved_seed_path)
    app[STATE] = SandboxState(seed, config)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=config.hook_timeout))
    app[HOOKS] = HookDispatcher(session)
    try:
        yield
    finally:
        await app[HOOKS].close()
        await session.close()


async def _stop_waiting(app: web.Application) -> None:
    app[STOPPING].set()


@web.middleware
async def vyte_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except VyteError as err:
        return _error(err.status, err.message)


@web.middleware
async def upstream_gate(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Counts every `/v2` request, then plays configured and injected faults, then checks auth."""
    if not request.path.startswith("/v2/"):
        return await handler(request)
    app = request.app
    state, config = app[STATE], app[CONFIG]
    state.count_request(_route_key(request))
    fault = state.faults.take(request.path, request.method)
    delay = config.latency + (fault.latency if fault is not None else 0.0)
    if delay > 0:
        # Vyte has the whole request before it starts working on it: a client that gives
        # up during the delay still gets its request applied, as upstream would.
        await request.read()
        await _pause(app, delay)
    if _unlucky(config.error_rate) or (fault is not None and _unlucky(fault.error_rate)):
        return _error(500, "Internal server error")
    if fault is None or not fault.replaces_answer:
        return await _authorized(request, handler)
    if fault.apply:
        await _authorized(request, handler)
    return await _faulty_answer(request, fault)


async def _authorized(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.headers.get("Authorization") not in request.app[CONFIG].api_keys:
        return _error(401, "Not authenticated")
    return await handler(request)


async def _faulty_answer(request: web.Request, fault: Fault) -> web.StreamResponse:
    if fault.hang:
        await _hang(request)
        # Only a stopping server gets here with the client still connected.
        return _error(503, "request timed out")
    if fault.status is not None:
        response = _error(fault.status, "Injected fault")
        if fault.retry_after is not None:
            response.headers["Retry-After"] = fault.retry_after
        return response
    return web.Response(body=_MALFORMED_BODY, content_type="application/json")


async def _pause(app: web.Application, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(app[STOPPING].wait(), seconds)


async def _hang(request: web.Request) -> None:
    """Wait until the client gives up (closes the connection) or the server stops.

    aiohttp does not cancel a handler whose client went away, so the connection is polled.
    """
    stopping = request.app[STOPPING]
    while not stopping.is_set():
        transport = request.transport
        if transport is None or transport.is_closing():
            return
        await _pause(request.app, _HANG_POLL)


def _unlucky(rate: float) -> bool:
    return rate > 0 and random.random() < rate


def _route_key(request: web.Request) -> str:
    resource = request.match_info.route.resource
    path = resource.canonical if resource is not None else request.path
    return f"{request.method} {path}"


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"status": status, "message": message}, status=status)

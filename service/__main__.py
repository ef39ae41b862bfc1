"""The `booking-gateway` command: `serve [--sandbox]`, `sandbox` and `check [--sandbox]`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import attrs
import structlog
from aiohttp import web

from service import eventloop, keys, logging
from service.app import create_app
from service.config import SANDBOX_TOKEN, ConfigError, Settings
from service.http.server import GatewayRunner

log = structlog.get_logger("main")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="booking-gateway")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument(
        "--sandbox", action="store_true", help="talk to an embedded Vyte emulator instead of Vyte"
    )
    check = commands.add_parser(
        "check",
        help="validate the settings, reach the store and Vyte; exit non-zero on any failure",
    )
    check.add_argument(
        "--sandbox", action="store_true", help="check the settings as `serve --sandbox` reads them"
    )
    check.add_argument(
        "--allow-vyte-outage",
        action="store_true",
        help="only warn when Vyte cannot be reached or is failing (a refused key still fails)",
    )
    sandbox = commands.add_parser("sandbox", help="run only the Vyte emulator")
    sandbox.add_argument("--host", default="127.0.0.1")
    sandbox.add_argument("--port", type=int, default=8090)
    sandbox.add_argument("--seed", type=Path, default=None, help="seed JSON file")
    args = parser.parse_args(argv)

    if args.command == "sandbox":
        logging.configure()
        return asyncio.run(_run_sandbox(args.host, args.port, args.seed))
    if args.command == "check":
        return _check(args.sandbox, args.allow_vyte_outage)
    try:
        settings = Settings.from_environ(
            os.environ, sandbox=args.sandbox, isatty=sys.stderr.isatty()
        )
    except ConfigError as err:
        print(err, file=sys.stderr)
        return 2
    logging.configure(settings.log_level, settings.log_format, settings.secret_values())
    return eventloop.run(serve_forever(settings))


def _check(sandbox: bool, allow_vyte_outage: bool) -> int:
    """Print one line per check on stdout; the calls' own log lines stay out of the way."""
    from service.check import check

    logging.configure("critical", "json")
    status, lines = asyncio.run(
        check(os.environ, sandbox=sandbox, allow_vyte_outage=allow_vyte_outage)
    )
    for line in lines:
        print(line, flush=True)
    return status


async def _run_sandbox(host: str, port: int, seed: Path | None) -> int:
    from service.sandbox import SandboxConfig, start_sandbox

    stop = _stop_signals()
    runner, url = await start_sandbox(SandboxConfig(seed_path=seed), host=host, port=port)
    log.info("sandbox_listening", url=url)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
    return 0


def _stop_signals() -> asyncio.Event:
    """An event set by SIGTERM or SIGINT (installed at once, so start-up is covered too)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def serve_forever(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT, then shut down gracefully and return 0.

    1. /readyz answers 503 at once (draining), and keeps doing so for DRAIN_DELAY seconds
       while the listener stays open, so load balancers stop routing here first;
    2. the listener closes: no new connections;
    3. requests in flight finish, for up to SHUTDOWN_TIMEOUT seconds (then they are
       cancelled);
    4. the app's cleanup stops the background workers and closes the Vyte session and the
       store.

    A second signal during the drain delay cuts it short.
    """
    stop = _stop_signals()
    sandbox_runner = None
    if settings.sandbox and not settings.vyte_api_key:
        from service.sandbox import SANDBOX_API_KEY, SandboxConfig, start_sandbox

        sandbox_runner, url = await start_sandbox(SandboxConfig(allow_http_hooks=True))
        settings = attrs.evolve(settings, vyte_base_url=url, vyte_api_key=SANDBOX_API_KEY)
        if settings.public_url is None:
            # Let the emulator's hooks reach us, so changes made "inside Vyte" flow back.
            host = "127.0.0.1" if settings.host in ("0.0.0.0", "::", "") else settings.host  # noqa: S104
            settings = attrs.evolve(
                settings,
                public_url=f"http://{host}:{settings.port}",
                vyte_webhook_token=settings.vyte_webhook_token or secrets.token_urlsafe(24),
            )
        log.info("sandbox_started", vyte_base_url=url)
    app = create_app(settings)
    runner = GatewayRunner(
        app, access_log=None, shutdown_timeout=settings.shutdown_timeout, handle_signals=False
    )
    try:
        await runner.setup()
        site = web.TCPSite(runner, settings.host, settings.port)
        try:
            await site.start()
        except OSError as err:
            log.error("cannot_listen", host=settings.host, port=settings.port, error=str(err))
            return 1
        base = f"http://{settings.host}:{settings.port}"
        log.info("listening", url=base, store=settings.store_url.split("://", 1)[0])
        if settings.sandbox and SANDBOX_TOKEN in settings.api_tokens:
            # Tomorrow and the day after: the gateway never offers the past.
            first = datetime.now(UTC).date() + timedelta(days=1)
            last = first + timedelta(days=1)
            print(
                f"\nbooking-gateway is up at {base} (Vyte sandbox)\n"
                f"  try: curl -H 'Authorization: Bearer {SANDBOX_TOKEN}' "
                f"'{base}/v1/availability?participants=5f3feb7821046c3bb9327e6a"
                f"&duration=60&from={first}&to={last}&timezone=Europe/Paris'\n",
                file=sys.stderr,
                flush=True,
            )
        await stop.wait()
        log.info(
            "draining",
            drain_delay=settings.drain_delay,
            shutdown_timeout=settings.shutdown_timeout,
        )
        app[keys.HEALTH].draining = True
        if settings.drain_delay > 0:
            stop.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.drain_delay)
        log.info("closing_listener")
    finally:
        # Closes the listener, waits for requests in flight, then runs the app's cleanup.
        await runner.cleanup()
        if sandbox_runner is not None:
            await sandbox_runner.cleanup()
    log.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

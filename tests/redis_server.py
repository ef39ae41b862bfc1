"""A real redis-server on 127.0.0.1 for tests: a helper class and pytest fixtures.

Test modules load it with `pytest_plugins = ("tests.redis_server",)` and import
names from it only under TYPE_CHECKING (pytest must import it first, as a plugin).
Tests that need Redis are skipped only when no redis-server binary is installed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

from tests.server_process import ServerProcess

STARTUP_TIMEOUT = 10.0  # seconds for the server to answer PING


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer(ServerProcess):
    """One redis-server process without persistence, in its own directory.

    It keeps its port across stop() and start(), so a client can see it come back.
    """

    def __init__(
        self, binary: str, directory: Path, port: int | None = None, *, persistent: bool = False
    ) -> None:
        self.binary = binary
        self.directory = directory
        self.port = port if port is not None else free_port()
        # persistent: an append-only file synced on every write, so data outlives a restart.
        self.persistent = persistent
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    @property
    def log(self) -> Path:
        return self.directory / "redis.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        options = {
            "bind": "127.0.0.1",
            "port": str(self.port),
            "save": "",
            "appendonly": "yes" if self.persistent else "no",
            "appendfsync": "always",
            "dir": str(self.directory),
            "logfile": str(self.log),
            "daemonize": "no",
        }
        command = [self.binary]
        for name, value in options.items():
            command += (f"--{name}", value)
        self._process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with {self._process.returncode}: {self._log_tail()}"
                )
            if self._answers_ping():
                return
            time.sleep(0.01)
        self.stop()
        raise RuntimeError(f"redis-server did not answer within {STARTUP_TIMEOUT}s")

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def restart(self) -> None:
        self.stop()
        self.start()

    def pause(self) -> None:
        """Freeze the process: connections stay open but nothing answers (a hung server)."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None and self._process.poll() is None:
            # A paused server ignores SIGTERM until it runs again.
            self.resume()
        self.stop()


@contextlib.contextmanager
def running_redis_server(*, persistent: bool = False) -> Iterator[RedisServer]:
    """A fresh redis-server for the duration of the block; skips the test if there is none."""
    binary = redis_server_binary()
    if binary is None:
        if os.environ.get("REQUIRE_REDIS") == "1":
            pytest.fail("REQUIRE_REDIS=1 but redis-server is not installed")
        pytest.skip(
            "redis-server is not installed (apt-get install redis-server); Redis tests skipped"
        )
    with (
        tempfile.TemporaryDirectory(prefix="redis-test-") as directory,
        RedisServer(binary, Path(directory), persistent=persistent) as server,
    ):
        yield server


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One server shared by the session; tests flush the database they use."""
    with running_redis_server() as server:
        yield server


@pytest.fixture
def own_redis_server() -> Iterator[RedisServer]:
    """A server for one test alone, which it may stop, pause and restart."""
    with running_redis_server() as server:
        yield server


@pytest.fixture
def durable_redis_server() -> Iterator[RedisServer]:
    """Like own_redis_server, but what was written survives a restart (as in production)."""
    with running_redis_server(persistent=True) as server:
        yield server

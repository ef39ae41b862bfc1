"""What every redis-server a test starts shares: its log, stopping it, emptying a db."""

from __future__ import annotations

import subprocess
from pathlib import Path

from redis.asyncio import Redis

STOP_TIMEOUT = 5.0


class ServerProcess:
    """What every redis-server a test starts shares: its log, stopping it, emptying a db.

    A subclass sets `self._process` when it starts the server and provides `log` and `url`.
    """

    _process: subprocess.Popen[bytes] | None

    @property
    def log(self) -> Path:
        raise NotImplementedError

    def url(self, db: int = 0) -> str:
        raise NotImplementedError

    def _log_tail(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-2000:]
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    async def flush(self, db: int = 0) -> None:
        """Empty database `db`."""
        client = Redis.from_url(self.url(db))
        try:
            await client.flushdb()
        finally:
            await client.aclose()

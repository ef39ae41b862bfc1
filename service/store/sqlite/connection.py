"""The SQLite store's one connection: opening, migrating, and atomic read and write steps.

Every step runs under one asyncio.Lock, and every write is a `BEGIN IMMEDIATE`
transaction, so check-then-write steps (holds, idempotency keys, version checks,
claims) are atomic within the process and against other processes on the same file.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Final, Self

import aiosqlite

from service.store.base import StoreUnavailable
from service.store.sqlite.schema import MIGRATIONS

URL_SCHEME: Final = "sqlite:///"
# Seconds to wait for another process's write lock before the store counts as unavailable.
DEFAULT_BUSY_TIMEOUT: Final = 5.0

# Errors that say the caller did something wrong, not that the database is unusable.
_CALLER_ERRORS: Final = (
    sqlite3.IntegrityError,
    sqlite3.ProgrammingError,
    sqlite3.InterfaceError,
    sqlite3.DataError,
    sqlite3.NotSupportedError,
)


def database_path(url: str) -> str:
    """The file path in `sqlite:///path` (`sqlite:////abs/path` is absolute)."""
    if not url.startswith(URL_SCHEME) or len(url) == len(URL_SCHEME):
        raise ValueError(f"not a sqlite:///path URL: {url!r}")
    return url[len(URL_SCHEME) :]


class Connection:
    """One aiosqlite connection, taken by one step at a time."""

    def __init__(self, db: aiosqlite.Connection, path: str) -> None:
        self._db: aiosqlite.Connection | None = db
        self._lock = asyncio.Lock()
        self.path = path
        # Per organizer, the mark of the last write of one of their bookings (`booking_marks`).
        self._booking_marks: dict[str, str] = {}

    @classmethod
    async def open(cls, url: str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> Self:
        """Open (creating the file, its directory and the schema if needed) `url`."""
        path = database_path(url)
        if path != ":memory:":
            try:
                await asyncio.to_thread(Path(path).parent.mkdir, parents=True, exist_ok=True)
            except OSError as err:
                raise StoreUnavailable(f"cannot create the directory of {path}: {err}") from err
        try:
            # isolation_level=None: transactions are begun and ended explicitly below.
            db = await aiosqlite.connect(path, isolation_level=None)
        except sqlite3.Error as err:
            raise StoreUnavailable(f"cannot open {path}: {err}") from err
        db.row_factory = sqlite3.Row
        store = cls(db, path)
        try:
            await store._configure(busy_timeout)
            await store._migrate()
        except BaseException:
            await db.close()
            raise
        return store

    async def _configure(self, busy_timeout: float) -> None:
        async with self._reading() as db:
            # Another process may hold the write lock; wait for it rather than fail.
            await db.execute(f"PRAGMA busy_timeout = {round(busy_timeout * 1000):d}")
            await db.execute("PRAGMA journal_mode = WAL")
            # In WAL mode NORMAL survives process crashes; only an OS crash or power
            # loss can drop the last commits.
            await db.execute("PRAGMA synchronous = NORMAL")

    async def _migrate(self) -> None:
        async with self._writing() as db:
            # Read inside the write transaction: another process may have just migrated.
            row = await fetch_one(db, "PRAGMA user_version")
            version = int(row[0]) if row is not None else 0
            if version > len(MIGRATIONS):
                raise StoreUnavailable(
                    f"{self.path} has schema version {version}; "
                    f"this build knows up to {len(MIGRATIONS)}"
                )
            for step in MIGRATIONS[version:]:
                for statement in step:
                    await db.execute(statement)
            if version < len(MIGRATIONS):
                await db.execute(f"PRAGMA user_version = {len(MIGRATIONS):d}")

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[aiosqlite.Connection]:
        # Reads take the lock too: on a single connection they would otherwise see
        # another task's uncommitted transaction.
        async with self._lock:
            if self._db is None:
                raise StoreUnavailable("the store is closed")
            try:
                yield self._db
            except _CALLER_ERRORS:
                raise
            except sqlite3.Error as err:
                raise StoreUnavailable(f"sqlite: {err}") from err

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._reading() as db:
            try:
                # Inside the try: if BEGIN is cancelled it still runs, so roll it back.
                await db.execute("BEGIN IMMEDIATE")
                yield db
                await db.commit()
            except BaseException:
                # The worker thread runs statements in order, so this rollback is
                # queued before anything the next lock holder sends, even if this
                # task is cancelled again while waiting for it.
                with contextlib.suppress(sqlite3.Error):
                    await db.rollback()
                raise

    async def ping(self) -> None:
        async with self._reading() as db:
            await fetch_one(db, "SELECT count(*) FROM sqlite_master")

    async def close(self) -> None:
        async with self._lock:
            db, self._db = self._db, None
            if db is not None:
                await db.close()


async def fetch_all(
    db: aiosqlite.Connection, sql: str, params: Sequence[object] = ()
) -> list[sqlite3.Row]:
    return list(await db.execute_fetchall(sql, params))


async def fetch_one(
    db: aiosqlite.Connection, sql: str, params: Sequence[object] = ()
) -> sqlite3.Row | None:
    found = await fetch_all(db, sql, params)
    return found[0] if found else None

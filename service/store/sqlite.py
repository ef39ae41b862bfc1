"""The embedded Store backend: one SQLite file in WAL mode, one connection, one writer.

Every method runs under one asyncio.Lock, and every write is a `BEGIN IMMEDIATE`
transaction, so check-then-write steps (holds, idempotency keys, version checks,
claims) are atomic within the process and against other processes on the same file.
Instants are stored as integer microseconds since the Unix epoch (UTC): exact, and
compared numerically in queries.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import aiosqlite

from service.domain.booking import Booking, BookingStatus
from service.store import codec
from service.store.base import (
    BookingPage,
    Delivery,
    DeliveryStatus,
    IdempotencyRecord,
    IdempotencyState,
    Operation,
    OperationStatus,
    OperationType,
    StoredResponse,
    StoreUnavailable,
    Subscription,
    SubscriptionLimitReached,
    UnresolvedCreate,
)

if TYPE_CHECKING:
    from service.store.base import Store

URL_SCHEME: Final = "sqlite:///"
# Seconds to wait for another process's write lock before the store counts as unavailable.
DEFAULT_BUSY_TIMEOUT: Final = 5.0

# Step i moves the schema from user_version i to i + 1. Only ever append a step:
# files already in the field have run the earlier ones.
MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """
        CREATE TABLE bookings (
            id TEXT PRIMARY KEY,
            organizer TEXT NOT NULL,
            start_us INTEGER NOT NULL,
            end_us INTEGER NOT NULL,
            status TEXT NOT NULL,
            version INTEGER NOT NULL,
            record TEXT NOT NULL
        )
        """,
        # The literal statuses mirror domain.booking.ACTIVE_STATUSES; the partial
        # index only serves queries that repeat the same literal condition.
        """
        CREATE INDEX bookings_active ON bookings (organizer, start_us)
        WHERE status IN ('requested', 'confirmed')
        """,
        """
        CREATE TABLE holds (
            id TEXT PRIMARY KEY,
            organizer TEXT NOT NULL,
            start_us INTEGER NOT NULL,
            end_us INTEGER NOT NULL,
            expires_us INTEGER NOT NULL
        )
        """,
        "CREATE INDEX holds_organizer ON holds (organizer, start_us)",
        "CREATE INDEX holds_expiry ON holds (expires_us)",
        """
        CREATE TABLE idempotency (
            caller TEXT NOT NULL,
            key TEXT NOT NULL,
            fingerprint TEXT NOT NULL,
            state TEXT NOT NULL,
            response TEXT,
            expires_us INTEGER NOT NULL,
            PRIMARY KEY (caller, key)
        ) WITHOUT ROWID
        """,
        "CREATE INDEX idempotency_expiry ON idempotency (expires_us)",
        # AUTOINCREMENT: `seq` is the delivery order and must never be reused, even
        # after old rows are purged.
        """
        CREATE TABLE deliveries (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            event_type TEXT NOT NULL,
            url TEXT NOT NULL,
            payload TEXT NOT NULL,
            booking_id TEXT,
            status TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            next_attempt_us INTEGER NOT NULL,
            last_error TEXT,
            created_us INTEGER NOT NULL,
            updated_us INTEGER NOT NULL,
            lease_owner TEXT,
            lease_until_us INTEGER
        )
        """,
        # The claim's "oldest pending in its group" test, then the claim and list scans.
        "CREATE INDEX deliveries_group ON deliveries (status, url, booking_id, seq)",
        "CREATE INDEX deliveries_status ON deliveries (status, seq)",
        """
        CREATE TABLE subscriptions (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            url TEXT NOT NULL,
            events TEXT NOT NULL,
            caller TEXT NOT NULL,
            created_us INTEGER NOT NULL
        )
        """,
        """
        CREATE TABLE operations (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            type TEXT NOT NULL,
            status TEXT NOT NULL,
            caller TEXT NOT NULL,
            booking_id TEXT,
            request TEXT NOT NULL,
            attempts INTEGER NOT NULL,
            last_error TEXT,
            maybe_sent INTEGER NOT NULL,
            next_attempt_us INTEGER NOT NULL,
            created_us INTEGER NOT NULL,
            updated_us INTEGER NOT NULL,
            lease_owner TEXT,
            lease_until_us INTEGER
        )
        """,
        "CREATE INDEX operations_group ON operations (status, booking_id, seq)",
        "CREATE INDEX operations_status ON operations (status, seq)",
    ),
    (
        "ALTER TABLE deliveries ADD COLUMN request_id TEXT",
        "ALTER TABLE deliveries ADD COLUMN caller TEXT",
        "CREATE INDEX deliveries_caller ON deliveries (caller, status, seq)",
        "ALTER TABLE operations ADD COLUMN request_id TEXT",
    ),
    (
        # A caller's subscriptions: its listing, the duplicate check and the limit.
        "CREATE INDEX subscriptions_caller ON subscriptions (caller, seq)",
    ),
)

# Errors that say the caller did something wrong, not that the database is unusable.
_CALLER_ERRORS: Final = (
    sqlite3.IntegrityError,
    sqlite3.ProgrammingError,
    sqlite3.InterfaceError,
    sqlite3.DataError,
    sqlite3.NotSupportedError,
)

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)


def database_path(url: str) -> str:
    """The file path in `sqlite:///path` (`sqlite:////abs/path` is absolute)."""
    if not url.startswith(URL_SCHEME) or len(url) == len(URL_SCHEME):
        raise ValueError(f"not a sqlite:///path URL: {url!r}")
    return url[len(URL_SCHEME) :]


def _to_us(moment: datetime) -> int:
    return (codec.as_utc(moment) - _EPOCH) // _MICROSECOND


def _from_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=value)


def _after(moment: datetime, seconds: float) -> int:
    return _to_us(moment + timedelta(seconds=seconds))


def _now() -> datetime:
    return datetime.now(UTC)


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _delivery(row: sqlite3.Row) -> Delivery:
    return Delivery(
        id=str(row["id"]),
        event_type=str(row["event_type"]),
        url=str(row["url"]),
        payload=str(row["payload"]),
        booking_id=_optional_str(row["booking_id"]),
        status=DeliveryStatus(row["status"]),
        attempts=int(row["attempts"]),
        next_attempt_at=_from_us(row["next_attempt_us"]),
        last_error=_optional_str(row["last_error"]),
        created_at=_from_us(row["created_us"]),
        updated_at=_from_us(row["updated_us"]),
        request_id=_optional_str(row["request_id"]),
        caller=_optional_str(row["caller"]),
    )


def _operation(row: sqlite3.Row) -> Operation:
    return Operation(
        id=str(row["id"]),
        type=OperationType(row["type"]),
        status=OperationStatus(row["status"]),
        caller=str(row["caller"]),
        booking_id=_optional_str(row["booking_id"]),
        request=str(row["request"]),
        attempts=int(row["attempts"]),
        last_error=_optional_str(row["last_error"]),
        maybe_sent=bool(row["maybe_sent"]),
        next_attempt_at=_from_us(row["next_attempt_us"]),
        created_at=_from_us(row["created_us"]),
        updated_at=_from_us(row["updated_us"]),
        request_id=_optional_str(row["request_id"]),
    )


def _subscription(row: sqlite3.Row) -> Subscription:
    events: list[str] = json.loads(row["events"])
    return Subscription(
        id=str(row["id"]),
        url=str(row["url"]),
        events=tuple(events),
        caller=str(row["caller"]),
        created_at=_from_us(row["created_us"]),
    )


def _idempotency(row: sqlite3.Row) -> IdempotencyRecord:
    response = row["response"]
    return IdempotencyRecord(
        caller=str(row["caller"]),
        key=str(row["key"]),
        fingerprint=str(row["fingerprint"]),
        state=IdempotencyState(row["state"]),
        response=None if response is None else codec.loads(response, StoredResponse),
        expires_at=_from_us(row["expires_us"]),
    )


def _delivery_params(delivery: Delivery) -> tuple[object, ...]:
    return (
        delivery.id,
        delivery.event_type,
        delivery.url,
        delivery.payload,
        delivery.booking_id,
        delivery.status.value,
        delivery.attempts,
        _to_us(delivery.next_attempt_at),
        delivery.last_error,
        _to_us(delivery.created_at),
        _to_us(delivery.updated_at),
        delivery.request_id,
        delivery.caller,
    )


_INSERT_DELIVERY: Final = """
    INSERT INTO deliveries (id, event_type, url, payload, booking_id, status, attempts,
                            next_attempt_us, last_error, created_us, updated_us, request_id,
                            caller)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (id) DO NOTHING
"""


class SQLiteStore:
    """Store backed by one SQLite file; open it with `await SQLiteStore.open(url)`."""

    def __init__(self, db: aiosqlite.Connection, path: str) -> None:
        self._db: aiosqlite.Connection | None = db
        self._lock = asyncio.Lock()
        self.path = path

    @classmethod
    async def open(cls, url: str, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> SQLiteStore:
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
            row = await _one(db, "PRAGMA user_version")
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

    # -- plumbing -----------------------------------------------------------------------

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
            await _one(db, "SELECT count(*) FROM sqlite_master")

    async def close(self) -> None:
        async with self._lock:
            db, self._db = self._db, None
            if db is not None:
                await db.close()

    # -- bookings -----------------------------------------------------------------------

    async def get_booking(self, booking_id: str) -> Booking | None:
        async with self._reading() as db:
            row = await _one(db, "SELECT record FROM bookings WHERE id = ?", (booking_id,))
        return None if row is None else codec.loads(row["record"], Booking)

    async def put_booking(
        self,
        booking: Booking,
        *,
        expected_version: int | None,
        release_hold: str | None = None,
        deliveries: Sequence[Delivery] = (),
    ) -> bool:
        params = (
            booking.id,
            booking.organizer,
            _to_us(booking.start),
            _to_us(booking.end),
            booking.status.value,
            booking.version,
            codec.dumps(booking),
        )
        delivery_rows = [_delivery_params(delivery) for delivery in deliveries]
        async with self._writing() as db:
            row = await _one(db, "SELECT version FROM bookings WHERE id = ?", (booking.id,))
            stored = None if row is None else int(row["version"])
            if stored != expected_version:
                return False
            await db.execute(
                """
                INSERT INTO bookings (id, organizer, start_us, end_us, status, version, record)
                VALUES (?, ?, ?, ?, ?, ?, ?)
                ON CONFLICT (id) DO UPDATE SET
                    organizer = excluded.organizer, start_us = excluded.start_us,
                    end_us = excluded.end_us, status = excluded.status,
                    version = excluded.version, record = excluded.record
                """,
                params,
            )
            if release_hold is not None:
                await db.execute("DELETE FROM holds WHERE id = ?", (release_hold,))
            if delivery_rows:
                await db.executemany(_INSERT_DELIVERY, delivery_rows)
        return True

    async def active_bookings(
        self, organizers: Collection[str], start: datetime, end: datetime
    ) -> list[Booking]:
        who = sorted(set(organizers))
        if not who:
            return []
        async with self._reading() as db:
            # At most 50 organizers (an availability query's limit), far below SQLite's
            # limit on bound parameters.
            rows = await _all(
                db,
                f"""
                SELECT record FROM bookings
                WHERE organizer IN ({", ".join("?" * len(who))})
                  AND status IN ('requested', 'confirmed')
                  AND start_us < ? AND end_us > ?
                ORDER BY start_us, id
                """,  # noqa: S608 - only placeholders are formatted in
                (*who, _to_us(end), _to_us(start)),
            )
        return [codec.loads(row["record"], Booking) for row in rows]

    # -- no double booking --------------------------------------------------------------

    async def acquire_hold(
        self,
        organizer: str,
        start: datetime,
        end: datetime,
        hold_id: str,
        ttl: float,
        *,
        ignore_booking: str | None = None,
    ) -> bool:
        start_us, end_us = _to_us(start), _to_us(end)
        now = _now()
        now_us = _to_us(now)
        async with self._writing() as db:
            await db.execute("DELETE FROM holds WHERE expires_us <= ?", (now_us,))
            held = await _one(
                db,
                """
                SELECT 1 FROM holds
                WHERE organizer = ? AND start_us < ? AND end_us > ? AND expires_us > ?
                  AND id != ?
                LIMIT 1
                """,
                (organizer, end_us, start_us, now_us, hold_id),
            )
            if held is not None:
                return False
            booked = await _one(
                db,
                """
                SELECT 1 FROM bookings
                WHERE organizer = ? AND status IN ('requested', 'confirmed')
                  AND start_us < ? AND end_us > ? AND id IS NOT ?
                LIMIT 1
                """,
                (organizer, end_us, start_us, ignore_booking),
            )
            if booked is not None:
                return False
            await db.execute(
                "INSERT OR REPLACE INTO holds (id, organizer, start_us, end_us, expires_us) "
                "VALUES (?, ?, ?, ?, ?)",
                (hold_id, organizer, start_us, end_us, _after(now, ttl)),
            )
        return True

    async def release_hold(self, hold_id: str) -> None:
        async with self._writing() as db:
            await db.execute("DELETE FROM holds WHERE id = ?", (hold_id,))

    # -- idempotency --------------------------------------------------------------------

    async def begin_idempotent(
        self, caller: str, key: str, fingerprint: str, lease: float
    ) -> IdempotencyRecord | None:
        now = _now()
        now_us = _to_us(now)
        async with self._writing() as db:
            await db.execute("DELETE FROM idempotency WHERE expires_us <= ?", (now_us,))
            row = await _one(
                db, "SELECT * FROM idempotency WHERE caller = ? AND key = ?", (caller, key)
            )
            if row is not None:
                return _idempotency(row)
            await db.execute(
                "INSERT INTO idempotency (caller, key, fingerprint, state, response, expires_us) "
                "VALUES (?, ?, ?, ?, NULL, ?)",
                (caller, key, fingerprint, IdempotencyState.IN_FLIGHT.value, _after(now, lease)),
            )
        return None

    async def finish_idempotent(
        self, caller: str, key: str, response: StoredResponse, ttl: float
    ) -> None:
        # Only a claimed key is finished: when the marker is gone (its lease ran out
        # and it was purged) there is no fingerprint to bind the response to.
        expires_us = _after(_now(), ttl)
        async with self._writing() as db:
            await db.execute(
                "UPDATE idempotency SET state = ?, response = ?, expires_us = ? "
                "WHERE caller = ? AND key = ?",
                (IdempotencyState.DONE.value, codec.dumps(response), expires_us, caller, key),
            )

    async def abandon_idempotent(self, caller: str, key: str) -> None:
        async with self._writing() as db:
            await db.execute(
                "DELETE FROM idempotency WHERE caller = ? AND key = ? AND state = ?",
                (caller, key, IdempotencyState.IN_FLIGHT.value),
            )

    # -- outbox -------------------------------------------------------------------------

    async def enqueue_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        # A delivery id seen before is skipped: re-enqueueing the same message is a no-op.
        rows = [_delivery_params(delivery) for delivery in deliveries]
        if not rows:
            return
        async with self._writing() as db:
            await db.executemany(_INSERT_DELIVERY, rows)

    async def claim_deliveries(
        self, now: datetime, limit: int, owner: str, lease: float
    ) -> list[Delivery]:
        if limit <= 0:
            return []
        now_us = _to_us(now)
        async with self._writing() as db:
            # A group's head is its oldest pending delivery, due or not, leased or not:
            # a later message never overtakes an earlier one that is backing off.
            rows = await _all(
                db,
                """
                SELECT d.* FROM deliveries AS d
                WHERE d.status = 'pending' AND d.next_attempt_us <= ?
                  AND (d.lease_until_us IS NULL OR d.lease_until_us <= ?)
                  AND (d.booking_id IS NULL OR NOT EXISTS (
                        SELECT 1 FROM deliveries AS e
                        WHERE e.status = 'pending' AND e.url = d.url
                          AND e.booking_id = d.booking_id AND e.seq < d.seq))
                ORDER BY d.seq
                LIMIT ?
                """,
                (now_us, now_us, limit),
            )
            await db.executemany(
                "UPDATE deliveries SET lease_owner = ?, lease_until_us = ? WHERE seq = ?",
                [(owner, _after(now, lease), row["seq"]) for row in rows],
            )
        return [_delivery(row) for row in rows]

    async def update_delivery(self, delivery: Delivery) -> None:
        async with self._writing() as db:
            await db.execute(
                """
                UPDATE deliveries SET status = ?, attempts = ?, next_attempt_us = ?,
                    last_error = ?, updated_us = ?, lease_owner = NULL, lease_until_us = NULL
                WHERE id = ?
                """,
                (
                    delivery.status.value,
                    delivery.attempts,
                    _to_us(delivery.next_attempt_at),
                    delivery.last_error,
                    _to_us(delivery.updated_at),
                    delivery.id,
                ),
            )

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        async with self._reading() as db:
            row = await _one(db, "SELECT * FROM deliveries WHERE id = ?", (delivery_id,))
        return None if row is None else _delivery(row)

    async def list_deliveries(
        self, status: DeliveryStatus | None, limit: int, caller: str | None = None
    ) -> list[Delivery]:
        if limit <= 0:  # SQLite reads a negative LIMIT as "no limit"
            return []
        conditions, params = [], []
        if status is not None:
            conditions.append("status = ?")
            params.append(status.value)
        if caller is not None:
            conditions.append("caller = ?")
            params.append(caller)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        async with self._reading() as db:
            rows = await _all(
                db,
                f"SELECT * FROM deliveries {where} ORDER BY seq DESC LIMIT ?",  # noqa: S608
                (*params, limit),
            )
        return [_delivery(row) for row in rows]

    # -- subscriptions ------------------------------------------------------------------

    async def add_subscription(
        self, subscription: Subscription, limit: int | None = None
    ) -> tuple[Subscription, bool]:
        async with self._writing() as db:
            rows = await _all(
                db,
                "SELECT * FROM subscriptions WHERE caller = ? ORDER BY seq",
                (subscription.caller,),
            )
            for row in rows:
                existing = _subscription(row)
                if existing.same_as(subscription):
                    return existing, False
            if limit is not None and len(rows) >= limit:
                raise SubscriptionLimitReached(subscription.caller, limit)
            await db.execute(
                "INSERT INTO subscriptions (id, url, events, caller, created_us) "
                "VALUES (?, ?, ?, ?, ?)",
                (
                    subscription.id,
                    subscription.url,
                    json.dumps(list(subscription.events)),
                    subscription.caller,
                    _to_us(subscription.created_at),
                ),
            )
        return subscription, True

    async def list_subscriptions(self, caller: str | None = None) -> list[Subscription]:
        async with self._reading() as db:
            if caller is None:
                rows = await _all(db, "SELECT * FROM subscriptions ORDER BY seq")
            else:
                rows = await _all(
                    db, "SELECT * FROM subscriptions WHERE caller = ? ORDER BY seq", (caller,)
                )
        return [_subscription(row) for row in rows]

    async def delete_subscription(self, subscription_id: str) -> bool:
        async with self._writing() as db:
            cursor = await db.execute("DELETE FROM subscriptions WHERE id = ?", (subscription_id,))
            return cursor.rowcount > 0

    # -- asynchronous operations --------------------------------------------------------

    async def add_operation(self, operation: Operation) -> None:
        async with self._writing() as db:
            await db.execute(
                """
                INSERT INTO operations (id, type, status, caller, booking_id, request,
                    attempts, last_error, maybe_sent, next_attempt_us, created_us, updated_us,
                    request_id)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                (
                    operation.id,
                    operation.type.value,
                    operation.status.value,
                    operation.caller,
                    operation.booking_id,
                    operation.request,
                    operation.attempts,
                    operation.last_error,
                    int(operation.maybe_sent),
                    _to_us(operation.next_attempt_at),
                    _to_us(operation.created_at),
                    _to_us(operation.updated_at),
                    operation.request_id,
                ),
            )

    async def get_operation(self, operation_id: str) -> Operation | None:
        async with self._reading() as db:
            row = await _one(db, "SELECT * FROM operations WHERE id = ?", (operation_id,))
        return None if row is None else _operation(row)

    async def claim_operations(
        self, now: datetime, limit: int, owner: str, lease: float
    ) -> list[Operation]:
        if limit <= 0:
            return []
        now_us = _to_us(now)
        async with self._writing() as db:
            rows = await _all(
                db,
                """
                SELECT o.* FROM operations AS o
                WHERE o.status = 'pending' AND o.next_attempt_us <= ?
                  AND (o.lease_until_us IS NULL OR o.lease_until_us <= ?)
                  AND (o.booking_id IS NULL OR NOT EXISTS (
                        SELECT 1 FROM operations AS p
                        WHERE p.status = 'pending' AND p.booking_id = o.booking_id
                          AND p.seq < o.seq))
                ORDER BY o.seq
                LIMIT ?
                """,
                (now_us, now_us, limit),
            )
            await db.executemany(
                "UPDATE operations SET lease_owner = ?, lease_until_us = ? WHERE seq = ?",
                [(owner, _after(now, lease), row["seq"]) for row in rows],
            )
        return [_operation(row) for row in rows]

    async def update_operation(
        self, operation: Operation, deliveries: Sequence[Delivery] = ()
    ) -> None:
        async with self._writing() as db:
            await db.execute(
                """
                UPDATE operations SET type = ?, status = ?, caller = ?, booking_id = ?,
                    request = ?, attempts = ?, last_error = ?, maybe_sent = ?,
                    next_attempt_us = ?, updated_us = ?,
                    lease_owner = NULL, lease_until_us = NULL
                WHERE id = ?
                """,
                (
                    operation.type.value,
                    operation.status.value,
                    operation.caller,
                    operation.booking_id,
                    operation.request,
                    operation.attempts,
                    operation.last_error,
                    int(operation.maybe_sent),
                    _to_us(operation.next_attempt_at),
                    _to_us(operation.updated_at),
                    operation.id,
                ),
            )
            if deliveries:
                await db.executemany(
                    _INSERT_DELIVERY, [_delivery_params(delivery) for delivery in deliveries]
                )

    # -- planned (the protocol's new methods; implemented next) -------------------------

    async def list_bookings(
        self,
        *,
        caller: str | None,
        organizer: str | None = None,
        statuses: Collection[BookingStatus] | None = None,
        start_from: datetime | None = None,
        start_to: datetime | None = None,
        after: tuple[datetime, str] | None = None,
        limit: int = 50,
    ) -> BookingPage:
        raise NotImplementedError

    async def add_unresolved(self, record: UnresolvedCreate) -> bool:
        raise NotImplementedError

    async def get_unresolved(self, record_id: str) -> UnresolvedCreate | None:
        raise NotImplementedError

    async def claim_unresolved(
        self, now: datetime, limit: int, owner: str, lease: float
    ) -> list[UnresolvedCreate]:
        raise NotImplementedError

    async def update_unresolved(self, record: UnresolvedCreate) -> None:
        raise NotImplementedError

    async def finish_unresolved(
        self,
        record_id: str,
        *,
        booking: Booking | None = None,
        expected_version: int | None = None,
        deliveries: Sequence[Delivery] = (),
        response: StoredResponse | None = None,
    ) -> bool:
        raise NotImplementedError

    async def claim_resync(
        self, now: datetime, limit: int, owner: str, interval: float
    ) -> list[Booking]:
        raise NotImplementedError

    async def purge_finished(self, before: datetime) -> int:
        cutoff = _to_us(before)
        async with self._writing() as db:
            deliveries = await db.execute(
                "DELETE FROM deliveries WHERE status IN (?, ?) AND updated_us < ?",
                (DeliveryStatus.DELIVERED.value, DeliveryStatus.FAILED.value, cutoff),
            )
            operations = await db.execute(
                "DELETE FROM operations WHERE status IN (?, ?) AND updated_us < ?",
                (OperationStatus.SUCCEEDED.value, OperationStatus.FAILED.value, cutoff),
            )
            return deliveries.rowcount + operations.rowcount

    async def pending_counts(self) -> tuple[int, int]:
        async with self._reading() as db:
            row = await _one(
                db,
                """
                SELECT (SELECT COUNT(*) FROM deliveries WHERE status = 'pending'),
                       (SELECT COUNT(*) FROM operations WHERE status = 'pending')
                """,
            )
        assert row is not None
        return int(row[0]), int(row[1])


async def _all(
    db: aiosqlite.Connection, sql: str, params: Sequence[object] = ()
) -> list[sqlite3.Row]:
    return list(await db.execute_fetchall(sql, params))


async def _one(
    db: aiosqlite.Connection, sql: str, params: Sequence[object] = ()
) -> sqlite3.Row | None:
    rows = await _all(db, sql, params)
    return rows[0] if rows else None


if TYPE_CHECKING:
    # Lets mypy check that SQLiteStore implements every method of the Store protocol.
    def _implements_store(store: SQLiteStore) -> Store:
        return store

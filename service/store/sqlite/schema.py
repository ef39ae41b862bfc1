"""The SQLite schema: the migrations that build it, applied in order by user_version."""

from __future__ import annotations

from typing import Final

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
        # The owner and the case-folded organizer as columns, for the listing indexes; rows
        # from before take them from their record (no caller there: unowned).
        "ALTER TABLE bookings ADD COLUMN caller TEXT",
        "ALTER TABLE bookings ADD COLUMN organizer_key TEXT NOT NULL DEFAULT ''",
        "UPDATE bookings SET caller = json_extract(record, '$.caller'), "
        "organizer_key = lower(organizer)",
        # Keyset paging on (start, id): for admins, per owner, per organizer.
        "CREATE INDEX bookings_by_start ON bookings (start_us, id)",
        "CREATE INDEX bookings_by_caller ON bookings (caller, start_us, id)",
        "CREATE INDEX bookings_by_organizer ON bookings (organizer_key, start_us, id)",
        # When a booking was last handed out for a resync: 0 never, RESYNC_RETIRED once it
        # ended. The partial index repeats the active statuses, as bookings_active does.
        "ALTER TABLE bookings ADD COLUMN resync_us INTEGER NOT NULL DEFAULT 0",
        """
        CREATE INDEX bookings_resync ON bookings (resync_us, id)
        WHERE status IN ('requested', 'confirmed')
        """,
        "ALTER TABLE deliveries ADD COLUMN trace_context TEXT",
        "ALTER TABLE operations ADD COLUMN trace_context TEXT",
        # Creates whose outcome is unknown; a queue like the others (see queue.py), whose
        # finished rows are deleted.
        """
        CREATE TABLE unresolved (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            id TEXT NOT NULL UNIQUE,
            caller TEXT NOT NULL,
            command TEXT NOT NULL,
            idempotency_key TEXT,
            hold_id TEXT NOT NULL,
            organizer TEXT NOT NULL,
            start_us INTEGER NOT NULL,
            end_us INTEGER NOT NULL,
            deadline_us INTEGER NOT NULL,
            next_attempt_us INTEGER NOT NULL,
            attempts INTEGER NOT NULL,
            last_error TEXT,
            created_us INTEGER NOT NULL,
            updated_us INTEGER NOT NULL,
            request_id TEXT,
            trace_context TEXT,
            lease_owner TEXT,
            lease_until_us INTEGER
        )
        """,
    ),
)

# An instant after every real one: the expiry of a hold tied to an unresolved create,
# and the resync mark of a booking that ended.
NEVER_US: Final = 2**62
RESYNC_RETIRED: Final = NEVER_US

"""The one claim/lease routine of the SQLite store, for every queue it keeps.

A queue is a table with `seq` (its order), `next_attempt_us` (when a row is due),
`lease_owner` and `lease_until_us`. A claim takes the due rows whose lease is free,
oldest first, and leases them; within a group (rows sharing the group columns, none
of them NULL) only the oldest live row is eligible, due or not, leased or not, so a
later item never overtakes an earlier one that is backing off.
"""

from __future__ import annotations

import sqlite3
from datetime import datetime
from typing import Final

import aiosqlite
import attrs

from service.store import codec
from service.store.sqlite.connection import fetch_all


@attrs.frozen
class Queue:
    table: str
    # SQL condition on the alias `{a}` for rows still in the queue.
    live: str
    # Columns that make a group; () for a queue whose items are independent.
    group_by: tuple[str, ...] = ()

    def claim_sql(self) -> str:
        in_order = ""
        if self.group_by:
            ungrouped = " OR ".join(f"q.{column} IS NULL" for column in self.group_by)
            same = " AND ".join(f"e.{column} = q.{column}" for column in self.group_by)
            in_order = f"""
                AND ({ungrouped} OR NOT EXISTS (
                    SELECT 1 FROM {self.table} AS e
                    WHERE {self.live.format(a="e")} AND {same} AND e.seq < q.seq))"""  # noqa: S608
        return f"""
            SELECT q.* FROM {self.table} AS q
            WHERE {self.live.format(a="q")} AND q.next_attempt_us <= ?
              AND (q.lease_until_us IS NULL OR q.lease_until_us <= ?){in_order}
            ORDER BY q.seq
            LIMIT ?
        """  # noqa: S608 - only the queue's own constant names are formatted in


DELIVERIES: Final = Queue("deliveries", "{a}.status = 'pending'", ("url", "booking_id"))
OPERATIONS: Final = Queue("operations", "{a}.status = 'pending'", ("booking_id",))
# Finished records are deleted, so every row is live.
UNRESOLVED: Final = Queue("unresolved", "1")

_CLAIM_SQL: Final = {
    queue.table: queue.claim_sql() for queue in (DELIVERIES, OPERATIONS, UNRESOLVED)
}


async def claim(
    db: aiosqlite.Connection,
    queue: Queue,
    now: datetime,
    limit: int,
    owner: str,
    lease: float,
) -> list[sqlite3.Row]:
    """Claim up to `limit` due rows of `queue` for `owner` for `lease` seconds; inside a
    write transaction."""
    if limit <= 0:
        return []
    now_us = codec.to_us(now)
    found = await fetch_all(db, _CLAIM_SQL[queue.table], (now_us, now_us, limit))
    await db.executemany(
        f"UPDATE {queue.table} SET lease_owner = ?, lease_until_us = ? WHERE seq = ?",  # noqa: S608
        [(owner, codec.after_us(now, lease), row["seq"]) for row in found],
    )
    return found

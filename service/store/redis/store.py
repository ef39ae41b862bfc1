"""The shared Store backend: one Redis that every gateway replica talks to.

Every check-then-write step (idempotency keys, holds, version checks with their
side effects, claims) is one Lua script, so it runs atomically on the Redis server
however many replicas call it at once.

Key layout (`P` is the prefix, `booking-gateway:` by default; instants are integer
microseconds since the Unix epoch, UTC, as in the SQLite backend):

    P schema                       string the version of this layout (migrate.py)
    P booking:<id>                 hash   version, organizer, start, end, status, record (JSON),
                                          caller, organizer_key, list_key
    P bookings:active:<organizer>  zset   active booking ids scored by their start
    P bookings:longest:<organizer> string the longest booking's duration ever stored
    P bookings:marks               hash   organizer -> mark of the last write of one of
                                          their bookings (booking_marks)
    P bookings:mark-seq            string the counter in those marks
    P bookings:by-start:<status>   zset   list keys of the bookings of that status, and
    P bookings:by-caller:<status>:<caller>        of that owner's,
    P bookings:by-organizer:<status>:<organizer_key>  of that organizer's: a list key is
                                          "<start>:<id>" with a fixed-width start, all
                                          scored 0, so a set sorts by (start, id)
    P bookings:resync              zset   active booking ids scored by their last resync
                                          hand-out (0 = never); ended ones leave it
    P hold:<hold_id>               hash   organizer, start, end, pinned; expires with the
                                          hold, never while pinned (an unresolved create's)
    P holds:<organizer>            zset   hold ids scored by expiry (Redis clock, ms; +inf
                                          pinned)
    P idempotency:<n>:<caller>:<key>  hash  fingerprint, state, response, expires_at;
                                          expires with the lease, then with the ttl
                                          (<n> is the caller's length)
    P delivery:<id>                hash   the delivery's fields + seq, group, lease_until,
                                          lease_owner
    P deliveries:seq               string the last sequence number given out
    P deliveries:all               zset   every delivery id scored by seq
    P deliveries:status:<status>   zset   delivery ids of that status scored by seq
    P deliveries:group:<group>     zset   pending ids of one (url, booking_id) scored by seq
    P deliveries:waiting           zset   claimable-later ids scored by when they may be
                                          claimed (next attempt, or end of their lease)
    P deliveries:ready             zset   claimable ids scored by seq
    P operation:<id>, P operations:*      the same for operations; the group is the booking_id
    P unresolved-create:<id>, P unresolved:*   the same for unresolved creates, without
                                          groups; a finished record is deleted
    P subscriptions                hash   subscription id -> JSON
    P subscriptions:order          zset   subscription ids scored by seq
    P subscriptions:caller:<caller> zset  one caller's subscription ids scored by seq
    P subscriptions:identity       hash   subscription id -> its URL and set of events
    P subscriptions:seq            string
    P cache:slots:<hash>           string a participant's free windows (JSON), shared by
                                          the replicas' slot caches; expires with the TTL
    (An Idempotency-Key's create also keeps `P idempotency:<n>:<caller>:<key>\nmaybe-sent`
    while it may have reached Vyte.)

Only the head (lowest seq) of a group is ever in `waiting` or `ready`; an item with
no group always is while it is pending. A claim moves the ids of `waiting` whose time
has come into `ready`, then takes the lowest seqs of `ready`, and puts them back in
`waiting` until their lease ends: the work done is proportional to what became due
and what is claimed, not to the size of the backlog.

Holds and idempotency markers expire on the Redis clock (PEXPIRE, TIME); claims
compare with the `now` their caller passes, as in the SQLite backend. The scripts
build key names at run time, so this needs a single Redis (or a Sentinel-managed
primary), not Redis Cluster; Redis >= 5 (scripts replicated by effect).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from service.store.redis.bookings import Bookings
from service.store.redis.keys import Keys
from service.store.redis.queues import Queues
from service.store.redis.unresolved import Unresolved

if TYPE_CHECKING:
    from service.store.base import Store


class RedisStore(Bookings, Unresolved, Keys, Queues):
    """Store shared by all replicas through one Redis; open it with `await RedisStore.open(url)`."""


if TYPE_CHECKING:
    # Lets mypy check that RedisStore implements every method of the Store protocol.
    def _implements_store(store: RedisStore) -> Store:
        return store

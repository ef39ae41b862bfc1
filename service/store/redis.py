"""The shared Store backend: one Redis that every gateway replica talks to.

Every check-then-write step (idempotency keys, holds, version checks with their
side effects, claims) is one Lua script, so it runs atomically on the Redis server
however many replicas call it at once.

Key layout (`P` is the prefix, `booking-gateway:` by default; instants are integer
microseconds since the Unix epoch, UTC, as in the SQLite backend):

    P booking:<id>                 hash   version, organizer, start, end, status, record (JSON)
    P bookings:active:<organizer>  zset   active booking ids scored by their start
    P bookings:longest:<organizer> string the longest booking's duration ever stored
    P hold:<hold_id>               hash   organizer, start, end; expires with the hold
    P holds:<organizer>            zset   hold ids scored by expiry (Redis clock, ms)
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
    P subscriptions                hash   subscription id -> JSON
    P subscriptions:order          zset   subscription ids scored by seq
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

import json
import math
from collections.abc import AsyncIterator, Collection, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, cast

from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript

from service.domain.booking import Booking
from service.store import codec
from service.store.base import (
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
)
from service.store.tls import share_tls_context

if TYPE_CHECKING:
    from service.store.base import Store

URL_SCHEMES: Final = ("redis://", "rediss://")
DEFAULT_PREFIX: Final = "booking-gateway:"
# Seconds. A command that gets no answer within the socket timeout fails with
# StoreUnavailable; every script here is short, so a slow answer means a sick Redis.
DEFAULT_SOCKET_TIMEOUT: Final = 2.0
DEFAULT_CONNECT_TIMEOUT: Final = 1.0
# Seconds a pooled connection may sit idle before it is PINGed on its next use.
DEFAULT_HEALTH_CHECK_INTERVAL: Final = 30
# Connections per process; a request waits up to the socket timeout for a free one.
DEFAULT_MAX_CONNECTIONS: Final = 64
# Records one purge script looks at, so no single script blocks Redis for long.
_PURGE_BATCH: Final = 500

# Redis error replies that say the server cannot serve now, not that the request is
# wrong: the ones redis-py has classes for, then the codes of the others.
_TRANSIENT_ERRORS: Final = (
    redis_errors.OutOfMemoryError,  # maxmemory reached under noeviction
    redis_errors.ReadOnlyError,  # a replica, e.g. just after a failover
    redis_errors.TryAgainError,
    redis_errors.ClusterDownError,  # and MasterDownError
)
_TRANSIENT_REPLIES: Final = frozenset({"BUSY", "MISCONF", "NOREPLICAS"})

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)

# -- Lua ---------------------------------------------------------------------------------------
#
# Every script gets the key prefix as ARGV[1] and reads the rest of ARGV in order
# with arg(). Numbers travel as decimal strings and are written back with num():
# redis.call would print a Lua number with 14 significant digits, too few for
# microseconds since the epoch.

_LIBRARY: Final = """
local P = ARGV[1]
local argn = 1
local function arg()
  argn = argn + 1
  return ARGV[argn]
end
local function args(count)
  local out = {}
  for i = 1, count do out[i] = arg() end
  return out
end
local function num(value)
  return string.format('%.0f', value)
end
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The given field of the organizer's active bookings that overlap [start, finish).
-- None is longer than `longest`, so only those starting less than that before
-- `start` can reach into the range: the scan stays proportional to the answer.
local function overlapping(organizer, start, finish, field)
  local longest = tonumber(redis.call('GET', P .. 'bookings:longest:' .. organizer) or '0')
  local out = {}
  local ids = redis.call('ZRANGEBYSCORE', P .. 'bookings:active:' .. organizer,
                         '(' .. num(start - longest), '(' .. num(finish))
  for _, id in ipairs(ids) do
    local f = redis.call('HMGET', P .. 'booking:' .. id, 'end', field)
    if f[1] and tonumber(f[1]) > start then out[#out + 1] = f[2] end
  end
  return out
end

local function release_hold(id)
  local key = P .. 'hold:' .. id
  local organizer = redis.call('HGET', key, 'organizer')
  if organizer then redis.call('ZREM', P .. 'holds:' .. organizer, id) end
  redis.call('DEL', key)
end

-- Queues (deliveries, operations): Q is the index prefix, R the record prefix.
local PENDING = 'pending'

local function available_at(R, id)
  local f = redis.call('HMGET', R .. id, 'next_attempt_at', 'lease_until')
  local at = tonumber(f[1])
  if f[2] and tonumber(f[2]) > at then at = tonumber(f[2]) end
  return at
end

local function make_eligible(Q, R, id)
  redis.call('ZADD', Q .. 'waiting', num(available_at(R, id)), id)
end

local function make_ineligible(Q, id)
  redis.call('ZREM', Q .. 'waiting', id)
  redis.call('ZREM', Q .. 'ready', id)
end

local function is_eligible(Q, id)
  return redis.call('ZSCORE', Q .. 'waiting', id) or redis.call('ZSCORE', Q .. 'ready', id)
end

-- After a group changed, only its oldest pending item may be claimable. Items join a
-- group at the end or, going back to pending, at their old place: the only one that
-- can have lost the head position is the one right behind the new head.
local function refresh_group(Q, R, group)
  local head = redis.call('ZRANGE', Q .. 'group:' .. group, 0, 1)
  if head[2] then make_ineligible(Q, head[2]) end
  if head[1] and not is_eligible(Q, head[1]) then make_eligible(Q, R, head[1]) end
end

local function enter_queue(Q, R, id, seq, group)
  if group == '' then
    make_eligible(Q, R, id)
  else
    redis.call('ZADD', Q .. 'group:' .. group, seq, id)
    refresh_group(Q, R, group)
  end
end

-- Reads from ARGV: id, group, count, then count field/value strings.
local function insert(Q, R)
  local id, group = arg(), arg()
  local fields = args(tonumber(arg()))
  local key = R .. id
  if redis.call('EXISTS', key) == 1 then return 0 end
  local seq = num(redis.call('INCR', Q .. 'seq'))
  redis.call('HSET', key, 'seq', seq, 'group', group, unpack(fields))
  local status = redis.call('HGET', key, 'status')
  redis.call('ZADD', Q .. 'all', seq, id)
  redis.call('ZADD', Q .. 'status:' .. status, seq, id)
  if status == PENDING then enter_queue(Q, R, id, seq, group) end
  return 1
end

-- Reads from ARGV: id, regroup ('1' or '0'), group, count, field/value strings,
-- count, names of fields to delete. The claim is dropped.
local function update(Q, R)
  local id, regroup, new_group = arg(), arg(), arg()
  local fields = args(tonumber(arg()))
  local gone = args(tonumber(arg()))
  local key = R .. id
  local old = redis.call('HMGET', key, 'seq', 'status', 'group')
  local seq, old_status, old_group = old[1], old[2], old[3]
  if not seq then return 0 end
  if regroup ~= '1' then new_group = old_group end
  make_ineligible(Q, id)
  if old_group ~= '' then redis.call('ZREM', Q .. 'group:' .. old_group, id) end
  redis.call('ZREM', Q .. 'status:' .. old_status, id)
  redis.call('HDEL', key, 'lease_until', 'lease_owner', unpack(gone))
  redis.call('HSET', key, 'group', new_group, unpack(fields))
  local status = redis.call('HGET', key, 'status')
  redis.call('ZADD', Q .. 'status:' .. status, seq, id)
  if status == PENDING then enter_queue(Q, R, id, seq, new_group) end
  if old_group ~= '' then refresh_group(Q, R, old_group) end
  return 1
end

-- Reads from ARGV: now, limit, owner, lease_until.
local function claim(Q, R)
  local now, limit, owner, lease_until = arg(), tonumber(arg()), arg(), arg()
  local now_value = tonumber(now)
  for _, id in ipairs(redis.call('ZRANGEBYSCORE', Q .. 'waiting', '-inf', now)) do
    redis.call('ZREM', Q .. 'waiting', id)
    local seq = redis.call('HGET', R .. id, 'seq')
    -- A record that vanished (deleted by hand, evicted) only leaves the index.
    if seq then redis.call('ZADD', Q .. 'ready', seq, id) end
  end
  local out = {}
  -- `ready` can hold items that are not available at this `now` when another
  -- replica's clock runs ahead: they are skipped (left in place) here.
  local skipped = 0
  while #out < limit do
    local batch = redis.call('ZRANGE', Q .. 'ready', skipped, skipped + limit - #out - 1)
    if #batch == 0 then break end
    for _, id in ipairs(batch) do
      if redis.call('EXISTS', R .. id) == 0 then
        redis.call('ZREM', Q .. 'ready', id)
      elseif available_at(R, id) <= now_value then
        redis.call('HSET', R .. id, 'lease_until', lease_until, 'lease_owner', owner)
        redis.call('ZREM', Q .. 'ready', id)
        redis.call('ZADD', Q .. 'waiting', lease_until, id)
        out[#out + 1] = redis.call('HGETALL', R .. id)
      else
        skipped = skipped + 1
      end
    end
  end
  return out
end

-- Reads from ARGV: index name, limit, caller ('' for any). Newest first.
local function list(Q, R)
  local index, limit, caller = arg(), tonumber(arg()), arg()
  local out = {}
  local offset = 0
  while #out < limit do
    local ids = redis.call('ZREVRANGE', Q .. index, offset, offset + 99)
    if #ids == 0 then break end
    for _, id in ipairs(ids) do
      if caller == '' or redis.call('HGET', R .. id, 'caller') == caller then
        out[#out + 1] = redis.call('HGETALL', R .. id)
        if #out == limit then break end
      end
    end
    offset = offset + 100
  end
  return out
end

local function queue(name)
  if name == 'deliveries' then return P .. 'deliveries:', P .. 'delivery:' end
  return P .. 'operations:', P .. 'operation:'
end
"""

# ARGV: prefix, organizer, start, end, hold id, ttl (ms). 1 held (or renewed), 0 refused.
_ACQUIRE_HOLD: Final = """
local organizer, start, finish, id, ttl = arg(), arg(), arg(), arg(), arg()
local start_value, finish_value = tonumber(start), tonumber(finish)
local now = now_ms()
local holds = P .. 'holds:' .. organizer
redis.call('ZREMRANGEBYSCORE', holds, '-inf', num(now))
for _, other in ipairs(redis.call('ZRANGE', holds, 0, -1)) do
  local span = redis.call('HMGET', P .. 'hold:' .. other, 'start', 'end')
  if other ~= id and span[1] and tonumber(span[1]) < finish_value
     and tonumber(span[2]) > start_value then
    return 0
  end
end
if #overlapping(organizer, start_value, finish_value, 'version') > 0 then return 0 end
local key = P .. 'hold:' .. id
release_hold(id)
redis.call('HSET', key, 'organizer', organizer, 'start', start, 'end', finish)
redis.call('PEXPIRE', key, ttl)
redis.call('ZADD', holds, num(now + tonumber(ttl)), id)
if redis.call('PTTL', holds) < tonumber(ttl) then redis.call('PEXPIRE', holds, ttl) end
return 1
"""

# ARGV: prefix, hold id.
_RELEASE_HOLD: Final = """
release_hold(arg())
return 1
"""

# ARGV: prefix, id, expected version ('' = absent), version, organizer, start, end,
# status, active ('1'/'0'), record, hold to release ('' = none), count, deliveries.
_PUT_BOOKING: Final = """
local id, expected, version, organizer = arg(), arg(), arg(), arg()
local start, finish, status, active, record, hold = arg(), arg(), arg(), arg(), arg(), arg()
local key = P .. 'booking:' .. id
local stored = redis.call('HMGET', key, 'version', 'organizer')
if (stored[1] or '') ~= expected then return 0 end
if stored[2] then redis.call('ZREM', P .. 'bookings:active:' .. stored[2], id) end
redis.call('HSET', key, 'version', version, 'organizer', organizer, 'start', start,
           'end', finish, 'status', status, 'record', record)
if active == '1' then
  redis.call('ZADD', P .. 'bookings:active:' .. organizer, start, id)
  local longest = P .. 'bookings:longest:' .. organizer
  local length = tonumber(finish) - tonumber(start)
  if length > tonumber(redis.call('GET', longest) or '0') then
    redis.call('SET', longest, num(length))
  end
end
if hold ~= '' then release_hold(hold) end
local Q, R = queue('deliveries')
for _ = 1, tonumber(arg()) do insert(Q, R) end
return 1
"""

# ARGV: prefix, organizer, start, end. The records of overlapping active bookings.
_ACTIVE_BOOKINGS: Final = """
local start, finish = tonumber(arg()), tonumber(arg())
local out = {}
for i = argn + 1, #ARGV do
  for _, record in ipairs(overlapping(ARGV[i], start, finish, 'record')) do
    out[#out + 1] = record
  end
end
return out
"""

# KEYS: the record. ARGV: prefix, fingerprint, lease (ms).
# nil when claimed now, else [fingerprint, state, response, expires_at].
_BEGIN_IDEMPOTENT: Final = """
local found = redis.call('HMGET', KEYS[1], 'fingerprint', 'state', 'response', 'expires_at')
if found[1] then return found end
local fingerprint, lease = arg(), arg()
redis.call('HSET', KEYS[1], 'fingerprint', fingerprint, 'state', 'in_flight',
           'expires_at', num(now_ms() + tonumber(lease)))
redis.call('PEXPIRE', KEYS[1], lease)
return nil
"""

# KEYS: the record. ARGV: prefix, response, ttl (ms). Only a claimed key is finished:
# when the marker is gone there is no fingerprint to bind the response to.
_FINISH_IDEMPOTENT: Final = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local response, ttl = arg(), arg()
redis.call('HSET', KEYS[1], 'state', 'done', 'response', response,
           'expires_at', num(now_ms() + tonumber(ttl)))
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
"""

# KEYS: the record. Only an in-flight marker is forgotten, never a kept answer.
_ABANDON_IDEMPOTENT: Final = """
if redis.call('HGET', KEYS[1], 'state') == 'in_flight' then redis.call('DEL', KEYS[1]) end
return 1
"""

# ARGV: prefix, queue, count, records. How many were new.
_INSERT: Final = """
local Q, R = queue(arg())
local added = 0
for _ = 1, tonumber(arg()) do added = added + insert(Q, R) end
return added
"""

# ARGV: prefix, queue, then what update() reads.
_UPDATE: Final = """
local Q, R = queue(arg())
return update(Q, R)
"""

# ARGV: prefix, what update() reads for an operation, a count, then what insert() reads
# for each delivery: the operation's new state and its webhooks in one step.
_UPDATE_ANNOUNCED: Final = """
local Q, R = queue('operations')
local updated = update(Q, R)
local DQ, DR = queue('deliveries')
for _ = 1, tonumber(arg()) do insert(DQ, DR) end
return updated
"""

# ARGV: prefix, queue, then what claim() reads.
_CLAIM: Final = """
local Q, R = queue(arg())
return claim(Q, R)
"""

# ARGV: prefix, queue, then what list() reads.
_LIST: Final = """
local Q, R = queue(arg())
return list(Q, R)
"""

# ARGV: prefix, queue, status, cutoff (us), offset, limit. Finished records of that status
# changed before the cutoff go, walking the status index oldest first from `offset`.
# Returns {removed, kept (older but changed since), done}: the walk stops at the first
# record created after the cutoff, as every later one was too.
_PURGE: Final = """
local Q, R = queue(arg())
local status, cutoff, offset, limit = arg(), tonumber(arg()), tonumber(arg()), tonumber(arg())
local index = Q .. 'status:' .. status
local ids = redis.call('ZRANGE', index, offset, offset + limit - 1)
local removed, kept, done = 0, 0, 0
if #ids < limit then done = 1 end
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', R .. id, 'created_at', 'updated_at')
  if f[2] and tonumber(f[2]) >= cutoff then
    if tonumber(f[1]) >= cutoff then
      done = 1
      break
    end
    kept = kept + 1
  else
    redis.call('DEL', R .. id)
    redis.call('ZREM', index, id)
    redis.call('ZREM', Q .. 'all', id)
    removed = removed + 1
  end
end
return {removed, kept, done}
"""

# ARGV: prefix, id, JSON. 1 added, 0 the id is taken.
_ADD_SUBSCRIPTION: Final = """
local id, record = arg(), arg()
if redis.call('HSETNX', P .. 'subscriptions', id, record) == 0 then return 0 end
local seq = num(redis.call('INCR', P .. 'subscriptions:seq'))
redis.call('ZADD', P .. 'subscriptions:order', seq, id)
return 1
"""

# ARGV: prefix.
_LIST_SUBSCRIPTIONS: Final = """
local out = {}
for i, id in ipairs(redis.call('ZRANGE', P .. 'subscriptions:order', 0, -1)) do
  out[i] = redis.call('HGET', P .. 'subscriptions', id)
end
return out
"""

# ARGV: prefix, id.
_DELETE_SUBSCRIPTION: Final = """
local id = arg()
redis.call('ZREM', P .. 'subscriptions:order', id)
return redis.call('HDEL', P .. 'subscriptions', id)
"""


# -- conversions ------------------------------------------------------------------------------


def _to_us(moment: datetime) -> int:
    return (codec.as_utc(moment) - _EPOCH) // _MICROSECOND


def _from_us(value: str) -> datetime:
    return _EPOCH + timedelta(microseconds=int(value))


def _after(moment: datetime, seconds: float) -> int:
    return _to_us(moment + timedelta(seconds=seconds))


def _ms(seconds: float) -> int:
    """A duration for PEXPIRE: whole milliseconds, at least one."""
    return max(1, math.ceil(seconds * 1000))


def _pairs(values: dict[str, str | None]) -> tuple[list[str], list[str]]:
    """Field/value strings to set, and the names of fields to delete (None values)."""
    fields: list[str] = []
    gone: list[str] = []
    for name, value in values.items():
        if value is None:
            gone.append(name)
        else:
            fields += (name, value)
    return fields, gone


def _insert_args(record_id: str, group: str, values: dict[str, str | None]) -> list[str]:
    """What the Lua insert() reads: a new record has no field for a None value."""
    fields, _ = _pairs(values)
    return [record_id, group, str(len(fields)), *fields]


def _update_args(record_id: str, group: str | None, values: dict[str, str | None]) -> list[str]:
    """What the Lua update() reads; group None keeps the record in its group."""
    fields, gone = _pairs(values)
    regroup = ["0", ""] if group is None else ["1", group]
    return [record_id, *regroup, str(len(fields)), *fields, str(len(gone)), *gone]


def _hash(flat: Sequence[str]) -> dict[str, str]:
    items = iter(flat)
    return dict(zip(items, items, strict=True))


def _delivery_group(delivery: Delivery) -> str:
    """One booking's messages to one URL; '' for a delivery that has no order to keep."""
    if delivery.booking_id is None:
        return ""
    return json.dumps([delivery.url, delivery.booking_id], ensure_ascii=False)


def _operation_group(operation: Operation) -> str:
    if operation.booking_id is None:
        return ""
    return json.dumps(operation.booking_id, ensure_ascii=False)


def _delivery_insert_args(delivery: Delivery) -> list[str]:
    values: dict[str, str | None] = {
        "id": delivery.id,
        "event_type": delivery.event_type,
        "url": delivery.url,
        "payload": delivery.payload,
        "booking_id": delivery.booking_id,
        "status": delivery.status.value,
        "attempts": str(delivery.attempts),
        "next_attempt_at": str(_to_us(delivery.next_attempt_at)),
        "last_error": delivery.last_error,
        "created_at": str(_to_us(delivery.created_at)),
        "updated_at": str(_to_us(delivery.updated_at)),
        "request_id": delivery.request_id,
        "caller": delivery.caller,
    }
    return _insert_args(delivery.id, _delivery_group(delivery), values)


def _deliveries_args(deliveries: Sequence[Delivery]) -> list[str]:
    """What a script's insert loop reads: the count, then each delivery's insert()."""
    args = [str(len(deliveries))]
    for delivery in deliveries:
        args += _delivery_insert_args(delivery)
    return args


def _delivery(f: dict[str, str]) -> Delivery:
    return Delivery(
        id=f["id"],
        event_type=f["event_type"],
        url=f["url"],
        payload=f["payload"],
        booking_id=f.get("booking_id"),
        status=DeliveryStatus(f["status"]),
        attempts=int(f["attempts"]),
        next_attempt_at=_from_us(f["next_attempt_at"]),
        last_error=f.get("last_error"),
        created_at=_from_us(f["created_at"]),
        updated_at=_from_us(f["updated_at"]),
        request_id=f.get("request_id"),
        caller=f.get("caller"),
    )


def _operation_values(operation: Operation) -> dict[str, str | None]:
    return {
        "type": operation.type.value,
        "status": operation.status.value,
        "caller": operation.caller,
        "booking_id": operation.booking_id,
        "request": operation.request,
        "attempts": str(operation.attempts),
        "last_error": operation.last_error,
        "maybe_sent": "1" if operation.maybe_sent else "0",
        "next_attempt_at": str(_to_us(operation.next_attempt_at)),
        "updated_at": str(_to_us(operation.updated_at)),
    }


def _operation(f: dict[str, str]) -> Operation:
    return Operation(
        id=f["id"],
        type=OperationType(f["type"]),
        status=OperationStatus(f["status"]),
        caller=f["caller"],
        booking_id=f.get("booking_id"),
        request=f["request"],
        attempts=int(f["attempts"]),
        last_error=f.get("last_error"),
        maybe_sent=f["maybe_sent"] == "1",
        next_attempt_at=_from_us(f["next_attempt_at"]),
        created_at=_from_us(f["created_at"]),
        updated_at=_from_us(f["updated_at"]),
        request_id=f.get("request_id"),
    )


def _is_transient(err: redis_errors.ResponseError) -> bool:
    return isinstance(err, _TRANSIENT_ERRORS) or str(err).split(" ", 1)[0] in _TRANSIENT_REPLIES


class RedisStore:
    """Store shared by all replicas through one Redis; open it with `await RedisStore.open(url)`."""

    def __init__(self, client: Redis, prefix: str = DEFAULT_PREFIX) -> None:
        self._client: Redis | None = client
        self.prefix = prefix
        script = client.register_script
        library = _LIBRARY
        self._acquire_hold = script(library + _ACQUIRE_HOLD)
        self._release_hold = script(library + _RELEASE_HOLD)
        self._put_booking = script(library + _PUT_BOOKING)
        self._active_bookings = script(library + _ACTIVE_BOOKINGS)
        self._begin_idempotent = script(library + _BEGIN_IDEMPOTENT)
        self._finish_idempotent = script(library + _FINISH_IDEMPOTENT)
        self._abandon_idempotent = script(library + _ABANDON_IDEMPOTENT)
        self._insert = script(library + _INSERT)
        self._update = script(library + _UPDATE)
        self._update_announced = script(library + _UPDATE_ANNOUNCED)
        self._claim = script(library + _CLAIM)
        self._list = script(library + _LIST)
        self._purge = script(library + _PURGE)
        self._add_subscription = script(library + _ADD_SUBSCRIPTION)
        self._list_subscriptions = script(library + _LIST_SUBSCRIPTIONS)
        self._delete_subscription = script(library + _DELETE_SUBSCRIPTION)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        prefix: str = DEFAULT_PREFIX,
        socket_timeout: float = DEFAULT_SOCKET_TIMEOUT,
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        health_check_interval: int = DEFAULT_HEALTH_CHECK_INTERVAL,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> RedisStore:
        """Connect to `redis://host:port/db` (or `rediss://…`: TLS, with redis-py's `ssl_*`
        options in the query) and check that Redis answers."""
        # The URL may carry a password: it never goes into a message.
        if not url.startswith(URL_SCHEMES) or url in URL_SCHEMES:
            raise ValueError("not a redis://host:port/db or rediss://host:port/db URL")
        pool = BlockingConnectionPool.from_url(
            url,
            decode_responses=True,
            socket_timeout=socket_timeout,
            socket_connect_timeout=connect_timeout,
            health_check_interval=health_check_interval,
            # No retries: a command whose answer was lost may have run, and running
            # a script twice is not harmless (a replayed claim of an idempotency key
            # would find its own marker). A dead Redis fails the call at once; the
            # pool reconnects on the next one.
            retry=Retry(NoBackoff(), 0),
            max_connections=max_connections,
            timeout=socket_timeout,
            client_name="booking-gateway",
            # RESP2: with RESP3 redis-py turns on "maintenance notifications" (a Redis
            # Enterprise feature), which stops the pool from noticing connections the
            # server closed; after a Redis restart the first call would fail.
            protocol=2,
        )
        share_tls_context(pool)
        store = cls(Redis(connection_pool=pool), prefix)
        try:
            await store.ping()
        except BaseException:
            await store.close()
            raise
        return store

    # -- plumbing -----------------------------------------------------------------------

    @asynccontextmanager
    async def _redis(self) -> AsyncIterator[Redis]:
        if self._client is None:
            raise StoreUnavailable("the store is closed")
        try:
            yield self._client
        except (redis_errors.ConnectionError, redis_errors.TimeoutError, OSError) as err:
            raise StoreUnavailable(f"redis: {err}") from err
        except redis_errors.ResponseError as err:
            if _is_transient(err):
                raise StoreUnavailable(f"redis: {err}") from err
            raise

    async def _run(self, script: AsyncScript, args: Sequence[str | int], key: str = "") -> Any:
        async with self._redis() as client:
            return await script(keys=[key] if key else [], args=[self.prefix, *args], client=client)

    async def _fields(self, key: str) -> dict[str, str]:
        async with self._redis() as client:
            # decode_responses=True: every field and value comes back as str.
            return cast(dict[str, str], await client.hgetall(key))

    async def ping(self) -> None:
        async with self._redis() as client:
            await client.ping()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose(close_connection_pool=True)

    # -- bookings -----------------------------------------------------------------------

    async def get_booking(self, booking_id: str) -> Booking | None:
        async with self._redis() as client:
            record = await client.hget(f"{self.prefix}booking:{booking_id}", "record")
        return None if record is None else codec.loads(record, Booking)

    async def put_booking(
        self,
        booking: Booking,
        *,
        expected_version: int | None,
        release_hold: str | None = None,
        deliveries: Sequence[Delivery] = (),
    ) -> bool:
        args = [
            booking.id,
            "" if expected_version is None else str(expected_version),
            str(booking.version),
            booking.organizer,
            str(_to_us(booking.start)),
            str(_to_us(booking.end)),
            booking.status.value,
            "1" if booking.active else "0",
            codec.dumps(booking),
            "" if release_hold is None else release_hold,
            *_deliveries_args(deliveries),
        ]
        return bool(await self._run(self._put_booking, args))

    async def active_bookings(
        self, organizers: Collection[str], start: datetime, end: datetime
    ) -> list[Booking]:
        who = sorted(set(organizers))
        if not who:
            return []
        records: list[str] = await self._run(
            self._active_bookings, [str(_to_us(start)), str(_to_us(end)), *who]
        )
        bookings = [codec.loads(record, Booking) for record in records]
        return sorted(bookings, key=lambda booking: (booking.start, booking.id))

    # -- no double booking --------------------------------------------------------------

    async def acquire_hold(
        self, organizer: str, start: datetime, end: datetime, hold_id: str, ttl: float
    ) -> bool:
        outcome = await self._run(
            self._acquire_hold,
            [organizer, str(_to_us(start)), str(_to_us(end)), hold_id, str(_ms(ttl))],
        )
        return bool(outcome)

    async def release_hold(self, hold_id: str) -> None:
        await self._run(self._release_hold, [hold_id])

    # -- idempotency --------------------------------------------------------------------

    def _idempotency_key(self, caller: str, key: str) -> str:
        # The caller's length keeps ("a:b", "c") and ("a", "b:c") apart.
        return f"{self.prefix}idempotency:{len(caller)}:{caller}:{key}"

    async def begin_idempotent(
        self, caller: str, key: str, fingerprint: str, lease: float
    ) -> IdempotencyRecord | None:
        found: list[str | None] | None = await self._run(
            self._begin_idempotent,
            [fingerprint, str(_ms(lease))],
            key=self._idempotency_key(caller, key),
        )
        if found is None:
            return None
        stored_fingerprint, state, response, expires_ms = found
        assert stored_fingerprint is not None and state is not None and expires_ms is not None
        return IdempotencyRecord(
            caller=caller,
            key=key,
            fingerprint=stored_fingerprint,
            state=IdempotencyState(state),
            response=None if response is None else codec.loads(response, StoredResponse),
            expires_at=_EPOCH + timedelta(milliseconds=int(expires_ms)),
        )

    async def finish_idempotent(
        self, caller: str, key: str, response: StoredResponse, ttl: float
    ) -> None:
        await self._run(
            self._finish_idempotent,
            [codec.dumps(response), str(_ms(ttl))],
            key=self._idempotency_key(caller, key),
        )

    async def abandon_idempotent(self, caller: str, key: str) -> None:
        await self._run(self._abandon_idempotent, [], key=self._idempotency_key(caller, key))

    # -- outbox -------------------------------------------------------------------------

    async def enqueue_deliveries(self, deliveries: Sequence[Delivery]) -> None:
        # A delivery id seen before is skipped: re-enqueueing the same message is a no-op.
        if not deliveries:
            return
        await self._run(self._insert, ["deliveries", *_deliveries_args(deliveries)])

    async def claim_deliveries(
        self, now: datetime, limit: int, owner: str, lease: float
    ) -> list[Delivery]:
        if limit <= 0:
            return []
        claimed: list[list[str]] = await self._run(
            self._claim,
            ["deliveries", str(_to_us(now)), str(limit), owner, str(_after(now, lease))],
        )
        return [_delivery(_hash(flat)) for flat in claimed]

    async def update_delivery(self, delivery: Delivery) -> None:
        # As in SQLite, an attempt's outcome changes these fields only; the message
        # itself (url, payload, booking) and so its group stay as enqueued.
        values: dict[str, str | None] = {
            "status": delivery.status.value,
            "attempts": str(delivery.attempts),
            "next_attempt_at": str(_to_us(delivery.next_attempt_at)),
            "last_error": delivery.last_error,
            "updated_at": str(_to_us(delivery.updated_at)),
        }
        await self._run(self._update, ["deliveries", *_update_args(delivery.id, None, values)])

    async def get_delivery(self, delivery_id: str) -> Delivery | None:
        fields = await self._fields(f"{self.prefix}delivery:{delivery_id}")
        return _delivery(fields) if fields else None

    async def list_deliveries(
        self, status: DeliveryStatus | None, limit: int, caller: str | None = None
    ) -> list[Delivery]:
        if limit <= 0:
            return []
        index = "all" if status is None else f"status:{status.value}"
        found: list[list[str]] = await self._run(
            self._list, ["deliveries", index, str(limit), caller or ""]
        )
        return [_delivery(_hash(flat)) for flat in found]

    # -- subscriptions ------------------------------------------------------------------

    async def add_subscription(self, subscription: Subscription) -> None:
        added = await self._run(
            self._add_subscription, [subscription.id, codec.dumps(subscription)]
        )
        if not added:
            raise ValueError(f"subscription {subscription.id!r} already exists")

    async def list_subscriptions(self) -> list[Subscription]:
        records: list[str | None] = await self._run(self._list_subscriptions, [])
        return [codec.loads(record, Subscription) for record in records if record is not None]

    async def delete_subscription(self, subscription_id: str) -> bool:
        return bool(await self._run(self._delete_subscription, [subscription_id]))

    # -- asynchronous operations --------------------------------------------------------

    async def add_operation(self, operation: Operation) -> None:
        values = _operation_values(operation)
        values["id"] = operation.id
        values["created_at"] = str(_to_us(operation.created_at))
        values["request_id"] = operation.request_id
        args = _insert_args(operation.id, _operation_group(operation), values)
        added = await self._run(self._insert, ["operations", "1", *args])
        if not added:
            raise ValueError(f"operation {operation.id!r} already exists")

    async def get_operation(self, operation_id: str) -> Operation | None:
        fields = await self._fields(f"{self.prefix}operation:{operation_id}")
        return _operation(fields) if fields else None

    async def claim_operations(
        self, now: datetime, limit: int, owner: str, lease: float
    ) -> list[Operation]:
        if limit <= 0:
            return []
        claimed: list[list[str]] = await self._run(
            self._claim,
            ["operations", str(_to_us(now)), str(limit), owner, str(_after(now, lease))],
        )
        return [_operation(_hash(flat)) for flat in claimed]

    async def update_operation(
        self, operation: Operation, deliveries: Sequence[Delivery] = ()
    ) -> None:
        # An operation learns its booking_id once created, which moves it into that
        # booking's group.
        args = _update_args(operation.id, _operation_group(operation), _operation_values(operation))
        if not deliveries:
            await self._run(self._update, ["operations", *args])
            return
        await self._run(self._update_announced, [*args, *_deliveries_args(deliveries)])

    async def purge_finished(self, before: datetime) -> int:
        cutoff = str(_to_us(before))
        finished = (
            ("deliveries", (DeliveryStatus.DELIVERED, DeliveryStatus.FAILED)),
            ("operations", (OperationStatus.SUCCEEDED, OperationStatus.FAILED)),
        )
        total = 0
        for kind, statuses in finished:
            for status in statuses:
                offset, done = 0, False
                while not done:
                    removed, kept, finished_walk = await self._run(
                        self._purge, [kind, status.value, cutoff, offset, _PURGE_BATCH]
                    )
                    total += int(removed)
                    offset += int(kept)
                    done = bool(finished_walk)
        return total

    # -- shared slot cache ------------------------------------------------------------

    async def cache_get(self, key: str) -> tuple[str, float] | None:
        async with self._redis() as client, client.pipeline(transaction=True) as pipe:
            pipe.get(f"{self.prefix}cache:{key}")
            pipe.pttl(f"{self.prefix}cache:{key}")
            value, left_ms = await pipe.execute()
        if value is None or left_ms <= 0:
            return None
        return cast(str, value), left_ms / 1000

    async def cache_set(self, key: str, value: str, ttl: float) -> None:
        async with self._redis() as client:
            await client.set(f"{self.prefix}cache:{key}", value, px=_ms(ttl))

    async def pending_counts(self) -> tuple[int, int]:
        async with self._redis() as client, client.pipeline(transaction=False) as pipe:
            pipe.zcard(f"{self.prefix}deliveries:status:{DeliveryStatus.PENDING.value}")
            pipe.zcard(f"{self.prefix}operations:status:{OperationStatus.PENDING.value}")
            deliveries, operations = await pipe.execute()
        return int(deliveries), int(operations)


if TYPE_CHECKING:
    # Lets mypy check that RedisStore implements every method of the Store protocol.
    def _implements_store(store: RedisStore) -> Store:
        return store

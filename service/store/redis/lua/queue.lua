-- Shared by every script: the queues (deliveries, operations, unresolved creates) and
-- their one claim. Q is a queue's index prefix, R its record prefix.
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

-- Take record `id` out of its queue and forget it.
local function remove(Q, R, id)
  local f = redis.call('HMGET', R .. id, 'status', 'group')
  if not f[1] then return 0 end
  make_ineligible(Q, id)
  redis.call('ZREM', Q .. 'status:' .. f[1], id)
  redis.call('ZREM', Q .. 'all', id)
  redis.call('DEL', R .. id)
  if f[2] and f[2] ~= '' then
    redis.call('ZREM', Q .. 'group:' .. f[2], id)
    refresh_group(Q, R, f[2])
  end
  return 1
end

local function queue(name)
  if name == 'deliveries' then return P .. 'deliveries:', P .. 'delivery:' end
  if name == 'unresolved' then return P .. 'unresolved:', P .. 'unresolved-create:' end
  return P .. 'operations:', P .. 'operation:'
end

-- Reads from ARGV: id, expected version ('' = absent), version, organizer, organizer key,
-- caller ('' = none), start, end, status, active ('1'/'0'), record, list key, then a
-- count and what insert() reads for each delivery. 1 written, 0 the version differs.
local function put_booking()
  local id, expected, version, organizer, organizer_key = arg(), arg(), arg(), arg(), arg()
  local caller, start, finish, status, active = arg(), arg(), arg(), arg(), arg()
  local record, list_key = arg(), arg()
  local key = P .. 'booking:' .. id
  local stored = redis.call('HMGET', key, 'version', 'organizer', 'status', 'caller',
                            'organizer_key', 'list_key')
  if (stored[1] or '') ~= expected then return 0 end
  -- A new mark for the organizer (and the one before, if it changed): see booking_marks().
  -- The clock and a counter, so no mark comes back even if the counter was lost.
  local t = redis.call('TIME')
  local mark = t[1] .. t[2] .. ':' .. redis.call('INCR', P .. 'bookings:mark-seq')
  redis.call('HSET', P .. 'bookings:marks', organizer, mark)
  if stored[2] then
    redis.call('ZREM', P .. 'bookings:active:' .. stored[2], id)
    redis.call('HSET', P .. 'bookings:marks', stored[2], mark)
  end
  if stored[6] then
    for _, index in ipairs(listings(stored[3], stored[4] or '', stored[5] or '')) do
      redis.call('ZREM', index, stored[6])
    end
  end
  redis.call('HSET', key, 'version', version, 'organizer', organizer, 'start', start,
             'end', finish, 'status', status, 'record', record, 'caller', caller,
             'organizer_key', organizer_key, 'list_key', list_key)
  for _, index in ipairs(listings(status, caller, organizer_key)) do
    redis.call('ZADD', index, 0, list_key)
  end
  if active == '1' then
    redis.call('ZADD', P .. 'bookings:active:' .. organizer, start, id)
    local longest = P .. 'bookings:longest:' .. organizer
    local length = tonumber(finish) - tonumber(start)
    if length > tonumber(redis.call('GET', longest) or '0') then
      redis.call('SET', longest, num(length))
    end
    -- Due for a resync at once if new (or back after it ended); else it keeps its turn.
    redis.call('ZADD', P .. 'bookings:resync', 'NX', 0, id)
  else
    redis.call('ZREM', P .. 'bookings:resync', id)
  end
  local DQ, DR = queue('deliveries')
  for _ = 1, tonumber(arg()) do insert(DQ, DR) end
  return 1
end

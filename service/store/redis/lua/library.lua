-- Shared by every script: argument reading, numbers, holds, bookings, idempotency.
-- Every script gets the key prefix as ARGV[1] and reads the rest of ARGV in order
-- with arg(). Numbers travel as decimal strings and are written back with num():
-- redis.call would print a Lua number with 14 significant digits, too few for
-- microseconds since the epoch.
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

-- The ids of the organizer's active bookings that overlap [start, finish).
-- None is longer than `longest`, so only those starting less than that before
-- `start` can reach into the range: the scan stays proportional to the answer.
local function overlapping(organizer, start, finish)
  local longest = tonumber(redis.call('GET', P .. 'bookings:longest:' .. organizer) or '0')
  local out = {}
  local ids = redis.call('ZRANGEBYSCORE', P .. 'bookings:active:' .. organizer,
                         '(' .. num(start - longest), '(' .. num(finish))
  for _, id in ipairs(ids) do
    local finish_at = redis.call('HGET', P .. 'booking:' .. id, 'end')
    if finish_at and tonumber(finish_at) > start then out[#out + 1] = id end
  end
  return out
end

local function release_hold(id)
  local key = P .. 'hold:' .. id
  local organizer = redis.call('HGET', key, 'organizer')
  if organizer then redis.call('ZREM', P .. 'holds:' .. organizer, id) end
  redis.call('DEL', key)
end

-- Whether [start, finish) of `organizer` is free for hold `id`: no other unexpired hold,
-- and no active booking but `ignored`, overlaps it. Lapsed holds are dropped on the way.
local function hold_is_free(organizer, start, finish, id, ignored)
  local start_value, finish_value = tonumber(start), tonumber(finish)
  local holds = P .. 'holds:' .. organizer
  redis.call('ZREMRANGEBYSCORE', holds, '-inf', num(now_ms()))
  for _, other in ipairs(redis.call('ZRANGE', holds, 0, -1)) do
    local span = redis.call('HMGET', P .. 'hold:' .. other, 'start', 'end')
    if other ~= id and span[1] and tonumber(span[1]) < finish_value
       and tonumber(span[2]) > start_value then
      return false
    end
  end
  for _, other in ipairs(overlapping(organizer, start_value, finish_value)) do
    if other ~= ignored then return false end
  end
  return true
end

-- Tie hold `id` to an unresolved create: it never lapses until released. The holds
-- index of its organizer then never expires either (lapsed entries leave it on use).
local function pin_hold(id)
  local key = P .. 'hold:' .. id
  local organizer = redis.call('HGET', key, 'organizer')
  if not organizer then return end
  redis.call('HSET', key, 'pinned', '1')
  redis.call('PERSIST', key)
  redis.call('ZADD', P .. 'holds:' .. organizer, '+inf', id)
  redis.call('PERSIST', P .. 'holds:' .. organizer)
end

-- (Re)write hold `id` for `ttl` ms, or tied (pinned) when `ttl` is nil. A hold that is
-- tied already stays tied.
local function take_hold(organizer, start, finish, id, ttl)
  local key = P .. 'hold:' .. id
  local pinned = redis.call('HGET', key, 'pinned') == '1'
  release_hold(id)
  redis.call('HSET', key, 'organizer', organizer, 'start', start, 'end', finish)
  if pinned or not ttl then
    pin_hold(id)
    return
  end
  local holds = P .. 'holds:' .. organizer
  redis.call('PEXPIRE', key, ttl)
  redis.call('ZADD', holds, num(now_ms() + tonumber(ttl)), id)
  -- The index lives as long as its longest hold, and for ever while one is tied.
  if redis.call('ZCOUNT', holds, '+inf', '+inf') == 0
     and redis.call('PTTL', holds) < tonumber(ttl) then
    redis.call('PEXPIRE', holds, ttl)
  end
end

-- The listing indexes (lexicographic sorted sets of `list_key`, "<start>:<id>") that
-- hold a booking of this status, owner ('' = none) and organizer key.
local function listings(status, caller, organizer_key)
  local keys = {P .. 'bookings:by-start:' .. status,
                P .. 'bookings:by-organizer:' .. status .. ':' .. organizer_key}
  if caller ~= '' then keys[3] = P .. 'bookings:by-caller:' .. status .. ':' .. caller end
  return keys
end

-- Keep the response for an Idempotency-Key record that is still there.
local function finish_idempotent(key, response, ttl)
  if redis.call('EXISTS', key) == 0 then return 0 end
  redis.call('HSET', key, 'state', 'done', 'response', response,
             'expires_at', num(now_ms() + tonumber(ttl)))
  redis.call('PEXPIRE', key, ttl)
  return 1
end

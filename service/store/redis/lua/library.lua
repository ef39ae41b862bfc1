-- Shared by every script: argument reading, numbers, holds and bookings.
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

-- ARGV: prefix, organizer, start, end, hold id, ttl (ms), booking to ignore ('' = none).
-- 1 held (or renewed), 0 refused.
local organizer, start, finish, id, ttl, ignored = arg(), arg(), arg(), arg(), arg(), arg()
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
for _, other in ipairs(overlapping(organizer, start_value, finish_value)) do
  if other ~= ignored then return 0 end
end
local key = P .. 'hold:' .. id
release_hold(id)
redis.call('HSET', key, 'organizer', organizer, 'start', start, 'end', finish)
redis.call('PEXPIRE', key, ttl)
redis.call('ZADD', holds, num(now + tonumber(ttl)), id)
if redis.call('PTTL', holds) < tonumber(ttl) then redis.call('PEXPIRE', holds, ttl) end
return 1

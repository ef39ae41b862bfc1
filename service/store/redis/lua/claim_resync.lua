-- ARGV: prefix, now (us), cutoff (us), limit. The records of up to `limit` active
-- bookings last handed out at or before the cutoff (0 = never), least recent first,
-- now handed out at `now`. One that ended, or is no longer active, leaves the index
-- (put_booking brings it back when it is written again).
local now, cutoff, limit = arg(), arg(), tonumber(arg())
local now_value = tonumber(now)
local index = P .. 'bookings:resync'
local out = {}
while #out < limit do
  local ids = redis.call('ZRANGEBYSCORE', index, '-inf', cutoff, 'LIMIT', 0, limit - #out)
  if #ids == 0 then break end
  for _, id in ipairs(ids) do
    local f = redis.call('HMGET', P .. 'booking:' .. id, 'end', 'status', 'record')
    local active = f[2] == 'requested' or f[2] == 'confirmed'
    if f[1] and active and tonumber(f[1]) > now_value then
      redis.call('ZADD', index, now, id)
      out[#out + 1] = f[3]
    else
      redis.call('ZREM', index, id)
    end
  end
end
return out

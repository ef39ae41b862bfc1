-- ARGV: prefix, id, expected version ('' = absent), version, organizer, start, end,
-- status, active ('1'/'0'), record, hold to release ('' = none), count, deliveries.
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

-- ARGV: prefix, id, JSON, caller, identity, limit ('' = none).
-- {1} added, {0, JSON} the caller's identical one, {2} at the limit, {3} the id is taken.
local id, record, caller, identity, limit = arg(), arg(), arg(), arg(), arg()
local mine = P .. 'subscriptions:caller:' .. caller
for _, other in ipairs(redis.call('ZRANGE', mine, 0, -1)) do
  if redis.call('HGET', P .. 'subscriptions:identity', other) == identity then
    return {0, redis.call('HGET', P .. 'subscriptions', other)}
  end
end
if limit ~= '' and redis.call('ZCARD', mine) >= tonumber(limit) then return {2} end
if redis.call('HSETNX', P .. 'subscriptions', id, record) == 0 then return {3} end
local seq = num(redis.call('INCR', P .. 'subscriptions:seq'))
redis.call('HSET', P .. 'subscriptions:identity', id, identity)
redis.call('ZADD', P .. 'subscriptions:order', seq, id)
redis.call('ZADD', mine, seq, id)
return {1}

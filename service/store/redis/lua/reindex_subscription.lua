-- ARGV: prefix, id, caller, identity. Adds a subscription written before the per-caller
-- index and the identity check to them. 1 indexed, 0 it is gone.
local id, caller, identity = arg(), arg(), arg()
local seq = redis.call('ZSCORE', P .. 'subscriptions:order', id)
if not seq or redis.call('HEXISTS', P .. 'subscriptions', id) == 0 then return 0 end
redis.call('ZADD', P .. 'subscriptions:caller:' .. caller, seq, id)
redis.call('HSET', P .. 'subscriptions:identity', id, identity)
return 1

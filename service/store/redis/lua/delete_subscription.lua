-- ARGV: prefix, id.
local id = arg()
local record = redis.call('HGET', P .. 'subscriptions', id)
if not record then return 0 end
local caller = cjson.decode(record)['caller']
redis.call('ZREM', P .. 'subscriptions:caller:' .. caller, id)
redis.call('ZREM', P .. 'subscriptions:order', id)
redis.call('HDEL', P .. 'subscriptions:identity', id)
return redis.call('HDEL', P .. 'subscriptions', id)

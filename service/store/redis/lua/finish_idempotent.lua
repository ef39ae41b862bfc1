-- KEYS: the record. ARGV: prefix, response, ttl (ms). Only a claimed key is finished:
-- when the marker is gone there is no fingerprint to bind the response to.
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local response, ttl = arg(), arg()
redis.call('HSET', KEYS[1], 'state', 'done', 'response', response,
           'expires_at', num(now_ms() + tonumber(ttl)))
redis.call('PEXPIRE', KEYS[1], ttl)
return 1

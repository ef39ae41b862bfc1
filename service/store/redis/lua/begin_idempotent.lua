-- KEYS: the record. ARGV: prefix, fingerprint, lease (ms).
-- nil when claimed now, else [fingerprint, state, response, expires_at].
local found = redis.call('HMGET', KEYS[1], 'fingerprint', 'state', 'response', 'expires_at')
if found[1] then return found end
local fingerprint, lease = arg(), arg()
redis.call('HSET', KEYS[1], 'fingerprint', fingerprint, 'state', 'in_flight',
           'expires_at', num(now_ms() + tonumber(lease)))
redis.call('PEXPIRE', KEYS[1], lease)
return nil

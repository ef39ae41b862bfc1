-- KEYS: the record. ARGV: prefix, response, ttl (ms). Only a claimed key is finished:
-- when the marker is gone there is no fingerprint to bind the response to.
local response, ttl = arg(), arg()
return finish_idempotent(KEYS[1], response, ttl)

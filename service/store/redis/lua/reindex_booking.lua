-- ARGV: prefix, id, version, organizer key, caller ('' = none), list key, active ('1'/'0').
-- Adds a booking written before the listing and resync indexes to them, unless it was
-- written again since (then that write indexed it). 1 indexed, 0 left as it was.
local id, version, organizer_key, caller, list_key, active = arg(), arg(), arg(), arg(),
                                                              arg(), arg()
local key = P .. 'booking:' .. id
local stored = redis.call('HMGET', key, 'version', 'list_key', 'status')
if stored[1] ~= version or stored[2] then return 0 end
redis.call('HSET', key, 'caller', caller, 'organizer_key', organizer_key, 'list_key', list_key)
for _, index in ipairs(listings(stored[3], caller, organizer_key)) do
  redis.call('ZADD', index, 0, list_key)
end
if active == '1' then redis.call('ZADD', P .. 'bookings:resync', 'NX', 0, id) end
return 1

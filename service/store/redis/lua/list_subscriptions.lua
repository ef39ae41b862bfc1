-- ARGV: prefix, caller ('' = every caller's).
local caller = arg()
local index = P .. 'subscriptions:order'
if caller ~= '' then index = P .. 'subscriptions:caller:' .. caller end
local out = {}
for i, id in ipairs(redis.call('ZRANGE', index, 0, -1)) do
  out[i] = redis.call('HGET', P .. 'subscriptions', id)
end
return out

-- ARGV: prefix, min, max (ZRANGEBYLEX bounds on list keys), limit, look-ahead budget,
-- a booking field to check ('' = none) and the value to keep, then the listing indexes
-- to merge (one per status).
-- {records, next} where next is the list key to go on after ('' = nothing follows).
-- Each round takes the next `limit + 1` keys of every index: the first `limit + 1` of
-- their merge are the next in order overall. At most `budget` keys that do not match
-- are looked at: then the page ends short, with where to go on.
local min, max, limit, budget = arg(), arg(), tonumber(arg()), tonumber(arg())
local field, wanted = arg(), arg()
local indexes = args(#ARGV - argn)
local batch = limit + 1
local out, skipped, last = {}, 0, ''
while true do
  local merged = {}
  for _, index in ipairs(indexes) do
    for _, key in ipairs(redis.call('ZRANGEBYLEX', index, min, max, 'LIMIT', 0, batch)) do
      merged[#merged + 1] = key
    end
  end
  if #merged == 0 then return {out, ''} end
  table.sort(merged)
  for i = 1, math.min(batch, #merged) do
    local list_key = merged[i]
    local f = redis.call('HMGET', P .. 'booking:' .. string.sub(list_key, 22),
                         'record', 'list_key', field == '' and 'record' or field)
    if f[1] and f[2] == list_key and (field == '' or f[3] == wanted) then
      if #out == limit then return {out, last} end
      out[#out + 1] = f[1]
      last = list_key
    else
      skipped = skipped + 1
      if skipped >= budget then return {out, list_key} end
    end
    min = '(' .. list_key
  end
end

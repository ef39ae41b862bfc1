-- ARGV: prefix, min, max (ZRANGEBYLEX bounds on list keys), limit, look-ahead budget,
-- caller to keep ('' = any), then the listing indexes to merge (one per status).
-- {records, next} where next is the list key to go on after ('' = nothing follows).
-- Each round takes the next `limit + 1` keys of every index: the first `limit + 1` of
-- their merge are the next in order overall. At most `budget` keys are looked at.
local min, max, limit, budget, wanted = arg(), arg(), tonumber(arg()), tonumber(arg()), arg()
local indexes = args(#ARGV - argn)
local batch = limit + 1
local out, examined, last = {}, 0, ''
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
                         'record', 'caller', 'list_key')
    if f[1] and f[3] == list_key and (wanted == '' or f[2] == wanted) then
      if #out == limit then return {out, last} end
      out[#out + 1] = f[1]
      last = list_key
    end
    min = '(' .. list_key
    examined = examined + 1
    if examined >= budget then return {out, list_key} end
  end
end

-- ARGV: prefix, queue, status, cutoff (us), offset, limit. Finished records of that status
-- changed before the cutoff go, walking the status index oldest first from `offset`.
-- Returns {removed, kept (older but changed since), done}: the walk stops at the first
-- record created after the cutoff, as every later one was too.
local Q, R = queue(arg())
local status, cutoff, offset, limit = arg(), tonumber(arg()), tonumber(arg()), tonumber(arg())
local index = Q .. 'status:' .. status
local ids = redis.call('ZRANGE', index, offset, offset + limit - 1)
local removed, kept, done = 0, 0, 0
if #ids < limit then done = 1 end
for _, id in ipairs(ids) do
  local f = redis.call('HMGET', R .. id, 'created_at', 'updated_at')
  if f[2] and tonumber(f[2]) >= cutoff then
    if tonumber(f[1]) >= cutoff then
      done = 1
      break
    end
    kept = kept + 1
  else
    redis.call('DEL', R .. id)
    redis.call('ZREM', index, id)
    redis.call('ZREM', Q .. 'all', id)
    removed = removed + 1
  end
end
return {removed, kept, done}

-- ARGV: prefix, record id, Idempotency-Key record ('' = none), response ('' = none),
-- its ttl (ms), found ('1' then what put_booking() reads, or '0').
-- 1 finished (booking written if found, hold released, record gone), 0 nothing changed.
local id, idempotency, response, ttl, found = arg(), arg(), arg(), arg(), arg()
local Q, R = queue('unresolved')
local hold = redis.call('HGET', R .. id, 'hold_id')
if not hold then return 0 end
if found == '1' then
  if put_booking() == 0 then return 0 end
  if idempotency ~= '' and response ~= '' then finish_idempotent(idempotency, response, ttl) end
end
release_hold(hold)
remove(Q, R, id)
return 1

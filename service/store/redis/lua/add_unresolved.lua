-- ARGV: prefix, hold id, organizer, start, end, then what insert() reads for the record.
-- 1 its hold is held (tied to it now), 0 the time went to another hold or booking.
local hold, organizer, start, finish = arg(), arg(), arg(), arg()
local held = 1
if redis.call('EXISTS', P .. 'hold:' .. hold) == 1 then
  pin_hold(hold)
elseif hold_is_free(organizer, start, finish, hold, '') then
  take_hold(organizer, start, finish, hold, nil)
else
  held = 0
end
local Q, R = queue('unresolved')
insert(Q, R)
return held

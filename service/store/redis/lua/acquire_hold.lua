-- ARGV: prefix, organizer, start, end, hold id, ttl (ms), booking to ignore ('' = none).
-- 1 held (or renewed), 0 refused.
local organizer, start, finish, id, ttl, ignored = arg(), arg(), arg(), arg(), arg(), arg()
if not hold_is_free(organizer, start, finish, id, ignored) then return 0 end
take_hold(organizer, start, finish, id, ttl)
return 1

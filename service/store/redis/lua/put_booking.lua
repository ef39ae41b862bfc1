-- ARGV: prefix, hold to release ('' = none), then what put_booking() reads.
local hold = arg()
if put_booking() == 0 then return 0 end
if hold ~= '' then release_hold(hold) end
return 1

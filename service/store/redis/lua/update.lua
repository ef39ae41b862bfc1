-- ARGV: prefix, queue, then what update() reads.
local Q, R = queue(arg())
return update(Q, R)

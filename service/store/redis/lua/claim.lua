-- ARGV: prefix, queue, then what claim() reads.
local Q, R = queue(arg())
return claim(Q, R)

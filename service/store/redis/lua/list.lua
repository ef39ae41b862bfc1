-- ARGV: prefix, queue, then what list() reads.
local Q, R = queue(arg())
return list(Q, R)

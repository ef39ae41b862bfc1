-- ARGV: prefix, queue, count, records. How many were new.
local Q, R = queue(arg())
local added = 0
for _ = 1, tonumber(arg()) do added = added + insert(Q, R) end
return added

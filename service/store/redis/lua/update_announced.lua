-- ARGV: prefix, what update() reads for an operation, a count, then what insert() reads
-- for each delivery: the operation's new state and its webhooks in one step.
local Q, R = queue('operations')
local updated = update(Q, R)
local DQ, DR = queue('deliveries')
for _ = 1, tonumber(arg()) do insert(DQ, DR) end
return updated

-- ARGV: prefix, organizer, start, end. The records of overlapping active bookings.
local start, finish = tonumber(arg()), tonumber(arg())
local out = {}
for i = argn + 1, #ARGV do
  for _, id in ipairs(overlapping(ARGV[i], start, finish)) do
    out[#out + 1] = redis.call('HGET', P .. 'booking:' .. id, 'record')
  end
end
return out

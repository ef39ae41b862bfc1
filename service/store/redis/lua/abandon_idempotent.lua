-- KEYS: the record. Only an in-flight marker is forgotten, never a kept answer.
if redis.call('HGET', KEYS[1], 'state') == 'in_flight' then redis.call('DEL', KEYS[1]) end
return 1

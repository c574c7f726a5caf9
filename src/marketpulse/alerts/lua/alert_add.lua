-- alert_add: store an alert condition unless the store is full.
-- KEYS[1] = alert conditions (hash)   KEYS[2] = the alert's state   KEYS[3] = version counter
-- ARGV[1] = alert id   ARGV[2] = its JSON   ARGV[3] = the most conditions allowed (0: no cap)
-- ARGV[4] = the initial armed flag ('0' for a crossing: it needs a false observation first)
-- ARGV[5] = '1' to reset the state of an existing alert (an edit: armed as new, and the next
--           observation applies whatever was applied before); '0' keeps it
-- returns 'ok' (stored or replaced) | 'full' (a new id past the cap: nothing changed)
local cap = tonumber(ARGV[3])
if cap > 0 and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0
    and redis.call('HLEN', KEYS[1]) >= cap then
  return 'full'
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if ARGV[5] == '1' then
  redis.call('HDEL', KEYS[2], 'obs')
  redis.call('HSET', KEYS[2], 'armed', ARGV[4])
else
  redis.call('HSETNX', KEYS[2], 'armed', ARGV[4])
end
redis.call('INCR', KEYS[3])
return 'ok'

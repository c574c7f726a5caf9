-- alert_add: store an alert condition unless the store is full.
-- KEYS[1] = alert conditions (hash)   KEYS[2] = the alert's state   KEYS[3] = version counter
-- ARGV[1] = alert id   ARGV[2] = its JSON   ARGV[3] = the most conditions allowed (0: no cap)
-- returns 'ok' (stored or replaced) | 'full' (a new id past the cap: nothing changed)
local cap = tonumber(ARGV[3])
if cap > 0 and redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0
    and redis.call('HLEN', KEYS[1]) >= cap then
  return 'full'
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('HSETNX', KEYS[2], 'armed', '1')
redis.call('INCR', KEYS[3])
return 'ok'

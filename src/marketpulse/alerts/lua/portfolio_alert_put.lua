-- portfolio_alert_put: store one portfolio alert of a session, with the session's TTL.
-- KEYS[1] = the session's hash (its PTTL; it must exist)   KEYS[2] = the session's portfolio
-- alerts (hash id -> JSON)   KEYS[3] = the alert's state   KEYS[4] = the session's track
-- ARGV[1] = alert id   ARGV[2] = its JSON   ARGV[3] = the most alerts per session (0: no cap)
-- ARGV[4] = '1' to reset an existing alert's state (an edit); '0' keeps it
-- returns 'ok' | 'full' (a new id past the cap: nothing changed) | 'gone' (no session)
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -2 then
  return 'gone'
end
local cap = tonumber(ARGV[3])
if cap > 0 and redis.call('HEXISTS', KEYS[2], ARGV[1]) == 0
    and redis.call('HLEN', KEYS[2]) >= cap then
  return 'full'
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if ARGV[4] == '1' then
  redis.call('DEL', KEYS[3])
end
redis.call('HSETNX', KEYS[3], 'armed', '1')
if ttl > 0 then
  for i = 2, #KEYS do
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
return 'ok'

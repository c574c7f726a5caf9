-- alert_transition: apply one observation to one alert's armed/fired state (edge-triggered).
-- The reference is rules.transition (Python): the two agree on every sequence (a property
-- test, tests/integration/test_alert_transition_lua.py), which the backtest relies on.
-- KEYS[1] = alert state hash (fields: armed '1'|'0', obs, fired_at, muted '1'|'0')
-- KEYS[2] = the delivery outbox stream; KEYS[3] = the history stream
-- ARGV[1] = observation key (integer: market tick or quote time in µs; only ever increases)
-- ARGV[2] = the condition at this observation: '1' true | '0' false beyond the re-arm margin
--           (re-arms) | 'm' false within the margin (changes nothing)
-- ARGV[3] = observation time (epoch seconds, market time)
-- ARGV[4] = cooldown in seconds
-- ARGV[5] = expiry (epoch seconds) or '' for none
-- ARGV[6] = the fired alert's JSON if this observation fires ('' when the condition is false)
-- ARGV[7] = its fire id; ARGV[8] = its symbol; ARGV[9] = outbox cap; ARGV[10] = history cap
-- ARGV[11] = '1' when a fire now is muted (the alert is snoozed): recorded, not delivered
-- returns 'fired' | 'suppressed' | 'expired' | 'rearmed' | 'unchanged' | 'duplicate' | 'gone'
-- Idempotent per observation: an observation at or before the stored one changes nothing, so
-- two instances applying the same observation fire at most once between them.
-- 'fired' adds the alert to the outbox (its deliveries, unless muted) and to the history in
-- this same step: a fire decided is a fire delivered (at least once) and recorded.
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 'gone'
end
local st = redis.call('HMGET', KEYS[1], 'armed', 'obs', 'fired_at')
local obs = tonumber(ARGV[1])
if st[2] and obs <= tonumber(st[2]) then
  return 'duplicate'
end
local armed = st[1] ~= '0'
local at = tonumber(ARGV[3])
if ARGV[2] == 'm' then
  redis.call('HSET', KEYS[1], 'obs', ARGV[1])
  return 'unchanged'
end
if ARGV[2] ~= '1' then
  redis.call('HSET', KEYS[1], 'armed', '1', 'obs', ARGV[1])
  if armed then
    return 'unchanged'
  end
  return 'rearmed'
end
if not armed then
  redis.call('HSET', KEYS[1], 'obs', ARGV[1])
  return 'unchanged'
end
if ARGV[5] ~= '' and at >= tonumber(ARGV[5]) then
  redis.call('HSET', KEYS[1], 'obs', ARGV[1])
  return 'expired'
end
if st[3] and at < tonumber(st[3]) + tonumber(ARGV[4]) then
  redis.call('HSET', KEYS[1], 'armed', '0', 'obs', ARGV[1])
  return 'suppressed'
end
local muted = ARGV[11] == '1'
redis.call('HSET', KEYS[1], 'armed', '0', 'obs', ARGV[1], 'fired_at', ARGV[3],
  'muted', muted and '1' or '0')
if not muted then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[9], '*', 'f', ARGV[7], 'alert', ARGV[6])
end
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[10], '*', 'symbol', ARGV[8], 'alert', ARGV[6])
return 'fired'

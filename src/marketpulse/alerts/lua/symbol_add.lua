-- symbol_add: monitor a symbol unless that many are monitored already.
-- KEYS[1] = monitored symbols (set)   KEYS[2] = chosen marker
-- ARGV[1] = the symbol (validated)   ARGV[2] = the most symbols allowed (0: no cap)
-- returns 1 (added) | 0 (already monitored) | -1 (a new symbol past the cap: nothing changed)
local cap = tonumber(ARGV[2])
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then
  redis.call('SET', KEYS[2], '1')
  return 0
end
if cap > 0 and redis.call('SCARD', KEYS[1]) >= cap then
  return -1
end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], '1')
return 1

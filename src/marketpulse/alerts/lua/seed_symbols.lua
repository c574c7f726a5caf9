-- seed_symbols: monitor the default watchlist unless the monitored symbols were ever chosen.
-- KEYS[1] = monitored symbols (set)   KEYS[2] = chosen marker
-- ARGV[1..n] = the watchlist (validated, at least one)
-- returns the number of symbols added: 0 when the marker existed or the set was not empty
-- (a set written before the marker existed); the marker is set either way.
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 0
end
redis.call('SET', KEYS[2], '1')
if redis.call('SCARD', KEYS[1]) > 0 then
  return 0
end
return redis.call('SADD', KEYS[1], unpack(ARGV))

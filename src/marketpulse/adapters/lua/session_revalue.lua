-- session_revalue: KEYS[1]=session KEYS[2]=events
--   ARGV[1]=tick ARGV[2]=expected_hv ARGV[3]=total_value ARGV[4]=prices_json ARGV[5]=valued_at
-- Not a client action: never touches the TTL (HSET keeps it) and never recreates a missing key.
-- The tick is a fence: a revaluation older than the stored one (a deposed leader) is refused.
-- returns 'gone' | 'old' | 'same' | basis_version | {'hv', hv, holdings_json}
local f = redis.call('HMGET', key, 'hv', 'tick', 'prices')
if not f[1] then return 'gone' end
if f[1] ~= ARGV[2] then return {'hv', f[1], redis.call('HGET', key, 'holdings')} end
if tonumber(f[2]) >= tonumber(ARGV[1]) then return 'old' end
if f[3] == ARGV[4] then
  redis.call('HSET', key, 'tick', ARGV[1])
  return 'same'
end
local v = redis.call('HINCRBY', key, 'version', 1)
local basis = redis.call('HINCRBY', key, 'basis_version', 1)
redis.call('HSET', key, 'tick', ARGV[1], 'total_value', ARGV[3], 'prices', ARGV[4], 'valued_at', ARGV[5])
publish(v, '{"type":"portfolio_update","total_value":' .. ARGV[3] .. ',"prices":' .. ARGV[4] ..
  ',"basis_version":' .. basis .. ',"timestamp":"' .. ARGV[5] .. '"}')
return basis

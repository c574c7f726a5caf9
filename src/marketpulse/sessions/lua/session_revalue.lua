-- session_revalue: KEYS[1]=session KEYS[2]=events
--   ARGV[1]=tick ARGV[2]=expected_hv ARGV[3]=total_value ARGV[4]=prices_json ARGV[5]=valued_at
-- Not a client action: never touches the TTL (HSET keeps it) and never recreates a missing key.
-- The tick is a fence: a revaluation older than the stored one (a deposed leader) is refused.
-- returns 'gone' | 'old' | 'same' | basis_version | {'hv', hv, holdings_json}
local f = redis.call('HMGET', key, 'hv', 'tick', 'prices', 'version', 'basis_version')
if not f[1] then return 'gone' end
if f[1] ~= ARGV[2] then return {'hv', f[1], redis.call('HGET', key, 'holdings')} end
if tonumber(f[2]) >= tonumber(ARGV[1]) then return 'old' end
if f[3] == ARGV[4] then
  redis.call('HSET', key, 'tick', ARGV[1])
  return 'same'
end
local v = f[4] + 1
local basis = f[5] + 1
redis.call('HSET', key, 'version', v, 'basis_version', basis, 'tick', ARGV[1], 'total_value', ARGV[3],
  'prices', ARGV[4], 'valued_at', ARGV[5])
publish(v, '{"type":"portfolio_update","total_value":' .. ARGV[3] .. ',"prices":' .. ARGV[4] ..
  ',"basis_version":' .. basis .. ',"timestamp":"' .. ARGV[5] .. '"}')
return basis

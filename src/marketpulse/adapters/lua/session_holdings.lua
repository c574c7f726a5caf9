-- session_holdings: KEYS[1]=session KEYS[2]=events
--   ARGV[1]=token_hash ARGV[2]=holdings_json ARGV[3]=total_value ARGV[4]=prices_json
--   ARGV[5]=now ARGV[6]=tick ARGV[7]=ttl
-- New holdings are a new basis: bumps basis_version (a running analysis restarts at its next
-- checked append) and announces it with a portfolio_update. returns basis_version | 'gone'
if not authorised(ARGV[1]) then return 'gone' end
local v = touch(ARGV[5], ARGV[7])
redis.call('HINCRBY', key, 'hv', 1)
local basis = redis.call('HINCRBY', key, 'basis_version', 1)
local stored_tick = tonumber(redis.call('HGET', key, 'tick') or '0')
local tick = math.max(stored_tick, tonumber(ARGV[6]))
redis.call('HSET', key, 'holdings', ARGV[2], 'total_value', ARGV[3], 'prices', ARGV[4],
  'valued_at', ARGV[5], 'tick', tick)
publish(v, '{"type":"portfolio_update","total_value":' .. ARGV[3] .. ',"prices":' .. ARGV[4] ..
  ',"basis_version":' .. basis .. ',"timestamp":"' .. ARGV[5] .. '"}')
return basis

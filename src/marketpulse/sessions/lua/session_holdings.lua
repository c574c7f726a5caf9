-- session_holdings: KEYS[1]=session KEYS[2]=events
--   ARGV[1]=token_hash ARGV[2]=holdings_json ARGV[3]=total_value ARGV[4]=prices_json
--   ARGV[5]=now ARGV[6]=tick ARGV[7]=ttl
-- New holdings are a new basis: bumps basis_version (a running analysis restarts at its next
-- checked append) and announces it with a portfolio_update. returns basis_version | 'gone'
local f = open(ARGV[1], 'hv', 'basis_version', 'tick')
if not f then return 'gone' end
local basis = f[4] + 1
local tick = math.max(tonumber(f[5] or '0'), tonumber(ARGV[6]))
local v = commit(f, ARGV[5], ARGV[7], 'hv', f[3] + 1, 'basis_version', basis, 'holdings', ARGV[2],
  'total_value', ARGV[3], 'prices', ARGV[4], 'valued_at', ARGV[5], 'tick', tick)
publish(v, '{"type":"portfolio_update","total_value":' .. ARGV[3] .. ',"prices":' .. ARGV[4] ..
  ',"basis_version":' .. basis .. ',"timestamp":"' .. ARGV[5] .. '"}')
return basis

-- session_holdings: KEYS[1]=session KEYS[2]=events
--   ARGV[1]=token_hash ARGV[2]=holdings_json ARGV[3]=total_value ARGV[4]=prices_json
--   ARGV[5]=now ARGV[6]=tick ARGV[7]=ttl ARGV[8]=base_currency ARGV[9]=currencies_json
--   ARGV[10]=fx_json ARGV[11]=flags_json ARGV[12]=expected holdings_json ('' any)
--   ARGV[13]=expected base_currency ('' any)
-- New holdings, or a new base currency, are a new basis: bumps basis_version (a running
-- analysis restarts at its next checked append) and hv (the sweep's cached holdings and
-- currencies are then refreshed), and announces it with a portfolio_update.
-- The valuation was computed for the expected holdings and base: if either moved meanwhile
-- (a concurrent change), nothing is written and the caller values again ('moved'), so neither
-- change is lost.
-- returns basis_version | 'gone' | 'moved'
local f = open(ARGV[1], 'hv', 'basis_version', 'tick', 'holdings', 'base_currency')
if not f then return 'gone' end
if (ARGV[12] ~= '' and f[6] ~= ARGV[12]) or (ARGV[13] ~= '' and (f[7] or 'USD') ~= ARGV[13]) then
  return 'moved'
end
local basis = f[4] + 1
local tick = math.max(tonumber(f[5] or '0'), tonumber(ARGV[6]))
local v = commit(f, ARGV[5], ARGV[7], 'hv', f[3] + 1, 'basis_version', basis, 'holdings', ARGV[2],
  'total_value', ARGV[3], 'prices', ARGV[4], 'valued_at', ARGV[5], 'tick', tick,
  'base_currency', ARGV[8], 'currencies', ARGV[9], 'fx', ARGV[10], 'flags', ARGV[11])
publish(v, portfolio_update(ARGV[3], ARGV[4], ARGV[10], ARGV[8], ARGV[11], basis, ARGV[5]))
return basis

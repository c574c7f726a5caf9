-- session_revalue: KEYS[1]=session KEYS[2]=events
--   ARGV[1]=tick ARGV[2]=expected_hv ARGV[3]=total_value ARGV[4]=prices_json ARGV[5]=valued_at
--   ARGV[6]=fx_json ARGV[7]=flags_json
-- Not a client action: never touches the TTL (HSET keeps it) and never recreates a missing key.
-- The tick is a fence: a revaluation older than the stored one (a deposed leader) is refused.
-- A moved price or rate is a new basis. An empty ARGV[3] keeps the last good valuation (a rate
-- was unavailable) and only sets the flags: a new version, the same basis.
-- returns 'gone' | 'old' | 'same' | basis_version | {'hv', hv, holdings_json, currencies_json,
--   base_currency}
local f = redis.call('HMGET', key, 'hv', 'tick', 'prices', 'version', 'basis_version', 'fx',
  'flags', 'total_value', 'base_currency')
if not f[1] then return 'gone' end
if f[1] ~= ARGV[2] then
  local h = redis.call('HMGET', key, 'holdings', 'currencies', 'base_currency')
  return {'hv', f[1], h[1], h[2] or '', h[3] or ''}
end
if tonumber(f[2]) >= tonumber(ARGV[1]) then return 'old' end
local flags = f[7] or '[]'
if ARGV[3] == '' then
  if flags == ARGV[7] then
    redis.call('HSET', key, 'tick', ARGV[1])
    return 'same'
  end
  local v = f[4] + 1
  redis.call('HSET', key, 'version', v, 'tick', ARGV[1], 'flags', ARGV[7])
  publish(v, portfolio_update(f[8], f[3], f[6] or '{}', f[9] or 'USD', ARGV[7], f[5], ARGV[5]))
  return tonumber(f[5])
end
if f[3] == ARGV[4] and f[6] == ARGV[6] and flags == ARGV[7] then
  redis.call('HSET', key, 'tick', ARGV[1])
  return 'same'
end
local v = f[4] + 1
local basis = f[5]
if f[3] ~= ARGV[4] or f[6] ~= ARGV[6] then basis = f[5] + 1 end
redis.call('HSET', key, 'version', v, 'basis_version', basis, 'tick', ARGV[1], 'total_value', ARGV[3],
  'prices', ARGV[4], 'valued_at', ARGV[5], 'fx', ARGV[6], 'flags', ARGV[7])
publish(v, portfolio_update(ARGV[3], ARGV[4], ARGV[6], f[9] or 'USD', ARGV[7], basis, ARGV[5]))
return tonumber(basis)

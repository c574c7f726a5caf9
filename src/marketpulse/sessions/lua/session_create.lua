-- session_create: KEYS[1]=session KEYS[2]=events
--   ARGV[1]=session_id ARGV[2]=token_hash ARGV[3]=holdings_json ARGV[4]=total_value
--   ARGV[5]=prices_json ARGV[6]=now ARGV[7]=tick ARGV[8]=ttl ARGV[9]=base_currency
--   ARGV[10]=currencies_json ARGV[11]=fx_json ARGV[12]=flags_json
-- returns 'ok' | 'exists'. Idempotent: the same request retried after a lost reply (same token
-- hash, same creation time) answers 'ok' again instead of 'exists'.
if redis.call('EXISTS', key) == 1 then
  local f = redis.call('HMGET', key, 'token', 'created_at')
  if f[1] == ARGV[2] and f[2] == ARGV[6] then return 'ok' end
  return 'exists'
end
redis.call('HSET', key,
  'session_id', ARGV[1], 'token', ARGV[2], 'holdings', ARGV[3], 'hv', 1,
  'total_value', ARGV[4], 'prices', ARGV[5], 'valued_at', ARGV[6], 'tick', ARGV[7],
  'last_activity', ARGV[6], 'created_at', ARGV[6], 'version', 1, 'basis_version', 1, 'rseq', 0,
  'base_currency', ARGV[9], 'currencies', ARGV[10], 'fx', ARGV[11], 'flags', ARGV[12])
redis.call('EXPIRE', key, ARGV[8])
return 'ok'

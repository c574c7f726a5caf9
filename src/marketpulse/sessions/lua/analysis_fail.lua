-- analysis_fail: KEYS[1]=session KEYS[2]=events  ARGV[1]=run_id ARGV[2]=reason
-- The run cannot produce its metrics (e.g. no price history): analysis_failed with the reason.
-- returns 'failed' | 'superseded' | 'gone'
local f = redis.call('HMGET', key, 'run_id', 'run_status', 'run_ticker', 'basis_version', 'version',
  'run_started', 'run_basis')
if not f[4] then return 'gone' end
if f[1] ~= ARGV[1] or f[2] ~= 'running' then return 'superseded' end
local v = f[5] + 1
redis.call('HSET', key, 'version', v, status_fields('failed', f[3], f[6], f[1], f[7]))
publish(v, '{"type":"analysis_failed","ticker":"' .. esc(f[3]) .. '","run_id":"' .. ARGV[1] ..
  '","reason":"' .. esc(ARGV[2]) .. '"}')
return 'failed'

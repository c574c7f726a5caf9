-- analysis_fail: KEYS[1]=session KEYS[2]=events  ARGV[1]=run_id ARGV[2]=reason
-- The run cannot produce its metrics (e.g. no price history): analysis_failed with the reason.
-- returns 'failed' | 'superseded' | 'gone'
local f = redis.call('HMGET', key, 'run_id', 'run_status', 'run_ticker', 'basis_version')
if not f[4] then return 'gone' end
if f[1] ~= ARGV[1] or f[2] ~= 'running' then return 'superseded' end
local v = redis.call('HINCRBY', key, 'version', 1)
set_status('failed')
publish(v, '{"type":"analysis_failed","ticker":"' .. esc(f[3]) .. '","run_id":"' .. ARGV[1] ..
  '","reason":"' .. esc(ARGV[2]) .. '"}')
return 'failed'

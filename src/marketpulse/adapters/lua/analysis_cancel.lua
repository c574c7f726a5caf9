-- analysis_cancel: KEYS[1]=session KEYS[2]=events  ARGV[1]=token_hash ARGV[2]=now ARGV[3]=ttl
-- returns the cancelled run_id | 'idle' | 'gone'
if not authorised(ARGV[1]) then return 'gone' end
local v = touch(ARGV[2], ARGV[3])
local f = redis.call('HMGET', key, 'run_status', 'run_ticker', 'run_id')
if f[1] ~= 'running' then return 'idle' end
set_status('cancelled')
publish(v, '{"type":"analysis_cancelled","ticker":"' .. esc(f[2]) .. '","run_id":"' .. f[3] ..
  '","reason":"cancelled"}')
return f[3]

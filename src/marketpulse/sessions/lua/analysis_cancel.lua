-- analysis_cancel: KEYS[1]=session KEYS[2]=events KEYS[3]=run stream
--   ARGV[1]=token_hash ARGV[2]=now ARGV[3]=ttl ARGV[4]=group
-- Cancels the running run; its stream entry is acknowledged in the same step (it has ended).
-- returns the cancelled run_id | 'idle' | 'gone'
local f = open(ARGV[1], 'run_status', 'run_ticker', 'run_id', 'run_started', 'run_basis', 'run_entry')
if not f then return 'gone' end
if f[3] ~= 'running' then
  commit(f, ARGV[2], ARGV[3])
  return 'idle'
end
if f[8] then redis.call('XACK', KEYS[3], ARGV[4], f[8]) end
local v = commit(f, ARGV[2], ARGV[3], status_fields('cancelled', f[4], f[6], f[5], f[7]))
publish(v, '{"type":"analysis_cancelled","ticker":"' .. esc(f[4]) .. '","run_id":"' .. f[5] ..
  '","reason":"cancelled"}')
return f[5]

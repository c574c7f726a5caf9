-- analysis_restart: KEYS[1]=session KEYS[2]=events KEYS[3]=run stream
--   ARGV[1]=old_run_id ARGV[2]=new_run_id ARGV[3]=max_restarts ARGV[4]=now ARGV[5]=reason
--   ARGV[6]=group ARGV[7]=stream maxlen ARGV[8]=session_id
-- The basis moved under a run: restart it pinned to the current basis (the new run is queued on
-- the run stream in this step, the old entry acknowledged), or fail it past the bound
-- (analysis_failed 'unstable_basis'), or fail it when the ticker is no longer held.
-- returns 'gone' | 'superseded' | 'failed' |
--   {'restarted', run_id, basis, '', holdings, prices, tick, fx, currencies, base}
local f = redis.call('HMGET', key, 'run_id', 'run_status', 'run_ticker', 'run_restarts',
  'basis_version', 'holdings', 'prices', 'tick', 'version', 'run_started', 'run_basis', 'run_entry', 'fx', 'currencies',
  'base_currency')
if not f[5] then return 'gone' end
if f[1] ~= ARGV[1] or f[2] ~= 'running' then return 'superseded' end
if f[12] then redis.call('XACK', KEYS[3], ARGV[6], f[12]) end
local v = f[9] + 1
local restarts = tonumber(f[4] or '0') + 1
local reason = nil
if not string.find(f[6], '"' .. f[3] .. '":', 1, true) then reason = 'not_in_portfolio'
elseif restarts > tonumber(ARGV[3]) then reason = 'unstable_basis' end
if reason then
  redis.call('HSET', key, 'version', v, status_fields('failed', f[3], f[10], f[1], f[11]))
  publish(v, '{"type":"analysis_failed","ticker":"' .. esc(f[3]) .. '","run_id":"' .. ARGV[1] ..
    '","reason":"' .. reason .. '"}')
  return 'failed'
end
local entry = enqueue(ARGV[7], ARGV[8], ARGV[2], f[3], false)
redis.call('HSET', key, 'version', v, 'run_id', ARGV[2], 'run_basis', f[5], 'run_done', '',
  'run_restarts', restarts, 'run_started', ARGV[4], 'run_entry', entry,
  status_fields('running', f[3], ARGV[4], ARGV[2], f[5]))
publish(v, '{"type":"analysis_restarted","ticker":"' .. esc(f[3]) .. '","run_id":"' .. ARGV[2] ..
  '","basis_version":' .. f[5] .. ',"reason":"' .. ARGV[5] .. '"}')
return {'restarted', ARGV[2], f[5], '', f[6], f[7], f[8], f[13] or '', f[14] or '', f[15] or ''}

-- analysis_restart: KEYS[1]=session KEYS[2]=events
--   ARGV[1]=old_run_id ARGV[2]=new_run_id ARGV[3]=max_restarts ARGV[4]=now ARGV[5]=reason
-- The basis moved under a run: restart it pinned to the current basis, or fail it past the bound
-- (analysis_failed 'unstable_basis'), or fail it when the ticker is no longer held.
-- returns 'gone' | 'superseded' | 'failed' | {'restarted', run_id, basis, '', holdings, prices, tick}
local f = redis.call('HMGET', key, 'run_id', 'run_status', 'run_ticker', 'run_restarts',
  'basis_version', 'holdings', 'prices', 'tick')
if not f[5] then return 'gone' end
if f[1] ~= ARGV[1] or f[2] ~= 'running' then return 'superseded' end
local v = redis.call('HINCRBY', key, 'version', 1)
local restarts = tonumber(f[4] or '0') + 1
local reason = nil
if not string.find(f[6], '"' .. f[3] .. '":', 1, true) then reason = 'not_in_portfolio'
elseif restarts > tonumber(ARGV[3]) then reason = 'unstable_basis' end
if reason then
  set_status('failed')
  publish(v, '{"type":"analysis_failed","ticker":"' .. esc(f[3]) .. '","run_id":"' .. ARGV[1] ..
    '","reason":"' .. reason .. '"}')
  return 'failed'
end
redis.call('HSET', key, 'run_id', ARGV[2], 'run_basis', f[5], 'run_done', '', 'run_restarts', restarts,
  'current_analysis', cur_json(f[3], ARGV[4], ARGV[2], f[5], 'running'), 'run_started', ARGV[4])
publish(v, '{"type":"analysis_restarted","ticker":"' .. esc(f[3]) .. '","run_id":"' .. ARGV[2] ..
  '","basis_version":' .. f[5] .. ',"reason":"' .. ARGV[5] .. '"}')
return {'restarted', ARGV[2], f[5], '', f[6], f[7], f[8]}

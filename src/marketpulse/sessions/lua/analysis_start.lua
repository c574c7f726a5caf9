-- analysis_start: KEYS[1]=session KEYS[2]=events KEYS[3]=run stream
--   ARGV[1]=token_hash ARGV[2]=ticker ARGV[3]=new_run_id ARGV[4]=now ARGV[5]=ttl
--   ARGV[6]=group ARGV[7]=reclaim_ms ARGV[8]=stream maxlen ARGV[9]=session_id
-- Makes the new run current and queues it on the run stream in the same step (no run is
-- current without being queued, nor queued without being current). Supersedes a running
-- analysis of another ticker (analysis_cancelled 'superseded'; its entry is acknowledged). For
-- the ticker already running: a no-op that re-announces the run if it is alive (see run_alive);
-- if its worker is gone, a fresh run at the current basis takes over (analysis_restarted
-- 'worker_lost'). Idempotent: a retry of a start that committed (its reply was lost) finds its
-- run id among the session's last RECENT started ones ('run_recent') and answers 'running'
-- with the current run, changing nothing, even if that run has ended or been superseded since
-- (starting it again under the same id would append its results twice, or undo the newer run).
-- returns 'gone' | 'not_held' | {'running'|'started'|'taken_over', run_id, basis,
--   superseded_run_id, holdings_json, prices_json, tick, fx_json, currencies_json, base}
local RECENT = 32
local f = open(ARGV[1], 'holdings', 'run_status', 'run_ticker', 'run_id', 'run_basis', 'run_started',
  'prices', 'tick', 'basis_version', 'run_entry', 'run_recent', 'fx', 'currencies', 'base_currency')
if not f then return 'gone' end
local holdings = f[3]
local recent = f[13] or ''
if string.find(recent, ' ' .. ARGV[3] .. ' ', 1, true) then
  return {'running', f[6], f[7], '', holdings, f[9], f[10], f[14] or '', f[15] or '', f[16] or ''}
end
local _, n_recent = string.gsub(recent, '%S+', '')
if n_recent >= RECENT then  -- forget the oldest: ' a  b  c ' -> '  b  c '
  recent = string.sub(recent, (string.find(recent, ' ', (string.find(recent, '%S')), true)))
end
recent = recent .. ' ' .. ARGV[3] .. ' '
if not string.find(holdings, '"' .. ARGV[2] .. '":', 1, true) then
  commit(f, ARGV[4], ARGV[5])
  return 'not_held'
end
local same = f[4] == 'running' and f[5] == ARGV[2]
if same and run_alive(ARGV[6], f[12], tonumber(ARGV[7])) then
  local v = commit(f, ARGV[4], ARGV[5])
  publish(v, '{"type":"analysis_started","ticker":"' .. esc(f[5]) .. '","run_id":"' .. f[6] ..
    '","basis_version":' .. f[7] .. ',"timestamp":"' .. f[8] .. '"}')
  return {'running', f[6], f[7], '', holdings, f[9], f[10], f[14] or '', f[15] or '', f[16] or ''}
end
if f[4] == 'running' and f[12] then redis.call('XACK', KEYS[3], ARGV[6], f[12]) end
local basis = f[11]
local entry = enqueue(ARGV[8], ARGV[9], ARGV[3], ARGV[2], false)
local v = commit(f, ARGV[4], ARGV[5], 'run_id', ARGV[3], 'run_ticker', ARGV[2], 'run_basis', basis,
  'run_started', ARGV[4], 'run_done', '', 'run_restarts', 0, 'run_entry', entry, 'run_recent', recent,
  status_fields('running', ARGV[2], ARGV[4], ARGV[3], basis))
if same then
  publish(v, '{"type":"analysis_restarted","ticker":"' .. esc(ARGV[2]) .. '","run_id":"' ..
    ARGV[3] .. '","basis_version":' .. basis .. ',"reason":"worker_lost"}')
  return {'taken_over', ARGV[3], basis, f[6], holdings, f[9], f[10], f[14] or '', f[15] or '', f[16] or ''}
end
local superseded = ''
if f[4] == 'running' then
  superseded = f[6]
  publish(v, '{"type":"analysis_cancelled","ticker":"' .. esc(f[5]) .. '","run_id":"' .. f[6] ..
    '","reason":"superseded"}')
end
publish(v, '{"type":"analysis_started","ticker":"' .. esc(ARGV[2]) .. '","run_id":"' .. ARGV[3] ..
  '","basis_version":' .. basis .. ',"timestamp":"' .. ARGV[4] .. '"}')
return {'started', ARGV[3], basis, superseded, holdings, f[9], f[10], f[14] or '', f[15] or '', f[16] or ''}

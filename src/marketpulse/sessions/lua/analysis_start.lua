-- analysis_start: KEYS[1]=session KEYS[2]=events
--   ARGV[1]=token_hash ARGV[2]=ticker ARGV[3]=new_run_id ARGV[4]=now ARGV[5]=ttl
-- Supersedes a running analysis of another ticker (analysis_cancelled 'superseded'); for the
-- ticker already running it is a no-op that re-announces the running run.
-- returns 'gone' | 'not_held' | {'running'|'started', run_id, basis, superseded_run_id,
--                                  holdings_json, prices_json, tick}
local f = open(ARGV[1], 'holdings', 'run_status', 'run_ticker', 'run_id', 'run_basis', 'run_started',
  'prices', 'tick', 'basis_version')
if not f then return 'gone' end
local holdings = f[3]
if not string.find(holdings, '"' .. ARGV[2] .. '":', 1, true) then
  commit(f, ARGV[4], ARGV[5])
  return 'not_held'
end
if f[4] == 'running' and f[5] == ARGV[2] then
  local v = commit(f, ARGV[4], ARGV[5])
  publish(v, '{"type":"analysis_started","ticker":"' .. esc(f[5]) .. '","run_id":"' .. f[6] ..
    '","basis_version":' .. f[7] .. ',"timestamp":"' .. f[8] .. '"}')
  return {'running', f[6], f[7], '', holdings, f[9], f[10]}
end
local basis = f[11]
local v = commit(f, ARGV[4], ARGV[5], 'run_id', ARGV[3], 'run_ticker', ARGV[2], 'run_basis', basis,
  'run_started', ARGV[4], 'run_done', '', 'run_restarts', 0,
  status_fields('running', ARGV[2], ARGV[4], ARGV[3], basis))
local superseded = ''
if f[4] == 'running' then
  superseded = f[6]
  publish(v, '{"type":"analysis_cancelled","ticker":"' .. esc(f[5]) .. '","run_id":"' .. f[6] ..
    '","reason":"superseded"}')
end
publish(v, '{"type":"analysis_started","ticker":"' .. esc(ARGV[2]) .. '","run_id":"' .. ARGV[3] ..
  '","basis_version":' .. basis .. ',"timestamp":"' .. ARGV[4] .. '"}')
return {'started', ARGV[3], basis, superseded, holdings, f[9], f[10]}

-- analysis_start: KEYS[1]=session KEYS[2]=events
--   ARGV[1]=token_hash ARGV[2]=ticker ARGV[3]=new_run_id ARGV[4]=now ARGV[5]=ttl
-- Supersedes a running analysis of another ticker (analysis_cancelled 'superseded'); for the
-- ticker already running it is a no-op that re-announces the running run.
-- returns 'gone' | 'not_held' | {'running'|'started', run_id, basis, superseded_run_id,
--                                  holdings_json, prices_json, tick}
if not authorised(ARGV[1]) then return 'gone' end
local v = touch(ARGV[4], ARGV[5])
local holdings = redis.call('HGET', key, 'holdings')
if not string.find(holdings, '"' .. ARGV[2] .. '":', 1, true) then return 'not_held' end
local f = redis.call('HMGET', key, 'run_status', 'run_ticker', 'run_id', 'run_basis', 'run_started',
  'prices', 'tick', 'basis_version')
if f[1] == 'running' and f[2] == ARGV[2] then
  publish(v, '{"type":"analysis_started","ticker":"' .. esc(f[2]) .. '","run_id":"' .. f[3] ..
    '","basis_version":' .. f[4] .. ',"timestamp":"' .. f[5] .. '"}')
  return {'running', f[3], f[4], '', holdings, f[6], f[7]}
end
local superseded = ''
if f[1] == 'running' then
  superseded = f[3]
  publish(v, '{"type":"analysis_cancelled","ticker":"' .. esc(f[2]) .. '","run_id":"' .. f[3] ..
    '","reason":"superseded"}')
end
local basis = f[8]
redis.call('HSET', key, 'run_id', ARGV[3], 'run_ticker', ARGV[2], 'run_basis', basis,
  'run_started', ARGV[4], 'run_done', '', 'run_restarts', 0, 'run_status', 'running',
  'current_analysis', cur_json(ARGV[2], ARGV[4], ARGV[3], basis, 'running'))
publish(v, '{"type":"analysis_started","ticker":"' .. esc(ARGV[2]) .. '","run_id":"' .. ARGV[3] ..
  '","basis_version":' .. basis .. ',"timestamp":"' .. ARGV[4] .. '"}')
return {'started', ARGV[3], basis, superseded, holdings, f[6], f[7]}

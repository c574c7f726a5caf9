-- analysis_resume: KEYS[1]=session KEYS[2]=events KEYS[3]=run stream
--   ARGV[1]=run_id ARGV[2]=stream entry id ARGV[3]=group
-- A worker took the run queued as ARGV[2]: is it still the session's current running run, and
-- what is its basis? Read in one step, so the run computes from a consistent snapshot (the
-- first checked append tells it if the basis has moved since). Also Redis's clock (ms), so the
-- worker can time the run from its enqueue without trusting its own clock, and how many times
-- the entry has been delivered (a run that keeps losing its workers can be ended).
-- returns 'over' (superseded, cancelled, ended, handed back, or the session is gone) |
--         {'resumed', run_id, basis, '', holdings, prices, tick, fx, currencies, base, now_ms,
--          deliveries}
local f = redis.call('HMGET', key, 'run_id', 'run_status', 'run_entry', 'run_basis', 'holdings',
  'prices', 'tick', 'fx', 'currencies', 'base_currency')
if f[1] ~= ARGV[1] or f[2] ~= 'running' or f[3] ~= ARGV[2] then return 'over' end
local t = redis.call('TIME')
local p = redis.call('XPENDING', KEYS[3], ARGV[3], ARGV[2], ARGV[2], 1)
local deliveries = 1
if #p > 0 then deliveries = p[1][4] end
return {'resumed', f[1], f[4], '', f[5], f[6], f[7], f[8] or '', f[9] or '', f[10] or '', t[1] * 1000 + math.floor(t[2] / 1000),
  deliveries}

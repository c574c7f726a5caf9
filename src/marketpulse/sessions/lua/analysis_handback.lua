-- analysis_handback: KEYS[1]=session KEYS[2]=events KEYS[3]=run stream
--   ARGV[1]=group ARGV[2]=entry id ARGV[3]=run_id ARGV[4]=stream maxlen ARGV[5]=session_id
-- A stopping worker gives its run back: if it is still current and running, it is queued
-- again at once (a new entry marked 'h', recorded as the run's entry) for any worker to take;
-- the old entry is acknowledged either way. No event, no version: the run goes on, only its
-- worker changes (results already appended deduplicate when the next worker appends them).
-- returns the new entry id | 'over'
local f = redis.call('HMGET', key, 'run_id', 'run_status', 'run_entry', 'run_ticker')
redis.call('XACK', KEYS[3], ARGV[1], ARGV[2])
if f[1] ~= ARGV[3] or f[2] ~= 'running' or f[3] ~= ARGV[2] then return 'over' end
local entry = enqueue(ARGV[4], ARGV[5], f[1], f[4], true)
redis.call('HSET', key, 'run_entry', entry)
return entry

-- session_migrate: KEYS[1]=session (new layout) KEYS[2]=events KEYS[3]=run stream KEYS[4]=index
--   (all four on the partition's hash tag: one slot)
--   ARGV[1]=session_id ARGV[2]=pttl_ms (<= 0: none) ARGV[3]=index score ARGV[4]=stream maxlen
--   ARGV[5], ARGV[6], ...=field, value of the session's hash as the old layout stored it
-- Writes a session of the single-stream layout into its partition (sessions/migrate.py), with
-- its TTL, indexes it, and re-queues its run on the partition's stream if one is running (an
-- entry marked 'h', like a handed-back run, recorded as the run's entry): the worker resumes
-- it, and results already appended deduplicate. Idempotent: a session already there (moved
-- by an earlier or concurrent migration, and perhaps changed since) is left alone.
-- returns 'exists' | 'moved' | 'requeued'
if redis.call('EXISTS', key) == 1 then return 'exists' end
redis.call('HSET', key, unpack(ARGV, 5))
local pttl = tonumber(ARGV[2])
if pttl > 0 then redis.call('PEXPIRE', key, pttl) end
redis.call('ZADD', KEYS[4], 'NX', ARGV[3], ARGV[1])
local f = redis.call('HMGET', key, 'run_status', 'run_id', 'run_ticker')
if f[1] == 'running' and f[2] and f[3] then
  local entry = enqueue(ARGV[4], ARGV[1], f[2], f[3], true)
  redis.call('HSET', key, 'run_entry', entry)
  return 'requeued'
end
return 'moved'

-- index_prune: KEYS[1]=a partition's session index (zset: session id -> creation time, epoch ms)
--   ARGV[1]=cutoff_ms ARGV[2..]=ids of sessions the sweep found missing
-- Removes the ids indexed at or before the cutoff. A session is indexed a moment before its
-- hash is written (two steps, so one key per step on a Cluster): a sweep between the steps
-- finds it missing, and must not unindex it; an entry older than the grace is a session that
-- expired, was deleted, or whose creation died half way.
-- returns the number removed
local cutoff = tonumber(ARGV[1])
local removed = 0
for i = 2, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score and tonumber(score) <= cutoff then
    removed = removed + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return removed

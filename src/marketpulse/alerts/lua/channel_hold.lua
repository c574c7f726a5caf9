-- channel_hold: during a channel's quiet hours, keep one fire for later and acknowledge it.
-- KEYS[1] = the outbox stream; KEYS[2] = the channel's held fires (list);
-- KEYS[3] = their count and first time (hash)
-- ARGV[1] = the channel's consumer group; ARGV[2] = the entry id; ARGV[3] = the fire JSON
-- ARGV[4] = when it is held (UTC ISO-8601); ARGV[5] = the cap on the list
-- returns 1 if held, 0 if the entry was already acknowledged (held by another consumer).
-- The list keeps the latest ARGV[5] fires; the count goes on past it (the digest says so).
if redis.call('XACK', KEYS[1], ARGV[1], ARGV[2]) == 0 then
  return 0
end
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[5]), -1)
redis.call('HINCRBY', KEYS[3], 'count', 1)
redis.call('HSETNX', KEYS[3], 'since', ARGV[4])
return 1

-- channel_delete: remove one named delivery channel, its consumer group and what it holds.
-- KEYS[1] = the channels hash; KEYS[2] = the outbox stream; KEYS[3] = the channels' version
-- KEYS[4] = its held fires; KEYS[5] = their count and first time
-- ARGV[1] = name; ARGV[2] = the channel's consumer group
-- returns 1 if it existed, else 0
if redis.call('HDEL', KEYS[1], ARGV[1]) == 0 then
  return 0
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.pcall('XGROUP', 'DESTROY', KEYS[2], ARGV[2])
end
redis.call('DEL', KEYS[4], KEYS[5])
redis.call('INCR', KEYS[3])
return 1

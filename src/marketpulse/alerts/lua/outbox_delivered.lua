-- outbox_delivered: record that one channel delivered one fire, and acknowledge its entry.
-- KEYS[1] = the outbox stream; KEYS[2] = the fire's deliveries hash
-- ARGV[1] = the channel's group; ARGV[2] = the entry id; ARGV[3] = the channel name
-- ARGV[4] = delivery time (UTC ISO-8601); ARGV[5] = the record's TTL in seconds
-- returns the number of entries acknowledged (0: already acknowledged, e.g. by a consumer that
-- delivered it too). Idempotent: the first delivery time is kept.
redis.call('HSETNX', KEYS[2], ARGV[3], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[5])
return redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])

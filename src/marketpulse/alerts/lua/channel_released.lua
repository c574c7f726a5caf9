-- channel_released: a channel sent the first ARGV[3] of its held fires (ARGV[4] counted):
-- record each fire's delivery, and forget them (fires held meanwhile stay).
-- KEYS[1] = the held fires (list); KEYS[2] = their count and first time (hash)
-- KEYS[3..] = the deliveries hash of each fire sent
-- ARGV[1] = the channel name; ARGV[2] = the delivery time (UTC ISO-8601)
-- ARGV[3] = how many list entries were sent; ARGV[4] = the count they stood for
-- ARGV[5] = the records' TTL
-- Fires held while these were sent stay, counted from the delivery time on.
for i = 3, #KEYS do
  redis.call('HSETNX', KEYS[i], ARGV[1], ARGV[2])
  redis.call('EXPIRE', KEYS[i], ARGV[5])
end
redis.call('LTRIM', KEYS[1], tonumber(ARGV[3]), -1)
local left = redis.call('HINCRBY', KEYS[2], 'count', -tonumber(ARGV[4]))
if left <= 0 or redis.call('LLEN', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[2])
else
  redis.call('HSET', KEYS[2], 'since', ARGV[2])
end
return left

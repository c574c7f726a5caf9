-- alert_volume: record one volume observation and return the ones before it.
-- KEYS[1] = volume window sorted set (score = observation key, member = '<obs>:<volume>')
-- ARGV[1] = observation key (integer, increasing)   ARGV[2] = volume   ARGV[3] = window size N
-- returns up to N members observed before ARGV[1], oldest first.
-- Idempotent per observation: a second call with the same key adds nothing and answers the same.
local n = tonumber(ARGV[3])
if #redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[1], 'LIMIT', 0, 1) == 0 then
  redis.call('ZADD', KEYS[1], ARGV[1], ARGV[1] .. ':' .. ARGV[2])
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(n + 2))
end
local prior = redis.call('ZREVRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '-inf', 'LIMIT', 0, n)
local out = {}
for i = #prior, 1, -1 do
  out[#out + 1] = prior[i]
end
return out

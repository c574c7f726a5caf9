-- split_observe: record the price of one observation of a symbol; answer the one before it.
-- KEYS[1] = the symbol's last two observations (hash: obs, price, day and pobs, pprice, pday)
-- ARGV[1] = observation key (integer, increasing per symbol)   ARGV[2] = price
-- ARGV[3] = the quote's session day (YYYY-MM-DD)   ARGV[4] = the record's TTL in seconds
-- returns {price, day} of the observation before ARGV[1], or {} (none known, or ARGV[1] is
-- older than the last one recorded).
-- Idempotent per observation: instances applying the same observation get the same answer
-- (the second finds its own observation last and answers the one kept before it).
local cur = redis.call('HMGET', KEYS[1], 'obs', 'price', 'day', 'pobs', 'pprice', 'pday')
local obs = tonumber(ARGV[1])
local out = {}
if not cur[1] then
  redis.call('HSET', KEYS[1], 'obs', ARGV[1], 'price', ARGV[2], 'day', ARGV[3])
elseif obs > tonumber(cur[1]) then
  redis.call('HSET', KEYS[1], 'pobs', cur[1], 'pprice', cur[2], 'pday', cur[3],
    'obs', ARGV[1], 'price', ARGV[2], 'day', ARGV[3])
  out = {cur[2], cur[3]}
elseif obs == tonumber(cur[1]) and cur[4] then
  out = {cur[5], cur[6]}
end
redis.call('EXPIRE', KEYS[1], ARGV[4])
return out

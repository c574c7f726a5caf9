-- portfolio_track: store a session's return index after one valuation, if nothing stored a
-- later one meanwhile; every portfolio-alert key of the session takes the session's TTL.
-- KEYS[1] = the session's hash (its PTTL)   KEYS[2] = the track (hash)   KEYS[3] = the
-- session's portfolio alerts   KEYS[4..] = their state hashes
-- ARGV[1] = the tick the track was read at ('' for none)   ARGV[2] = the new tick
-- ARGV[3..] = field, value pairs of the new track (numbers as text: never Lua numbers)
-- returns 'ok' | 'raced' (the stored tick is not the one read: another sweep wrote) |
--         'gone' (the session is gone: the keys are deleted with it)
local ttl = redis.call('PTTL', KEYS[1])
if ttl == -2 then
  for i = 2, #KEYS do
    redis.call('DEL', KEYS[i])
  end
  return 'gone'
end
local stored = redis.call('HGET', KEYS[2], 'tick')
if (stored or '') ~= ARGV[1] then
  return 'raced'
end
redis.call('HSET', KEYS[2], 'tick', ARGV[2], unpack(ARGV, 3))
if ttl > 0 then
  for i = 2, #KEYS do
    redis.call('PEXPIRE', KEYS[i], ttl)
  end
end
return 'ok'

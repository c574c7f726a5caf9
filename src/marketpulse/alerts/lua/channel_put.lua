-- channel_put: create or replace one named delivery channel (alerts/channels.py).
-- KEYS[1] = the channels hash; KEYS[2] = the outbox stream; KEYS[3] = the channels' version
-- ARGV[1] = name; ARGV[2] = the row JSON; ARGV[3] = the cap on channels (0: none)
-- ARGV[4] = the channel's consumer group; ARGV[5] = 'create' | 'replace'
-- returns 'ok' | 'exists' (create of a taken name) | 'missing' (replace of none) | 'full'
-- A new row gets its consumer group in this same step, at the outbox's end ('$'): a fire
-- decided before the row existed is not its, every later one is. A group left by an earlier
-- channel of the same name is destroyed first (its pending entries are not this one's).
-- Replacing keeps the group (and what it has pending).
local exists = redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1
if ARGV[5] == 'create' and exists then
  return 'exists'
end
if ARGV[5] == 'replace' and not exists then
  return 'missing'
end
local cap = tonumber(ARGV[3])
if not exists and cap > 0 and redis.call('HLEN', KEYS[1]) >= cap then
  return 'full'
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if not exists then
  if redis.call('EXISTS', KEYS[2]) == 1 then
    redis.pcall('XGROUP', 'DESTROY', KEYS[2], ARGV[4])
  end
  redis.call('XGROUP', 'CREATE', KEYS[2], ARGV[4], '$', 'MKSTREAM')
end
redis.call('INCR', KEYS[3])
return 'ok'

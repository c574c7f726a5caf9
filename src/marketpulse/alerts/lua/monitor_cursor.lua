-- monitor_cursor: advance the monitor's last evaluated tick, never moving it back.
-- KEYS[1] = cursor key   ARGV[1] = tick (integer)
-- returns the cursor after the call.
local cur = tonumber(redis.call('GET', KEYS[1]) or '-1')
local t = tonumber(ARGV[1])
if t > cur then
  redis.call('SET', KEYS[1], ARGV[1])
  return t
end
return cur

-- lease_renew: KEYS[1]=lease  ARGV[1]=owner ARGV[2]=ttl_ms
-- Take the lease if free, extend it if ours. returns 1 (held) | 0 (someone else holds it)
local cur = redis.call('GET', KEYS[1])
if not cur then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if cur == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0

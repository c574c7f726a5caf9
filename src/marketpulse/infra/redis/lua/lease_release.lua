-- lease_release: KEYS[1]=lease  ARGV[1]=owner   returns 1 if released, 0 if not ours
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0

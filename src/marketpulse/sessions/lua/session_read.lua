-- session_read: KEYS[1]=session KEYS[2]=events  ARGV[1]=token_hash ARGV[2]=now ARGV[3]=ttl
-- A client read: refreshes the TTL and returns the whole hash (HGETALL) | 'gone'
local f = open(ARGV[1])
if not f then return 'gone' end
commit(f, ARGV[2], ARGV[3])
return redis.call('HGETALL', key)

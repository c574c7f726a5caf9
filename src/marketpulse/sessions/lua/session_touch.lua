-- session_touch: KEYS[1]=session KEYS[2]=events  ARGV[1]=token_hash ARGV[2]=now ARGV[3]=ttl
-- returns the new version | 'gone'
local f = open(ARGV[1])
if not f then return 'gone' end
return commit(f, ARGV[2], ARGV[3])

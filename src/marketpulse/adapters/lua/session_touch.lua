-- session_touch: KEYS[1]=session KEYS[2]=events  ARGV[1]=token_hash ARGV[2]=now ARGV[3]=ttl
-- returns the new version | 'gone'
if not authorised(ARGV[1]) then return 'gone' end
return touch(ARGV[2], ARGV[3])

-- session_delete: KEYS[1]=session KEYS[2]=events  ARGV[1]=token_hash
-- returns 'ok' | 'gone'; open sockets of the session learn it from the 'gone' event
if not open(ARGV[1]) then return 'gone' end
redis.call('DEL', key)
publish(0, '{"type":"__gone"}')
return 'ok'

-- split_apply: apply a confirmed split once: re-base the volume baseline and the alerts,
-- record the corporate action in the history and publish it, all in one step.
-- KEYS[1] = the split's marker (symbol, ex-date)   KEYS[2] = the symbol's volume window
-- KEYS[3] = alert conditions (hash)   KEYS[4] = their version counter
-- KEYS[5] = the history stream
-- ARGV[1] = observation key that confirmed it   ARGV[2] = the ratio (new shares per old one)
-- ARGV[3] = the marker's TTL in seconds   ARGV[4] = history cap   ARGV[5] = the symbol
-- ARGV[6] = the event's JSON without its closing '}'   ARGV[7] = the dashboards' channel
-- ARGV[8..] = per alert to re-base, four values: its id, its JSON as read, its re-based JSON,
--             the JSON of its entry in the event's "rebased" list
-- returns {'applied', id...} (the alerts rewritten) | {'done', obs} (applied before, at obs).
-- Once per (symbol, ex-date) whatever the number of instances: the marker decides. An alert
-- changed since it was read (its JSON differs) is left as it is, and not listed.
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[3]) then
  return {'done', redis.call('GET', KEYS[1])}
end
local r = tonumber(ARGV[2])
-- the volumes observed before this observation, multiplied by the ratio (member '<obs>:<v>')
local prior = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[1], 'WITHSCORES')
for i = 1, #prior, 2 do
  local o, v = string.match(prior[i], '^(.*):(%d+)$')
  if o then
    redis.call('ZREM', KEYS[2], prior[i])
    local scaled = string.format('%d', math.floor(tonumber(v) * r + 0.5))
    redis.call('ZADD', KEYS[2], prior[i + 1], o .. ':' .. scaled)
  end
end
local done, entries = {'applied'}, {}
for i = 8, #ARGV, 4 do
  if redis.call('HGET', KEYS[3], ARGV[i]) == ARGV[i + 1] then
    redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 2])
    done[#done + 1] = ARGV[i]
    entries[#entries + 1] = ARGV[i + 3]
  end
end
if #entries > 0 then
  redis.call('INCR', KEYS[4])
end
local event = ARGV[6] .. ',"rebased":[' .. table.concat(entries, ',') .. ']}'
redis.call('XADD', KEYS[5], 'MAXLEN', '~', ARGV[4], '*', 'symbol', ARGV[5],
  'kind', 'corporate_action', 'event', event)
redis.call('PUBLISH', ARGV[7], '{"type":"corporate_action",' .. string.sub(event, 2))
return done

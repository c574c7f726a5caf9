-- analysis_append: KEYS[1]=session KEYS[2]=events
--   ARGV[1]=run_id ARGV[2]=basis_version ARGV[3]=result_id ARGV[4]=result_json ARGV[5]=cap
--   ARGV[6]=n_metrics
-- The checked append of guarantee 2: appended (and only then published) if the run is still
-- current and the basis unchanged. Deduplicates on the result id (a retried command after a
-- lost reply). Not a client action: no TTL change.
-- returns 'ok' | 'complete' | 'dup' | 'superseded' | 'stale' | 'gone'
local f = redis.call('HMGET', key, 'run_id', 'run_status', 'basis_version', 'run_done', 'run_ticker')
if not f[2] and not f[3] then return 'gone' end
if f[1] ~= ARGV[1] then return 'superseded' end
local done = f[4] or ''
if string.find(done, ' ' .. ARGV[3] .. ' ', 1, true) then return 'dup' end
if f[2] ~= 'running' then return 'superseded' end
if f[3] ~= ARGV[2] then return 'stale' end
local seq = redis.call('HINCRBY', key, 'rseq', 1)
local cap = tonumber(ARGV[5])
redis.call('HSET', key, 'r:' .. seq, ARGV[4], 'run_done', done .. ' ' .. ARGV[3] .. ' ')
if seq > cap then redis.call('HDEL', key, 'r:' .. (seq - cap)) end
local v = redis.call('HINCRBY', key, 'version', 1)
publish(v, '{"type":"analysis_result",' .. string.sub(ARGV[4], 2))
local _, n = string.gsub(done .. ' ' .. ARGV[3] .. ' ', '%S+', '')
if n >= tonumber(ARGV[6]) then
  set_status('complete')
  publish(v, '{"type":"analysis_complete","ticker":"' .. esc(f[5]) .. '","run_id":"' .. ARGV[1] .. '"}')
  return 'complete'
end
return 'ok'

-- analysis_append: KEYS[1]=session KEYS[2]=events
--   ARGV[1]=run_id ARGV[2]=basis_version ARGV[3]=result_id ARGV[4]=result_json ARGV[5]=cap
--   ARGV[6]=n_metrics
-- The checked append of guarantee 2: appended (and only then published) if the run is still
-- current and the basis unchanged. Deduplicates on the result id (a retried command after a
-- lost reply). Not a client action: no TTL change.
-- returns 'ok' | 'complete' | 'dup' | 'superseded' | 'stale' | 'gone'
local f = redis.call('HMGET', key, 'run_id', 'run_status', 'basis_version', 'run_done', 'run_ticker',
  'rseq', 'version', 'run_started', 'run_basis')
if not f[2] and not f[3] then return 'gone' end
if f[1] ~= ARGV[1] then return 'superseded' end
local done = f[4] or ''
if string.find(done, ' ' .. ARGV[3] .. ' ', 1, true) then return 'dup' end
if f[2] ~= 'running' then return 'superseded' end
if f[3] ~= ARGV[2] then return 'stale' end
local seq = f[6] + 1
local v = f[7] + 1
done = done .. ' ' .. ARGV[3] .. ' '
local _, n = string.gsub(done, '%S+', '')
local complete = n >= tonumber(ARGV[6])
if complete then
  redis.call('HSET', key, 'r:' .. seq, ARGV[4], 'run_done', done, 'rseq', seq, 'version', v,
    status_fields('complete', f[5], f[8], f[1], f[9]))
else
  redis.call('HSET', key, 'r:' .. seq, ARGV[4], 'run_done', done, 'rseq', seq, 'version', v)
end
local cap = tonumber(ARGV[5])
if seq > cap then redis.call('HDEL', key, 'r:' .. (seq - cap)) end
publish(v, '{"type":"analysis_result",' .. string.sub(ARGV[4], 2))
if complete then
  publish(v, '{"type":"analysis_complete","ticker":"' .. esc(f[5]) .. '","run_id":"' .. ARGV[1] .. '"}')
  return 'complete'
end
return 'ok'

-- analysis_append: KEYS[1]=session KEYS[2]=events
--   ARGV[1]=run_id ARGV[2]=basis_version ARGV[3]=cap ARGV[4]=n_metrics
--   ARGV[5], ARGV[6], ...=result_id, result_json of each result of the run that is due (one or more)
-- The checked append of guarantee 2, for each result in turn exactly as if each were its own
-- script run back to back (its own checks, version and event): appended, and only then
-- published, if the run is still current and the basis unchanged. Deduplicates on the result id
-- (a retried command after a lost reply). Not a client action: no TTL change.
-- returns one status per result: 'ok' | 'complete' | 'dup' | 'superseded' | 'stale' | 'gone'
local f = redis.call('HMGET', key, 'run_id', 'run_status', 'basis_version', 'run_done', 'run_ticker',
  'rseq', 'version', 'run_started', 'run_basis')
local gone = not f[2] and not f[3]
local status, done = f[2], f[4] or ''
local old = tonumber(f[6] or '0')
local seq, v = old, tonumber(f[7] or '0')
local _, n = string.gsub(done, '%S+', '')
local cap, want = tonumber(ARGV[3]), tonumber(ARGV[4])
local out, added = {}, {}
for i = 5, #ARGV, 2 do
  local rid, body = ARGV[i], ARGV[i + 1]
  local s
  if gone then s = 'gone'
  elseif f[1] ~= ARGV[1] then s = 'superseded'
  elseif string.find(done, ' ' .. rid .. ' ', 1, true) then s = 'dup'
  elseif status ~= 'running' then s = 'superseded'
  elseif f[3] ~= ARGV[2] then s = 'stale'
  else
    seq, v, n = seq + 1, v + 1, n + 1
    done = done .. ' ' .. rid .. ' '
    added[#added + 1] = body
    publish(v, '{"type":"analysis_result",' .. string.sub(body, 2))
    s = 'ok'
    if n >= want then
      status, s = 'complete', 'complete'
      publish(v, '{"type":"analysis_complete","ticker":"' .. esc(f[5]) .. '","run_id":"' ..
        ARGV[1] .. '"}')
    end
  end
  out[#out + 1] = s
end
if seq > old then
  -- the newest `cap` results stay: r:k for k in (seq - cap, seq]
  local fields = {'run_done', done, 'rseq', seq, 'version', v}
  for k = math.max(old + 1, seq - cap + 1), seq do
    fields[#fields + 1] = 'r:' .. k
    fields[#fields + 1] = added[k - old]
  end
  if status == 'complete' then
    local a, b, c, d = status_fields('complete', f[5], f[8], f[1], f[9])
    fields[#fields + 1], fields[#fields + 2], fields[#fields + 3], fields[#fields + 4] = a, b, c, d
  end
  redis.call('HSET', key, unpack(fields))
  local dropped = {}
  for k = math.max(1, old - cap + 1), math.min(old, seq - cap) do dropped[#dropped + 1] = 'r:' .. k end
  if #dropped > 0 then redis.call('HDEL', key, unpack(dropped)) end
end
return out

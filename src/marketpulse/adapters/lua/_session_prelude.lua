-- Shared prelude of every session script (prepended at load time; Redis has no includes).
-- The session is one hash. Money and prices arrive as JSON text built in Python and are never
-- decoded here (Lua's cjson keeps 14 significant digits); counters use HINCRBY.
local key = KEYS[1]

-- Publish an event in the same atomic step as the change: "<version>\n<json>".
local function publish(version, json)
  redis.call('PUBLISH', KEYS[2], tostring(version) .. '\n' .. json)
end

-- A client action: last_activity and the TTL move; version moves (it is a committed change).
local function touch(now, ttl)
  redis.call('HSET', key, 'last_activity', now)
  redis.call('EXPIRE', key, ttl)
  return redis.call('HINCRBY', key, 'version', 1)
end

-- A wrong or foreign token looks exactly like a missing session.
local function authorised(token_hash)
  local stored = redis.call('HGET', key, 'token')
  return stored and stored == token_hash
end

local function esc(s)  -- JSON string escaping for values we did not build (tickers are [A-Z0-9.^=-])
  return (string.gsub(s, '[%c"\\]', function(c) return string.format('\\u%04x', string.byte(c)) end))
end

local function cur_json(ticker, started_at, run_id, basis, status)
  return '{"ticker":"' .. esc(ticker) .. '","started_at":"' .. started_at .. '","run_id":"' .. run_id ..
    '","basis_version":' .. basis .. ',"status":"' .. status .. '"}'
end

local function set_status(status)
  local f = redis.call('HMGET', key, 'run_ticker', 'run_started', 'run_id', 'run_basis')
  redis.call('HSET', key, 'run_status', status, 'current_analysis', cur_json(f[1], f[2], f[3], f[4], status))
end

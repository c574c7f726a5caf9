-- Shared prelude of every session script (prepended at load time; Redis has no includes).
-- The session is one hash. Money and prices arrive as JSON text built in Python and are never
-- decoded here (Lua's cjson keeps 14 significant digits). Each script reads what it needs in one
-- HMGET and writes in one HSET: a redis.call costs about 1 µs, the bulk of a script's time.
local key = KEYS[1]

-- Publish an event in the same atomic step as the change: "<version>\n<json>".
local function publish(version, json)
  redis.call('PUBLISH', KEYS[2], tostring(version) .. '\n' .. json)
end

-- A client action begins: one read of the token, the version (f[1], f[2]) and the fields asked
-- for (f[3] on). nil when the token does not open the session: a wrong or foreign token looks
-- exactly like a missing session.
local function open(token_hash, ...)
  local f = redis.call('HMGET', key, 'token', 'version', ...)
  if f[1] ~= token_hash then return nil end
  return f
end

-- A client action commits: version + 1 and last_activity, in one HSET with the action's own
-- field/value pairs, and the TTL moves. Returns the new version.
local function commit(f, now, ttl, ...)
  local v = f[2] + 1
  redis.call('HSET', key, 'last_activity', now, 'version', v, ...)
  redis.call('EXPIRE', key, ttl)
  return v
end

local function esc(s)  -- JSON string escaping for values we did not build (tickers are [A-Z0-9.^=-])
  return (string.gsub(s, '[%c"\\]', function(c) return string.format('\\u%04x', string.byte(c)) end))
end

-- A run's status and its public current_analysis, as HSET field/value pairs.
local function status_fields(status, ticker, started_at, run_id, basis)
  return 'run_status', status, 'current_analysis', '{"ticker":"' .. esc(ticker) .. '","started_at":"' ..
    started_at .. '","run_id":"' .. run_id .. '","basis_version":' .. basis .. ',"status":"' ..
    status .. '"}'
end

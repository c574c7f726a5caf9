-- Shared prelude of every session script (prepended at load time; Redis has no includes).
-- The session is one hash. Money and prices arrive as JSON text built in Python and are never
-- decoded here (Lua's cjson keeps 14 significant digits). Each script reads what it needs in one
-- HMGET and writes in one HSET: a redis.call costs about 1 µs, the bulk of a script's time.
local key = KEYS[1]

-- Publish an event in the same atomic step as the change: "<version>\n<json>". KEYS[2] is the
-- session's sharded channel, on the session's slot (a script may SPUBLISH only there).
local function publish_on(channel, version, json)
  redis.call('SPUBLISH', channel, tostring(version) .. '\n' .. json)
end

local function publish(version, json)
  publish_on(KEYS[2], version, json)
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

-- The portfolio_update event: money, prices and rates are JSON text built in Python.
local function portfolio_update(total, prices, fx, base, flags, basis, ts)
  return '{"type":"portfolio_update","total_value":' .. total .. ',"prices":' .. prices ..
    ',"fx":' .. fx .. ',"base_currency":"' .. base .. '","flags":' .. flags ..
    ',"basis_version":' .. basis .. ',"timestamp":"' .. ts .. '"}'
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

-- The run stream of the session's partition (same hash tag, same slot) is KEYS[3] of the
-- scripts that make a run current, end it or hand it back.
-- Queue a run: one entry naming its session, run and ticker ('h' marks a run handed back by a
-- stopping worker, whose work restarts); the entry id.
local function enqueue(maxlen, session_id, run_id, ticker, handed)
  if handed then
    return redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*', 's', session_id, 'r', run_id,
      't', ticker, 'h', '1')
  end
  return redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*', 's', session_id, 'r', run_id,
    't', ticker)
end

local function id_after(a, b)  -- stream ids 'ms-seq': is a later than b?
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if tonumber(am) ~= tonumber(bm) then return tonumber(am) > tonumber(bm) end
  return tonumber(as) > tonumber(bs)
end

-- Has the run queued as `entry` a live worker, or is it still waiting for one? Alive: pending
-- and heartbeated within bound_ms, or not yet delivered. Dead: pending past the bound, or
-- delivered and no longer pending (acknowledged, or trimmed away) while the session still says
-- running, or never queued (a run older than the stream).
local function run_alive(group, entry, bound_ms)
  if not entry or entry == '' then return false end
  local p = redis.pcall('XPENDING', KEYS[3], group, entry, entry, 1)
  if p.err then return true end  -- no group yet: no worker has read anything; it waits
  if #p > 0 then return p[1][3] < bound_ms end
  for _, g in ipairs(redis.call('XINFO', 'GROUPS', KEYS[3])) do
    local h = {}
    for i = 1, #g, 2 do h[g[i]] = g[i + 1] end
    if h['name'] == group then
      return id_after(entry, h['last-delivered-id']) and
        #redis.call('XRANGE', KEYS[3], entry, entry) > 0
    end
  end
  return true
end

-- One session's revaluation (session_revalue.lua runs it once, session_revalue_many.lua for
-- each session of a batch): `skey` the session's hash, `channel` its event channel; the
-- arguments as session_revalue.lua's ARGV. Not a client action: never touches the TTL (HSET
-- keeps it) and never recreates a missing key. The tick is a fence: a revaluation older than
-- the stored one (a deposed leader) is refused. A moved price or rate is a new basis. An empty
-- `total` keeps the last good valuation and only sets the flags: a new version, the same basis.
-- returns 'gone' | 'old' | 'same' | basis_version | {'hv', hv, holdings_json, currencies_json,
--   base_currency}
local function revalue(skey, channel, tick, hv, total, prices, valued_at, fx, flags_in)
  local f = redis.call('HMGET', skey, 'hv', 'tick', 'prices', 'version', 'basis_version', 'fx',
    'flags', 'base_currency')
  if not f[1] then return 'gone' end
  if f[1] ~= hv then
    local h = redis.call('HMGET', skey, 'holdings', 'currencies', 'base_currency')
    return {'hv', f[1], h[1], h[2] or '', h[3] or ''}
  end
  if tonumber(f[2]) >= tonumber(tick) then return 'old' end
  local flags = f[7] or '[]'
  local v = f[4] + 1
  if total == '' then
    if flags == flags_in then
      redis.call('HSET', skey, 'tick', tick)
      return 'same'
    end
    redis.call('HSET', skey, 'version', v, 'tick', tick, 'flags', flags_in)
    publish_on(channel, v, portfolio_update(redis.call('HGET', skey, 'total_value'), f[3],
      f[6] or '{}', f[8] or 'USD', flags_in, f[5], valued_at))
    return tonumber(f[5])
  end
  local moved = f[3] ~= prices or f[6] ~= fx
  if not moved and flags == flags_in then
    redis.call('HSET', skey, 'tick', tick)
    return 'same'
  end
  local basis = f[5]
  if moved then basis = f[5] + 1 end
  -- only the fields that change (fx and flags mostly stay)
  if f[6] == fx and flags == flags_in then
    redis.call('HSET', skey, 'version', v, 'basis_version', basis, 'tick', tick,
      'total_value', total, 'prices', prices, 'valued_at', valued_at)
  else
    redis.call('HSET', skey, 'version', v, 'basis_version', basis, 'tick', tick,
      'total_value', total, 'prices', prices, 'valued_at', valued_at, 'fx', fx, 'flags', flags_in)
  end
  publish_on(channel, v, portfolio_update(total, prices, fx, f[8] or 'USD', flags_in, basis,
    valued_at))
  return tonumber(basis)
end

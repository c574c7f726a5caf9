-- session_revalue_many: many sessions of ONE partition (one hash tag, one slot) revalued in one
-- call, every key declared.
--   KEYS = session_1, events_1, session_2, events_2, ... (a session's hash and its channel)
--   ARGV[1]=tick ARGV[2]=valued_at ARGV[3]=m, then m bases (what sessions alike share, sent
--   once): prices, fx and flags JSON, three each; then three per session: expected_hv,
--   total_value, and its basis' number (1..m).
-- Each session goes through the prelude's `revalue`, exactly as session_revalue.lua runs it
-- (the same checks, writes and event, published in the session's commit order), one after
-- the other with nothing in between; an error on one session (say a key that is not a hash)
-- is that session's answer, and the others go on. An expected_hv of '' is a read of a session
-- the sweep has not cached yet: it answers with its holdings (or 'gone') and nothing changes.
-- returns {codes, details}: codes has one letter per session, in order: 'u' updated
-- (published), 's' unchanged (same, or a newer tick stored), 'g' gone, 'h' holdings moved,
-- 'e' error; details, one per 'h' or 'e', in the same order: {hv, holdings_json,
-- currencies_json, base_currency} for an 'h', the error's message for an 'e'.
local tick, valued_at = ARGV[1], ARGV[2]
local m = tonumber(ARGV[3])
local prices, fx, flags = {}, {}, {}
for b = 1, m do
  prices[b], fx[b], flags[b] = ARGV[1 + 3 * b], ARGV[2 + 3 * b], ARGV[3 + 3 * b]
end
local codes, details = {}, {}
for i = 1, #KEYS / 2 do
  local a = 3 + 3 * m + 3 * (i - 1)
  local b = tonumber(ARGV[a + 3])
  local ok, r
  if ARGV[a + 1] == '' then  -- a read: the session's holdings (or gone)
    ok, r = pcall(redis.call, 'HMGET', KEYS[2 * i - 1], 'hv', 'holdings', 'currencies',
      'base_currency')
    if ok then
      if r[1] then r = {'hv', r[1], r[2], r[3] or '', r[4] or ''} else r = 'gone' end
    end
  else
    ok, r = pcall(revalue, KEYS[2 * i - 1], KEYS[2 * i], tick, ARGV[a + 1], ARGV[a + 2],
      prices[b], valued_at, fx[b], flags[b])
  end
  if not ok then
    codes[i] = 'e'
    details[#details + 1] = type(r) == 'table' and (r.err or 'error') or tostring(r)
  elseif type(r) == 'number' then
    codes[i] = 'u'
  elseif type(r) == 'table' then
    codes[i] = 'h'
    details[#details + 1] = {r[2], r[3], r[4], r[5]}
  elseif r == 'gone' then
    codes[i] = 'g'
  else
    codes[i] = 's'
  end
end
return {table.concat(codes), details}

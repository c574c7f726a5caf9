-- runs_heartbeat: KEYS[1]=run stream  ARGV[1]=group ARGV[2]=consumer ARGV[3..]=entry ids
-- A worker's runs are alive: reset the idle time of each entry still pending for this consumer
-- (XCLAIM to itself, JUSTID), so no other worker reclaims it. Never takes an entry from another
-- consumer (a reclaimed run stays with its new worker).
-- returns the ids that are no longer this consumer's (acknowledged by the script that ended or
-- superseded the run, or reclaimed by another worker): their runs are not this worker's to run.
local lost = {}
for i = 3, #ARGV do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[i], ARGV[i], 1)
  if #p > 0 and p[1][2] == ARGV[2] then
    redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[i], 'JUSTID')
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost

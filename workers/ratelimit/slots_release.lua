-- Free attempts' slots on the account (and campaign). When the caller says the calls ended, a line was freed
-- and the account is line-bound (its free lines, not its CPS, limit dispatch, and destinations wait: the
-- dispatcher sets that flag), push the account id on the line-freed list in the same step, so a refill
-- listener (workers.dispatch.refill) dials a waiting destination at once instead of at the next tick.
-- KEYS: line-freed list, line-bound flag, account slots zset, [campaign slots zset].
-- ARGV: notify (1/0), account id, list cap, list ttl_ms, attempt ids...
-- Returns the slots freed on the account. A duplicate release frees nothing and wakes nobody; an account
-- held back by its CPS wakes nobody either (a freed line changes nothing there). The list is capped and
-- expires, so with no listener running it costs a bounded key, never a growing one.
local FIRST_ID = 5
local PER_CALL = 500  -- members per ZREM: unpack has a stack limit, a bulk's release may be larger
local function remove(key)
  local removed = 0
  for i = FIRST_ID, #ARGV, PER_CALL do
    removed = removed + redis.call('ZREM', key, unpack(ARGV, i, math.min(i + PER_CALL - 1, #ARGV)))
  end
  return removed
end
local freed = remove(KEYS[3])
if KEYS[4] then remove(KEYS[4]) end
if ARGV[1] == '1' and freed > 0 and redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('RPUSH', KEYS[1], ARGV[2])
  redis.call('LTRIM', KEYS[1], -tonumber(ARGV[3]), -1)
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
return freed

-- Give back a reservation that was never sent (429, transient error): remove its booked send everywhere.
-- KEYS: account state hash, sends zset, reach zset, [campaign state hash, sends zset, reach zset].
-- ARGV[1]: member.
-- Removing a booked send only empties windows, so it can never break "at most rate per second". TAT moves
-- back only when this was the budget's latest appended booking, and never below a send still booked; time
-- already passed is not given back (a send is never booked in the past). Returns how many budgets had it.
local SEC = 1000000
local member = ARGV[1]
local found = 0
for i = 1, #KEYS, 3 do
  local state, log = KEYS[i], KEYS[i + 1]
  redis.call('ZREM', KEYS[i + 2], member)
  if redis.call('ZREM', log, member) == 1 then
    found = found + 1
    if redis.call('HGET', state, 'last') == member then
      local tat = tonumber(redis.call('HGET', state, 'prev_tat')) or 0
      local newest = redis.call('ZREVRANGE', log, 0, 0, 'WITHSCORES')
      -- Stay past every send still booked, so the next append is after all of them.
      if newest[2] then tat = math.max(tat, tonumber(newest[2]) + 1) end
      redis.call('HSET', state, 'tat', string.format('%.0f', tat))
      redis.call('HDEL', state, 'last')
    end
  end
end
return found

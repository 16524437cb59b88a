-- Take a concurrency slot for every given attempt id on the account (and campaign), all or none.
-- KEYS: budgets epoch key, account slots zset, [campaign slots zset].
-- ARGV: lease_us, account_max, campaign_max, check_epoch, attempt ids...
-- Scores are lease expiries in Redis TIME seconds; expired leases are dropped first, so a lost hangup
-- frees its slot when the lease runs out. An id already holding a slot is renewed, not counted twice
-- (a re-delivered task re-acquiring its own slot). Returns 1 if acquired, 0 if not enough free slots,
-- -1 if the budgets epoch is missing (Redis lost the live calls: rebuild them before taking any slot).
local FIRST_ID = 5
if ARGV[4] == '1' and redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local expiry = now + tonumber(ARGV[1]) / 1000000
local limits = {tonumber(ARGV[2]), tonumber(ARGV[3])}
local slots = {KEYS[2], KEYS[3]}
for i, key in ipairs(slots) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%.6f', now))
  local new = 0
  for j = FIRST_ID, #ARGV do
    if not redis.call('ZSCORE', key, ARGV[j]) then new = new + 1 end
  end
  if redis.call('ZCARD', key) + new > limits[i] then return 0 end
end
for _, key in ipairs(slots) do
  for j = FIRST_ID, #ARGV do
    redis.call('ZADD', key, string.format('%.6f', expiry), ARGV[j])
  end
  local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
  -- The set outlives its longest lease by a second, then goes: no garbage from idle accounts.
  redis.call('PEXPIREAT', key, math.ceil((tonumber(newest[2]) + 1) * 1000))
end
return 1

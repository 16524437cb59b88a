-- Extend a live call's lease on progress, only while it still holds the slot: never resurrect one that
-- was released (a hangup that beat the ringing callback) or whose lease ran out (it may be reused).
-- KEYS: account slots zset, [campaign slots zset]. ARGV: lease_us, attempt id. Returns 1 if renewed.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local expiry = now + tonumber(ARGV[1]) / 1000000
local renewed = 0
for i, key in ipairs(KEYS) do
  local score = tonumber(redis.call('ZSCORE', key, ARGV[2]))
  if score and score > now then
    redis.call('ZADD', key, 'XX', 'GT', string.format('%.6f', expiry), ARGV[2])
    local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    redis.call('PEXPIREAT', key, math.ceil((tonumber(newest[2]) + 1) * 1000))
    if i == 1 then renewed = 1 end
  end
end
return renewed

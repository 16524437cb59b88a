-- Extend live calls' leases on progress, only while each still holds its slot: never resurrect one that
-- was released (a hangup that beat the ringing callback) or whose lease ran out (it may be reused).
-- KEYS: account slots zset, [campaign slots zset]. ARGV: lease_us, attempt id, [lease_us, attempt id, ...].
-- Returns, per attempt in order, 1 if its account slot was renewed, else 0.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local renewed = {}
for j = 1, #ARGV, 2 do renewed[(j + 1) / 2] = 0 end
for i, key in ipairs(KEYS) do
  local touched = false
  for j = 1, #ARGV, 2 do
    local member = ARGV[j + 1]
    local score = tonumber(redis.call('ZSCORE', key, member))
    if score and score > now then
      local expiry = now + tonumber(ARGV[j]) / 1000000
      redis.call('ZADD', key, 'XX', 'GT', string.format('%.6f', expiry), member)
      touched = true
      if i == 1 then renewed[(j + 1) / 2] = 1 end
    end
  end
  if touched then
    local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
    redis.call('PEXPIREAT', key, math.ceil((tonumber(newest[2]) + 1) * 1000))
  end
end
return renewed

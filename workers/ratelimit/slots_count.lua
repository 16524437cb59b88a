-- Live calls on a slots zset: drop expired leases, then count. KEYS[1] slots zset. Returns the count.
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.6f', now))
return redis.call('ZCARD', KEYS[1])

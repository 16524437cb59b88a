-- AIMD multiplicative decrease after a 429, at most once per cooldown however many workers saw it.
-- KEYS[1] account rate hash. ARGV: configured, factor, floor, cooldown_us, keep_ms.
-- Returns {1 if decreased else 0, current rate}. Mirrors aimd.next_rate_after_throttle.
-- TIME before a write is fine: Redis 5+ replicates a script's effects, not the script.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local configured, factor, floor = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local rate = configured
local stored = tonumber(redis.call('HGET', KEYS[1], 'rate'))
if stored and stored < configured then rate = stored end
local last = tonumber(redis.call('HGET', KEYS[1], 'dec_us'))
if last and now - last < tonumber(ARGV[4]) then
  return {0, string.format('%.17g', rate)}
end
local new = math.max(math.min(floor, configured), rate * factor)
local now_s = string.format('%.0f', now)
-- A decrease also restarts the recovery clock: the interval that saw a 429 was not clean.
redis.call('HSET', KEYS[1], 'rate', string.format('%.17g', new), 'dec_us', now_s, 'rec_us', now_s)
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return {1, string.format('%.17g', new)}

-- AIMD multiplicative decrease after a 429, at most once per cooldown however many workers saw it.
-- KEYS[1] account rate hash, KEYS[2] the account's last-429 marker.
-- ARGV: configured, factor, floor, cooldown_us, keep_ms, confirm_ms (0: every 429 cuts; else a 429 cuts only
-- when another came within confirm_ms before it).
-- Returns {1 if decreased else 0, current rate}. Mirrors aimd.next_rate_after_throttle.
-- TIME before a write is fine: Redis 5+ replicates a script's effects, not the script.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local configured, factor, floor = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local rate = configured
local stored = tonumber(redis.call('HGET', KEYS[1], 'rate'))
if stored and stored < configured then rate = stored end
local confirm_ms = tonumber(ARGV[6]) or 0
if confirm_ms > 0 then
  local seen = redis.call('GET', KEYS[2])
  redis.call('SET', KEYS[2], '1', 'PX', confirm_ms)
  if not seen then return {0, string.format('%.17g', rate)} end
end
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

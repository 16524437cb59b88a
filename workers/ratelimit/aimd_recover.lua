-- AIMD additive recovery after a clean interval, at most once per interval across all workers.
-- KEYS[1] account rate hash. ARGV: configured, step, interval_us, keep_ms.
-- Returns {1 if raised else 0, current rate}. Mirrors aimd.next_rate_after_clean_interval.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local configured = tonumber(ARGV[1])
local stored = tonumber(redis.call('HGET', KEYS[1], 'rate'))
if not stored or stored >= configured then
  -- Already at the configured rate: nothing to remember.
  redis.call('DEL', KEYS[1])
  return {0, string.format('%.17g', configured)}
end
local last = tonumber(redis.call('HGET', KEYS[1], 'rec_us'))
if last and now - last < tonumber(ARGV[3]) then
  return {0, string.format('%.17g', stored)}
end
local new = math.min(configured, stored + tonumber(ARGV[2]))
if new >= configured then
  redis.call('DEL', KEYS[1])
else
  redis.call('HSET', KEYS[1], 'rate', string.format('%.17g', new), 'rec_us', string.format('%.0f', now))
  redis.call('PEXPIRE', KEYS[1], ARGV[4])
end
return {1, string.format('%.17g', new)}

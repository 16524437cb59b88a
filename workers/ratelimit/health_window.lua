-- An account's request results over a sliding window, in one-second buckets (the circuit breaker's counts).
-- KEYS[1] the account's health hash (fields "<second>:ok" and "<second>:fail").
-- ARGV: ok to add, failures to add, window in whole seconds, recent window in whole seconds.
-- Returns {failures, successes} within the window and {failures, successes} within the recent window (the
-- current second and those before it), this call's included: a carrier that just went down fails every
-- recent request while the window still holds its healthy minutes. Buckets older than the window are
-- dropped; the hash expires after two windows without a result.
local t = redis.call('TIME')
local now = tonumber(t[1])
local window = tonumber(ARGV[3])
local ok, fail = tonumber(ARGV[1]), tonumber(ARGV[2])
if ok > 0 then redis.call('HINCRBY', KEYS[1], now .. ':ok', ok) end
if fail > 0 then redis.call('HINCRBY', KEYS[1], now .. ':fail', fail) end
local recent = tonumber(ARGV[4])
local failures, successes, recent_failures, recent_successes = 0, 0, 0, 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local second, kind = string.match(fields[i], '^(%d+):(%a+)$')
  second = tonumber(second)
  if second == nil or second <= now - window then
    redis.call('HDEL', KEYS[1], fields[i])
  else
    local n = tonumber(fields[i + 1])
    local is_recent = second > now - recent
    if kind == 'fail' then
      failures = failures + n
      if is_recent then recent_failures = recent_failures + n end
    else
      successes = successes + n
      if is_recent then recent_successes = recent_successes + n end
    end
  end
end
redis.call('EXPIRE', KEYS[1], window * 2)
return {failures, successes, recent_failures, recent_successes}

-- An account's request results over a sliding window, in one-second buckets (the circuit breaker's counts).
-- KEYS[1] the account's health hash (fields "<second>:ok" and "<second>:fail").
-- ARGV: ok to add, failures to add, window in whole seconds.
-- Returns {failures, successes} within the window, this call's included. Buckets older than the window are
-- dropped; the hash expires after two windows without a result.
local t = redis.call('TIME')
local now = tonumber(t[1])
local window = tonumber(ARGV[3])
local ok, fail = tonumber(ARGV[1]), tonumber(ARGV[2])
if ok > 0 then redis.call('HINCRBY', KEYS[1], now .. ':ok', ok) end
if fail > 0 then redis.call('HINCRBY', KEYS[1], now .. ':fail', fail) end
local failures, successes = 0, 0
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local second, kind = string.match(fields[i], '^(%d+):(%a+)$')
  second = tonumber(second)
  if second == nil or second <= now - window then
    redis.call('HDEL', KEYS[1], fields[i])
  elseif kind == 'fail' then
    failures = failures + tonumber(fields[i + 1])
  else
    successes = successes + tonumber(fields[i + 1])
  end
end
redis.call('EXPIRE', KEYS[1], window * 2)
return {failures, successes}

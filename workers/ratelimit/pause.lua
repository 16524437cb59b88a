-- Hold an account off until now + seconds (Retry-After), never shortening a longer pause already set.
-- KEYS[1] account pause key. ARGV[1] seconds. Returns the pause end in Redis TIME microseconds.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local untl = now + math.ceil(tonumber(ARGV[1]) * 1000000)
local current = tonumber(redis.call('GET', KEYS[1]))
if current and current >= untl then return string.format('%.0f', current) end
redis.call('SET', KEYS[1], string.format('%.0f', untl), 'PX', math.ceil((untl - now) / 1000) + 1000)
return string.format('%.0f', untl)

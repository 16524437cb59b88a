-- Reserve n CPS tokens on an account's budget and (optionally) a campaign's, in one atomic step.
-- KEYS: account state hash, account sends zset, account AIMD rate hash, account pause key, budgets epoch key,
--       [campaign state hash, campaign sends zset].
-- ARGV: n, account_cps, campaign_cps (0 without campaign), max_wait_us, keep_ms, window_us, check_epoch,
--       lead_us (the send is booked at least this long from now: the caller's work before it can leave),
--       hold_us (how long a widened window stays the account's: workers.ratelimit.cps.WINDOW_HOLD_S).
-- Returns {status, send_us, now_us, retry_us, max_tokens, member}; status 1 granted, 0 refused, 2 bulk too large,
-- 3 the budgets epoch is missing: Redis lost its state and the budgets must be rebuilt before any booking.
--
-- Each budget keeps GCRA state (tat: the theoretical arrival time, so sends are paced 1/rate apart) and the
-- sends it has booked (member "send_us:n:seq", score send_us). GCRA alone cannot keep a bulk counted at its
-- send time within "at most rate tokens in any 1-second window" (1 token then a bulk of rate tokens 1/rate
-- later is 1 + rate in one window), so every booking is also checked against the booked sends: the hard
-- property comes from that check, TAT only smooths.
--
-- TIME before a write is fine: Redis 5+ replicates a script's effects, not the script, so replicas and the
-- AOF never re-run it with another clock. Times are integer microseconds, exact in Lua's doubles.
local SEC = 1000000
-- The window the count is kept in: 1 s, or a little more so that sends leaving a few ms off their booked
-- time still never put more than the budget into any 1-second window as the carrier counts arrivals
-- (widened below to the widest any host of the account asked for lately).
local WINDOW = tonumber(ARGV[6]) or SEC
local MAX_HOLES = 64
local t = redis.call('TIME')
local now = tonumber(t[1]) * SEC + tonumber(t[2])
local function fmt(x) return string.format('%.0f', x) end
-- No epoch: this Redis does not remember the last second's sends, the live calls or a 429 pause. Book
-- nothing until they are rebuilt (workers.ratelimit.recovery), or the first second would be a burst.
if ARGV[7] == '1' and redis.call('EXISTS', KEYS[5]) == 0 then return {3, '0', fmt(now), '0', 0, ''} end
local n = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[4])
local keep_ms = tonumber(ARGV[5])
-- A loaded host sends later than a quiet one, so it asks for a wider window. Every booking on the account
-- uses the widest window any host asked for within the last WINDOW_HOLD (refreshed by each such booking),
-- so a quiet host's sends are never booked closer to a loaded host's than the loaded one allowed for: a
-- wide booking is at most the longest reservation wait ahead, so a booking that could fall within its
-- window is made within that wait plus the window.
local WINDOW_HOLD = tonumber(ARGV[9])
local held = tonumber(redis.call('HGET', KEYS[1], 'win_us'))
local held_until = tonumber(redis.call('HGET', KEYS[1], 'win_until')) or 0
if held and held_until > now and held > WINDOW then
  WINDOW = held
elseif WINDOW > SEC then
  redis.call('HSET', KEYS[1], 'win_us', fmt(WINDOW), 'win_until', fmt(now + WINDOW_HOLD))
  if redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], WINDOW_HOLD / 1000 + keep_ms) end
end
local function parse(member)
  local e, k = string.match(member, '^(%d+):(%d+):')
  return tonumber(e), tonumber(k)
end

local function budget(state, log, rate)
  -- Whole tokens per window, at least 1 so an adaptive rate below 1 CPS still moves (GCRA paces it).
  local b = {state = state, log = log, cap = math.max(1, math.floor(rate + 1e-9))}
  -- Round the emission interval up: rate sends T apart then never fit a half-open second.
  b.T = math.ceil(SEC / rate)
  b.tat = tonumber(redis.call('HGET', state, 'tat')) or 0
  -- No future window can hold a send older than one second.
  redis.call('ZREMRANGEBYSCORE', log, '-inf', fmt(now - WINDOW))
  return b
end

local account_rate = tonumber(ARGV[2])
local adaptive = tonumber(redis.call('HGET', KEYS[3], 'rate'))
if adaptive and adaptive < account_rate then account_rate = adaptive end
local budgets = {budget(KEYS[1], KEYS[2], account_rate)}
if #KEYS >= 7 then budgets[2] = budget(KEYS[6], KEYS[7], tonumber(ARGV[3])) end

local max_tokens = budgets[1].cap
if budgets[2] and budgets[2].cap < max_tokens then max_tokens = budgets[2].cap end
if n > max_tokens then return {2, '0', fmt(now), '0', max_tokens, ''} end

-- A 429 with Retry-After paused the whole account: no worker gets a token until it passes.
local pause_until = tonumber(redis.call('GET', KEYS[4]))
if pause_until and pause_until > now then
  return {0, '0', fmt(now), fmt(pause_until - now), max_tokens, ''}
end

-- Do the booked sends in every 1-second window holding a send at x leave room for n more?
-- A window's worst case ends at a send, so check (c - 1s, c] for c = x and every booked send in (x, x + 1s).
local function windows_fit(b, x)
  local members = redis.call('ZRANGEBYSCORE', b.log, '(' .. fmt(x - WINDOW), '(' .. fmt(x + WINDOW))
  local es, ks = {}, {}
  for i, m in ipairs(members) do es[i], ks[i] = parse(m) end
  local lo, hi, sum = 1, 0, 0
  local function window_sum(c)
    while hi < #es and es[hi + 1] <= c do hi = hi + 1; sum = sum + ks[hi] end
    while lo <= hi and es[lo] <= c - WINDOW do sum = sum - ks[lo]; lo = lo + 1 end
    return sum
  end
  if window_sum(x) + n > b.cap then return false end
  for i = 1, #es do
    if es[i] > x and window_sum(es[i]) + n > b.cap then return false end
  end
  return true
end

-- Earliest send >= x when every booked send is <= x: drop the oldest booked sends out of the window until
-- n fits. Monotone: if x fits, every later time does.
local function earliest_append(b, x)
  local members = redis.call('ZREVRANGEBYSCORE', b.log, '+inf', '(' .. fmt(x - WINDOW), 'LIMIT', 0, b.cap - n + 1)
  local cum = 0
  for _, m in ipairs(members) do
    local e, k = parse(m)
    cum = cum + k
    if cum + n > b.cap then return math.max(x, e + WINDOW) end
  end
  return x
end

-- Earliest send >= x for one budget. Before the TAT, look for a hole in the booked schedule (left when a
-- slower campaign booked ahead of the account, or by a refund), keeping each booking's n/rate spacing;
-- otherwise append at the TAT.
local function earliest(b, x)
  if x >= b.tat then return earliest_append(b, x) end
  local h = x
  local prev = redis.call('ZREVRANGEBYSCORE', b.log, fmt(x), '-inf', 'LIMIT', 0, 1)
  if prev[1] then
    local e, k = parse(prev[1])
    h = math.max(h, e + k * b.T)
  end
  local nexts = redis.call('ZRANGEBYSCORE', b.log, '(' .. fmt(x), '+inf', 'LIMIT', 0, MAX_HOLES)
  for _, m in ipairs(nexts) do
    local e, k = parse(m)
    if h + n * b.T <= e and windows_fit(b, h) then return h end
    h = math.max(h, e + k * b.T)
  end
  return earliest_append(b, math.max(h, b.tat))
end

-- The earliest time both budgets accept. Holes are not monotone, so repeat until neither moves; if that
-- does not settle quickly, append on both (appending is monotone, so one pass settles).
-- Never sooner than the caller can send: a send booked for now that leaves after the caller's last round
-- trip would leave late, and lateness is what crowds two sends into one second at the carrier.
local send, settled = now + (tonumber(ARGV[8]) or 0), false
for _ = 1, 4 do
  local moved = false
  for _, b in ipairs(budgets) do
    local e = earliest(b, send)
    if e > send then send = e; moved = true end
  end
  if not moved then settled = true; break end
end
if not settled then
  for _, b in ipairs(budgets) do send = math.max(send, b.tat) end
  for _, b in ipairs(budgets) do send = earliest_append(b, send) end
end

if send - now > max_wait then
  -- Book nothing: the caller hands the work back and retries after this long.
  return {0, '0', fmt(now), fmt(send - now - max_wait), max_tokens, ''}
end

local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
local member = fmt(send) .. ':' .. n .. ':' .. seq
for _, b in ipairs(budgets) do
  redis.call('ZADD', b.log, fmt(send), member)
  local tat = b.tat
  if send >= b.tat then
    -- Appended: pace the next send n/rate after this one's GCRA slot (a wait the window check imposed
    -- counts toward that spacing, so bulks do not pay twice), and at least 1/rate after this send.
    tat = math.max(math.max(now, b.tat) + n * b.T, send + b.T)
    redis.call('HSET', b.state, 'tat', fmt(tat), 'prev_tat', fmt(b.tat), 'last', member)
  end
  -- Idle budgets leave nothing behind: everything is moot a second after the last booked send.
  local ttl = math.ceil((math.max(tat, send) + WINDOW - now) / 1000) + keep_ms
  redis.call('PEXPIRE', b.state, ttl)
  redis.call('PEXPIRE', b.log, ttl)
end
return {1, fmt(send), fmt(now), '0', max_tokens, member}

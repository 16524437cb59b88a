-- Reserve n CPS tokens on an account's budget and (optionally) a campaign's, in one atomic step.
-- KEYS: account state hash, account sends zset, account reach zset, account AIMD rate hash, account pause key,
--       budgets epoch key, [campaign state hash, campaign sends zset, campaign reach zset].
-- ARGV: n, account_cps, campaign_cps (0 without campaign), max_wait_us, keep_ms, reach_us, check_epoch,
--       lead_us (the send is booked at least this long from now: the caller's work before it can leave),
--       now_us (0: Redis TIME; anything else is a replayed clock, used only by tests).
-- Returns {status, send_us, now_us, retry_us, max_tokens, member}; status 1 granted, 0 refused, 2 bulk too large,
-- 3 the budgets epoch is missing: Redis lost its state and the budgets must be rebuilt before any booking.
--
-- Each booked send is an interval, not a point: it reaches the carrier no sooner than its booked time s (it
-- never leaves early) and no later than its reach e. While it waits, e = s + reach_us (how late its host may
-- still send it, plus the network's spread); once it has left, the sender lowers e to when it really left
-- (workers.ratelimit.cps.CpsLimiter.record_left). The sends zset scores members by s, the reach zset by e
-- (member "s:n:seq" in both). The hard property, "at most cap tokens reach the carrier in any 1-second
-- window whatever each send's arrival within its interval", is: for every c, the tokens of the sends with
-- s <= c and e > c - 1 s are at most cap. A late send costs its own lateness, once, instead of every send
-- being counted in the widest window any host needed (docs/DESIGN.md, "Send precision").
--
-- Each budget also keeps GCRA state (tat: the theoretical arrival time, so sends are paced 1/rate apart). GCRA
-- alone cannot keep bulks within the window (1 token then a bulk of rate tokens 1/rate later is 1 + rate in
-- one window), so every booking is checked against the booked intervals: the hard property comes from that
-- check, TAT only smooths.
--
-- TIME before a write is fine: Redis 5+ replicates a script's effects, not the script, so replicas and the
-- AOF never re-run it with another clock. Times are integer microseconds, exact in Lua's doubles.
local SEC = 1000000
local REACH = tonumber(ARGV[6]) or 0
local MAX_HOLES = 64
local now
if ARGV[9] and ARGV[9] ~= '0' then
  now = tonumber(ARGV[9])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * SEC + tonumber(t[2])
end
local function fmt(x) return string.format('%.0f', x) end
-- No epoch: this Redis does not remember the last second's sends, the live calls or a 429 pause. Book
-- nothing until they are rebuilt (workers.ratelimit.recovery), or the first second would be a burst.
if ARGV[7] == '1' and redis.call('EXISTS', KEYS[6]) == 0 then return {3, '0', fmt(now), '0', 0, ''} end
local n = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[4])
local keep_ms = tonumber(ARGV[5])
local function parse(member)
  local e, k = string.match(member, '^(%d+):(%d+):')
  return tonumber(e), tonumber(k)
end

local function budget(state, log, reach, rate)
  -- Whole tokens per window, at least 1 so an adaptive rate below 1 CPS still moves (GCRA paces it).
  local b = {state = state, log = log, reach = reach, cap = math.max(1, math.floor(rate + 1e-9))}
  -- Round the emission interval up: rate sends T apart then never fit a half-open second.
  b.T = math.ceil(SEC / rate)
  local fields = redis.call('HMGET', state, 'tat', 'bulk_until')
  b.tat = tonumber(fields[1]) or 0
  -- The latest reach of any send of more than one token: before it, ranks are not token counts.
  b.bulk_until = tonumber(fields[2]) or 0
  -- A send whose reach ended a second ago can share no window with a send from now on; its start is kept
  -- a little longer for the pacing of holes.
  redis.call('ZREMRANGEBYSCORE', reach, '-inf', fmt(now - SEC))
  redis.call('ZREMRANGEBYSCORE', log, '-inf', fmt(now - 2 * SEC))
  return b
end

local account_rate = tonumber(ARGV[2])
local adaptive = tonumber(redis.call('HGET', KEYS[4], 'rate'))
if adaptive and adaptive < account_rate then account_rate = adaptive end
local budgets = {budget(KEYS[1], KEYS[2], KEYS[3], account_rate)}
if #KEYS >= 9 then budgets[2] = budget(KEYS[7], KEYS[8], KEYS[9], tonumber(ARGV[3])) end

local max_tokens = budgets[1].cap
if budgets[2] and budgets[2].cap < max_tokens then max_tokens = budgets[2].cap end
if n > max_tokens then return {2, '0', fmt(now), '0', max_tokens, ''} end

-- A 429 with Retry-After paused the whole account: no worker gets a token until it passes.
local pause_until = tonumber(redis.call('GET', KEYS[5]))
if pause_until and pause_until > now then
  return {0, '0', fmt(now), fmt(pause_until - now), max_tokens, ''}
end

-- The most tokens that may reach the carrier in one window (c - 1 s, c], over c in [lo, hi). The count is
-- tokens with s <= c less tokens with e <= c - 1 s (such a send also has s <= c); it rises only at a send's
-- s, so the candidates are lo and every s in (lo, hi). A sweep over both orders: O(m log m).
local function load(b, lo, hi)
  local raw = redis.call('ZRANGEBYSCORE', b.reach, '(' .. fmt(lo - SEC), '+inf', 'WITHSCORES')
  local ends, ks, starts = {}, {}, {}
  for i = 1, #raw, 2 do
    local s, k = parse(raw[i])
    if s < hi then
      ends[#ends + 1] = tonumber(raw[i + 1]); ks[#ks + 1] = k
      starts[#starts + 1] = {s, k}
    end
  end
  table.sort(starts, function(a, c) return a[1] < c[1] end)
  local worst, started, ended, si, ei = 0, 0, 0, 1, 1
  local function at(c)
    while si <= #starts and starts[si][1] <= c do started = started + starts[si][2]; si = si + 1 end
    while ei <= #ends and ends[ei] <= c - SEC do ended = ended + ks[ei]; ei = ei + 1 end
    if started - ended > worst then worst = started - ended end
  end
  at(lo)
  for _, sk in ipairs(starts) do
    if sk[1] > lo then at(sk[1]) end
  end
  return worst
end

local function fits(b, x)
  return load(b, x, x + REACH + SEC) + n <= b.cap
end

-- Earliest send >= x when every booked send starts <= x: then no window ending at or after x gains a token,
-- so only the window ending at x counts, and it holds the sends whose reach is after x - 1 s. Drop the
-- latest-reaching ones out of it until n fits. Monotone: if x fits, every later time does.
local function earliest_append(b, x)
  local need = b.cap - n  -- the sends reaching past x - 1 s may hold at most this many tokens
  if b.bulk_until <= x - SEC then
    -- Every send that can reach past x - 1 s is one token: the (need + 1)-th latest reach decides.
    local m = redis.call('ZREVRANGEBYSCORE', b.reach, '+inf', '(' .. fmt(x - SEC), 'WITHSCORES', 'LIMIT', need, 1)
    if m[2] then return math.max(x, tonumber(m[2]) + SEC) end
    return x
  end
  local members = redis.call('ZREVRANGEBYSCORE', b.reach, '+inf', '(' .. fmt(x - SEC), 'WITHSCORES',
                             'LIMIT', 0, need + 1)
  local cum = 0
  for i = 1, #members, 2 do
    local _, k = parse(members[i])
    cum = cum + k
    if cum > need then return math.max(x, tonumber(members[i + 1]) + SEC) end
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
    if h + n * b.T <= e and fits(b, h) then return h end
    h = math.max(h, e + k * b.T)
  end
  return earliest_append(b, math.max(h, b.tat))
end

-- The earliest time both budgets accept. Holes are not monotone, so repeat until neither moves; if that
-- does not settle quickly, append on both (appending is monotone, so one pass settles).
-- Never sooner than the caller can send: a send booked for now that leaves after the caller's last round
-- trip would leave late.
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
local reach = send + REACH
for _, b in ipairs(budgets) do
  redis.call('ZADD', b.log, fmt(send), member)
  redis.call('ZADD', b.reach, fmt(reach), member)
  local tat = b.tat
  if send >= b.tat then
    -- Appended: pace the next send n/rate after this one's GCRA slot (a wait the window check imposed
    -- counts toward that spacing, so bulks do not pay twice), and at least 1/rate after this send.
    tat = math.max(math.max(now, b.tat) + n * b.T, send + b.T)
    redis.call('HSET', b.state, 'tat', fmt(tat), 'prev_tat', fmt(b.tat), 'last', member)
  end
  if n > 1 and reach > b.bulk_until then redis.call('HSET', b.state, 'bulk_until', fmt(reach)) end
  -- Idle budgets leave nothing behind: everything is moot a second after the last send's reach.
  local ttl = math.ceil((math.max(tat, reach) + 2 * SEC - now) / 1000) + keep_ms
  redis.call('PEXPIRE', b.state, ttl)
  redis.call('PEXPIRE', b.log, ttl)
  redis.call('PEXPIRE', b.reach, ttl)
end
return {1, fmt(send), fmt(now), '0', max_tokens, member}

-- The Redis limiter's one script. Every call reads Redis's own clock (TIME) and decides
-- or updates every dimension of one key atomically. Loaded once, called by EVALSHA.
--
-- KEYS[1]      the key's state hash: meta fields ('pause' until µs, 'adm', 'den', 'tok',
--              'seq') and per-dimension fields '<label>:a' / ':b' / ':c'
-- KEYS[1 + i]  dimension i's side key: a ZSET for 'log' (entries) and 'conc' (leases)
-- ARGV[1] op ('admit' | 'record' | 'stats' | 'reset' | 'deny'), ARGV[2] idle TTL in ms,
-- ARGV[3] n, then 7 values per dimension: code, label, amount, burst, window µs,
-- unit (scaled units per token), rate (scaled units per µs), then the op's own values.
--
-- Numbers are Lua doubles: every product below stays an exact integer while
-- amount · window_µs / gcd(amount, window_µs) < 2^52 (checked by the client).
-- Numbers are never turned into strings with tostring/.. (that prints 14 digits):
-- members are built with string.format('%d').

local hash = KEYS[1]
local op = ARGV[1]
local ttl_ms = tonumber(ARGV[2])
local n = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local function ceil_div(a, b)
  local q = math.floor(a / b)
  if q * b < a then q = q + 1 elseif q > 0 and (q - 1) * b >= a then q = q - 1 end
  return q
end

local function floor_div(a, b)
  local q = math.floor(a / b)
  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end
  return q
end

local function member(seq, cost)
  return string.format('%d:%d', seq, cost)
end

local function member_cost(m)
  return tonumber(string.match(m, ':(%d+)$')) or 0
end

-- ---------------------------------------------------------------- dimensions
local dims = {}
local needs_seq = false
local fields = { 'pause', 'adm', 'den', 'tok', 'seq' }
for i = 1, n do
  local o = 3 + (i - 1) * 7
  local d = {
    code = ARGV[o + 1], label = ARGV[o + 2], amount = tonumber(ARGV[o + 3]),
    burst = tonumber(ARGV[o + 4]), window = tonumber(ARGV[o + 5]),
    unit = tonumber(ARGV[o + 6]), rate = tonumber(ARGV[o + 7]), side = KEYS[i + 1],
  }
  d.full = d.burst * d.unit
  if d.code == 'log' or d.code == 'conc' then needs_seq = true end
  dims[i] = d
  fields[#fields + 1] = d.label .. ':a'
  fields[#fields + 1] = d.label .. ':b'
  fields[#fields + 1] = d.label .. ':c'
end
local argi = 3 + n * 7
local function arg()
  argi = argi + 1
  return ARGV[argi]
end

local vals = redis.call('HMGET', hash, unpack(fields))
local meta = {
  pause = tonumber(vals[1]) or 0, adm = tonumber(vals[2]) or 0, den = tonumber(vals[3]) or 0,
  tok = tonumber(vals[4]) or 0, seq = tonumber(vals[5]) or 0,
}
for i = 1, n do
  local d = dims[i]
  d.a = tonumber(vals[5 + (i - 1) * 3 + 1])
  d.b = tonumber(vals[5 + (i - 1) * 3 + 2])
  d.c = tonumber(vals[5 + (i - 1) * 3 + 3])
end

-- Each strategy: load(d, writes) brings the state to `now`; check(d, cost) -> nil or the
-- exact wait in µs; commit(d, cost, seq); adjust(d, delta, adm, seq, charged);
-- remaining(d); reset_after(d); clamp(d, remaining); store(d, out) appends hash fields.
-- Each strategy's table is built only when a dimension uses it (the chunk runs on every
-- call: building all of them would cost more than most operations).
local MAKE = {}

-- Token bucket: a = level (scaled), b = time of the last refill (µs).
MAKE.tb = function() return {
  load = function(d)
    if d.a == nil then d.a = d.full; d.b = now; return end
    if now > d.b then
      local missing = d.full - d.a
      if missing > 0 then
        local el = now - d.b
        if el >= ceil_div(missing, d.rate) then d.a = d.full else d.a = d.a + el * d.rate end
      end
      d.b = now
    end
  end,
  check = function(d, cost)
    local need = cost * d.unit
    if d.a >= need then return nil end
    return ceil_div(need - d.a, d.rate)
  end,
  commit = function(d, cost) d.a = d.a - cost * d.unit end,
  adjust = function(d, delta) d.a = math.min(d.full, d.a + delta * d.unit) end,
  remaining = function(d) return floor_div(math.max(d.a, 0), d.unit) end,
  reset_after = function(d) return ceil_div(math.max(d.full - d.a, 0), d.rate) end,
  clamp = function(d, rem) d.a = math.min(d.a, rem * d.unit) end,
  store = function(d, out)
    out[#out + 1] = d.label .. ':a'; out[#out + 1] = d.a
    out[#out + 1] = d.label .. ':b'; out[#out + 1] = d.b
  end,
} end

-- GCRA: a = theoretical arrival time (whole µs), b = its fraction in 1/rate µs. Kept as
-- `debt` = (TAT - now) · rate scaled units while the script runs (0 when TAT <= now).
-- 'leaky' is GCRA with zero tolerance: admitted only when TAT <= now.
local function gcra(leaky)
  local function load(d)
    local tat, frac = d.a or 0, d.b or 0
    if tat >= now then d.debt = (tat - now) * d.rate + frac else d.debt = 0 end
  end
  local function store(d, out)
    local whole = floor_div(d.debt, d.rate)
    out[#out + 1] = d.label .. ':a'; out[#out + 1] = now + whole
    out[#out + 1] = d.label .. ':b'; out[#out + 1] = d.debt - whole * d.rate
  end
  local function commit(d, cost) d.debt = d.debt + cost * d.unit end
  local function adjust(d, delta) d.debt = math.max(0, d.debt - delta * d.unit) end
  local function reset_after(d) return ceil_div(d.debt, d.rate) end
  if leaky then
    return {
      load = load, commit = commit, adjust = adjust, reset_after = reset_after, store = store,
      check = function(d)
        if d.debt <= 0 then return nil end
        return ceil_div(d.debt, d.rate)
      end,
      remaining = function(d) if d.debt <= 0 then return d.amount end return 0 end,
      clamp = function(d, rem) if rem <= 0 then d.debt = math.max(d.debt, d.unit) end end,
    }
  end
  return {
    load = load, commit = commit, adjust = adjust, reset_after = reset_after, store = store,
    check = function(d, cost)
      local over = d.debt + cost * d.unit - d.full
      if over <= 0 then return nil end
      return ceil_div(over, d.rate)
    end,
    remaining = function(d) return floor_div(math.max(d.full - d.debt, 0), d.unit) end,
    clamp = function(d, rem) d.debt = math.max(d.debt, d.full - rem * d.unit) end,
  }
end
MAKE.gcra = function() return gcra(false) end
MAKE.leaky = function() return gcra(true) end

-- Sliding-window log: side ZSET of '<seq>:<cost>' members scored by admission time (µs);
-- a = the sum of the costs still stored. An entry at s counts while now - s < window.
MAKE.log = function() return {
  load = function(d)
    d.a = d.a or 0
    d.cut = now - d.window
    local old = redis.call('ZRANGEBYSCORE', d.side, '-inf', d.cut)
    d.expired = #old
    for _, m in ipairs(old) do d.a = d.a - member_cost(m) end
    if d.a < 0 then d.a = 0 end
  end,
  check = function(d, cost)
    local excess = d.a + cost - d.amount
    if excess <= 0 then return nil end
    local freed, offset = 0, 0
    while true do
      local page = redis.call('ZRANGEBYSCORE', d.side, '(' .. string.format('%d', d.cut), '+inf',
        'WITHSCORES', 'LIMIT', offset, 64)
      if #page == 0 then return d.window end
      for j = 1, #page, 2 do
        freed = freed + member_cost(page[j])
        if freed >= excess then return tonumber(page[j + 1]) + d.window - now end
      end
      offset = offset + 64
    end
  end,
  commit = function(d, cost, seq)
    if cost > 0 then
      redis.call('ZADD', d.side, now, member(seq, cost))
      d.a = d.a + cost
    end
  end,
  adjust = function(d, delta, adm, seq, charged)
    if adm > d.cut and charged > 0 then
      local m = member(seq, charged)
      if redis.call('ZSCORE', d.side, m) then
        local cost = math.max(charged - delta, 0)
        redis.call('ZREM', d.side, m)
        if cost > 0 then redis.call('ZADD', d.side, adm, member(seq, cost)) end
        d.a = math.max(d.a + cost - charged, 0)
        return
      end
    end
    if delta < 0 then
      meta.seq = meta.seq + 1
      redis.call('ZADD', d.side, now, member(meta.seq, -delta))
      d.a = d.a - delta
    end
  end,
  remaining = function(d) return math.max(d.amount - d.a, 0) end,
  reset_after = function(d)
    if d.a <= 0 then return 0 end
    local last = redis.call('ZRANGE', d.side, -1, -1, 'WITHSCORES')
    if #last == 0 then return 0 end
    return math.max(tonumber(last[2]) + d.window - now, 0)
  end,
  clamp = function(d, rem)
    local extra = d.amount - rem - d.a
    if extra > 0 then
      meta.seq = meta.seq + 1
      redis.call('ZADD', d.side, now, member(meta.seq, extra))
      d.a = d.a + extra
    end
  end,
  store = function(d, out)
    if d.expired > 0 then redis.call('ZREMRANGEBYSCORE', d.side, '-inf', d.cut) end
    redis.call('PEXPIRE', d.side, ttl_ms)
    out[#out + 1] = d.label .. ':a'; out[#out + 1] = d.a
  end,
} end

-- Sliding-window counter: fixed windows aligned to multiples of the window on Redis's
-- clock; a = index of the current window, b = previous window's count, c = current
-- count. Estimate = b · (W - e) / W + c, e = time into the current window.
MAKE.ctr = function() return {
  load = function(d)
    local W = d.window
    local idx = floor_div(now, W)
    if d.a == nil then d.a = idx; d.b = 0; d.c = 0
    elseif idx == d.a + 1 then d.b = d.c; d.c = 0; d.a = idx
    elseif idx > d.a + 1 then d.b = 0; d.c = 0; d.a = idx end
    d.e = math.max(now - d.a * W, 0)
    if d.e >= W then d.e = W - 1 end
  end,
  check = function(d, cost)
    local W, A = d.window, d.amount
    if d.c + cost <= A and d.b * (W - d.e) <= (A - d.c - cost) * W then return nil end
    if d.c + cost <= A and d.b > 0 then
      local at = W - floor_div((A - d.c - cost) * W, d.b)
      if at < W then return math.max(at - d.e, 1) end
    end
    local at = 0
    if d.c > 0 then at = math.max(W - floor_div((A - cost) * W, d.c), 0) end
    if at < W then return (d.a + 1) * W + at - now end
    return (d.a + 2) * W - now
  end,
  commit = function(d, cost) d.c = d.c + cost end,
  adjust = function(d, delta, adm)
    local W = d.window
    local idx = -1
    if adm >= 0 then idx = floor_div(adm, W) end
    if idx == d.a then d.c = math.max(d.c - delta, 0)
    elseif idx == d.a - 1 then d.b = math.max(d.b - delta, 0)
    elseif delta < 0 then d.c = d.c - delta end
  end,
  remaining = function(d)
    local W = d.window
    local est = d.b * (W - d.e) + d.c * W
    return math.max(floor_div(d.amount * W - est, W), 0)
  end,
  reset_after = function(d)
    if d.c > 0 then return (d.a + 2) * d.window - now end
    if d.b > 0 then return (d.a + 1) * d.window - now end
    return 0
  end,
  clamp = function(d, rem)
    local W = d.window
    local missing = (d.amount - rem) * W - (d.b * (W - d.e) + d.c * W)
    if missing > 0 then d.c = d.c + ceil_div(missing, W) end
  end,
  store = function(d, out)
    out[#out + 1] = d.label .. ':a'; out[#out + 1] = d.a
    out[#out + 1] = d.label .. ':b'; out[#out + 1] = d.b
    out[#out + 1] = d.label .. ':c'; out[#out + 1] = d.c
  end,
} end

-- Concurrency slots: side ZSET of lease ids scored by lease expiry (µs). A lease is
-- released by the permit, or expires so that a dead process cannot hold slots forever.
MAKE.conc = function() return {
  load = function(d)
    redis.call('ZREMRANGEBYSCORE', d.side, '-inf', now)
    d.a = redis.call('ZCARD', d.side)
  end,
  check = function(d, cost)
    if d.a + cost <= d.amount then return nil end
    local first = redis.call('ZRANGE', d.side, 0, 0, 'WITHSCORES')
    local wait = d.retry
    if #first > 0 then wait = math.min(wait, tonumber(first[2]) - now) end
    return math.max(wait, 1)
  end,
  commit = function(d, cost, seq)
    if cost > 0 then
      redis.call('ZADD', d.side, now + d.lease, string.format('%d', seq))
      d.a = d.a + cost
    end
  end,
  adjust = function() end,
  remaining = function(d) return math.max(d.amount - d.a, 0) end,
  reset_after = function(d)
    if d.a == 0 then return 0 end
    local last = redis.call('ZRANGE', d.side, -1, -1, 'WITHSCORES')
    if #last == 0 then return 0 end
    return math.max(tonumber(last[2]) - now, 0)
  end,
  clamp = function() end,
  store = function(d) redis.call('PEXPIRE', d.side, ttl_ms) end,
} end

local S = setmetatable({}, { __index = function(t, code)
  local s = MAKE[code]()
  t[code] = s
  return s
end })

local function release(count)
  for _ = 1, count do
    local id = arg()
    for i = 1, n do
      if dims[i].code == 'conc' then redis.call('ZREM', dims[i].side, id) end
    end
  end
end

-- Writes the dimensions and the meta fields named in `changed`, then extends the TTL.
local function save(changed)
  local out = {}
  for _, f in ipairs(changed) do out[#out + 1] = f; out[#out + 1] = meta[f] end
  for i = 1, n do S[dims[i].code].store(dims[i], out) end
  redis.call('HSET', hash, unpack(out))
  local ttl = ttl_ms
  if meta.pause > now then
    local pause_ms = ceil_div(meta.pause - now, 1000) + 1000
    if pause_ms > ttl then ttl = pause_ms end
  end
  redis.call('PEXPIRE', hash, ttl)
end

-- ---------------------------------------------------------------- operations
if op == 'admit' then
  -- count_denial, requests, tokens, n costs, lease µs, retry µs for full concurrency
  local count_denial = tonumber(arg())
  local requests = tonumber(arg())
  local tokens = tonumber(arg())
  local costs = {}
  for i = 1, n do costs[i] = tonumber(arg()) end
  local lease = tonumber(arg())
  local retry = tonumber(arg())
  if meta.pause > now then
    if count_denial == 1 then
      redis.call('HINCRBY', hash, 'den', 1)
    end
    return { 2, now, 0, meta.pause - now }
  end
  local worst, worst_wait = 0, -1
  for i = 1, n do
    local d = dims[i]
    d.lease = lease; d.retry = retry
    S[d.code].load(d)
    local wait = S[d.code].check(d, costs[i])
    if wait ~= nil and wait > worst_wait then worst, worst_wait = i, wait end
  end
  if worst > 0 then
    if count_denial == 1 then
      redis.call('HINCRBY', hash, 'den', 1)
      redis.call('PEXPIRE', hash, math.max(ttl_ms, redis.call('PTTL', hash)))
    end
    return { 0, now, worst, worst_wait }
  end
  local changed = { 'adm', 'tok' }
  if needs_seq then
    meta.seq = meta.seq + 1
    changed[3] = 'seq'
  end
  for i = 1, n do S[dims[i].code].commit(dims[i], costs[i], meta.seq) end
  meta.adm = meta.adm + requests
  meta.tok = meta.tok + tokens
  save(changed)
  return { 1, now, meta.seq, 0 }
elseif op == 'record' then
  -- n deltas (+refund), n clamps (-1 = none), n charged costs, admission µs (-1),
  -- seq, tokens delta for the 'tok' total, pause µs (-1 = none), releases count, ids
  local deltas, clamps, charged = {}, {}, {}
  for i = 1, n do deltas[i] = tonumber(arg()) end
  for i = 1, n do clamps[i] = tonumber(arg()) end
  for i = 1, n do charged[i] = tonumber(arg()) end
  local adm = tonumber(arg())
  local seq = tonumber(arg())
  local tok_delta = tonumber(arg())
  local pause = tonumber(arg())
  local releases = tonumber(arg())
  for i = 1, n do
    local d = dims[i]
    d.lease = 0; d.retry = 0
    S[d.code].load(d)
  end
  release(releases)
  for i = 1, n do
    local d, s = dims[i], S[dims[i].code]
    if deltas[i] ~= 0 then s.adjust(d, deltas[i], adm, seq, charged[i]) end
    if clamps[i] >= 0 then s.clamp(d, clamps[i]) end
  end
  meta.tok = math.max(meta.tok - tok_delta, 0)
  if pause >= 0 and now + pause > meta.pause then meta.pause = now + pause end
  save({ 'pause', 'tok', 'seq' })
  return { now, math.max(meta.pause - now, 0) }
elseif op == 'stats' then
  local out = { now, math.max(meta.pause - now, 0), meta.adm, meta.den, meta.tok }
  for i = 1, n do
    local d = dims[i]
    d.lease = 0; d.retry = 0
    S[d.code].load(d)
    out[#out + 1] = S[d.code].remaining(d)
    out[#out + 1] = S[d.code].reset_after(d)
  end
  return out
elseif op == 'reset' then
  redis.call('DEL', unpack(KEYS))
  return { now }
elseif op == 'deny' then
  redis.call('HINCRBY', hash, 'den', 1)
  redis.call('PEXPIRE', hash, math.max(ttl_ms, redis.call('PTTL', hash)))
  return { now }
end
return redis.error_reply('unknown limiter op ' .. tostring(op))

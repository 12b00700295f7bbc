-- The Redis limiter's one script. Every call reads Redis's own clock (TIME) and decides
-- or updates every dimension of one key atomically.
--
-- Loaded as a function library (FUNCTION LOAD, Redis >= 7: the client prepends the
-- `#!lua name=…` line) and called by FCALL, or — on older servers — loaded as a script
-- and called by EVALSHA. As a library the helpers below and the parsed plans are built
-- once; as a script the chunk runs on every call. `run` does the work either way.
--
-- KEYS[1]      the key's state: one string, written whole with its TTL (SET … PX)
-- KEYS[2…]     the side keys, one per 'log' (entries) or 'conc' (leases) dimension, in
--              dimension order: sorted sets
-- ARGV[1] op ('admit' | 'record' | 'stats' | 'reset' | 'deny'), ARGV[2] idle TTL in ms
-- (decimal), ARGV[3] the key's plan, ARGV[4] the op's values ('admit': one or more
-- attempts back to back, decided in order in one call).
--
-- Numbers travel and rest as little-endian IEEE doubles packed with Redis's `struct`
-- library: no decimal printing or parsing (that was most of the script's cost), and
-- exact, as every quantity is an integer below 2^53 (checked by the client:
-- amount · window_µs / gcd(amount, window_µs) < 2^52).
--   plan  = '<B' n, then per dimension '<BBc0ddddd' code, #label, label, amount,
--           burst, window µs, unit (scaled units per token), rate (scaled units per µs);
--           codes: 1 tb, 2 gcra, 3 leaky, 4 log, 5 ctr, 6 conc
--   state = '<ddddd' pause until µs, admitted, denied, tokens charged, sequence number,
--           then per dimension but 'conc' '<Bc0ddd' #label, label, a, b, c. Segments of
--           labels this call does not know (another process's config) are kept as they
--           are. A missing segment is a fresh dimension.
-- Lua numbers are never turned into strings with tostring/.. (that prints 14 digits):
-- members and TTLs are built with string.format('%d').

local TB, GCRA, LEAKY, LOG, CTR, CONC = 1, 2, 3, 4, 5, 6

-- Library functions, bound on the first call (a library may not touch them at load).
local call, floor, max, min, fmt, spack, sunpack, ssub

-- Per-call state: every one of these is set by `run` before any helper reads it.
local key, ttl_ms, now, n, dims, pause, adm, den, tok, seq, foreign, lease, retry

-- Parsed plans by plan string, reused between calls of a library (a script starts
-- empty each time). Bounded: cleared when it grows past PLAN_CACHE entries.
local plans, nplans = {}, 0
local PLAN_CACHE = 512

local function ceil_div(a, b)
  local q = floor(a / b)
  if q * b < a then q = q + 1 elseif q > 0 and (q - 1) * b >= a then q = q - 1 end
  return q
end

local function floor_div(a, b)
  local q = floor(a / b)
  if q * b > a then q = q - 1 elseif (q + 1) * b <= a then q = q + 1 end
  return q
end

local function member(s, cost)
  return fmt('%d:%d', s, cost)
end

local function member_cost(m)
  return tonumber(string.match(m, ':(%d+)$')) or 0
end

-- The plan's dimensions: cached tables whose per-call fields `run` resets.
local function parse_plan(plan)
  local count, pos = sunpack('<B', plan)
  local list = { n = count }
  for i = 1, count do
    local code, label, amount, burst, window, unit, rate, nxt =
      sunpack('<BBc0ddddd', plan, pos)
    pos = nxt
    -- Every field a strategy sets is named here, so the table is sized once.
    list[i] = {
      code = code, label = label, side = false, amount = amount, window = window,
      unit = unit, rate = rate, full = burst * unit, cost = 0,
      a = false, b = false, c = false, debt = 0, cut = 0, expired = 0, e = 0,
      adds = {}, nadd = 0,
    }
  end
  if nplans >= PLAN_CACHE then plans, nplans = {}, 0 end
  plans[plan] = list
  nplans = nplans + 1
  return list
end

-- Writes the state string; `ttl` is ms (a number or a decimal string), nil = KEEPTTL.
local function save(ttl)
  local s = spack('<ddddd', pause, adm, den, tok, seq)
  for i = 1, n do
    local d = dims[i]
    if d.code ~= CONC and d.a ~= nil then
      s = s .. spack('<Bc0ddd', #d.label, d.label, d.a, d.b or 0, d.c or 0)
    end
  end
  s = s .. foreign
  if ttl == nil then
    call('SET', key, s, 'KEEPTTL')
  elseif type(ttl) == 'number' then
    call('SET', key, s, 'PX', fmt('%d', ttl))
  else
    call('SET', key, s, 'PX', ttl)
  end
end

-- Strategy state per dimension: `a`, `b`, `c` as stored (nil when fresh).
-- tb:    a = level (scaled), b = time of the last refill (µs).
-- gcra/leaky: a = theoretical arrival time (whole µs), b = its fraction in 1/rate µs;
--        kept as `debt` = (TAT - now) · rate scaled units while the script runs (0 when
--        TAT <= now). 'leaky' is GCRA with zero tolerance: admitted only when TAT <= now.
-- log:   side ZSET of '<seq>:<cost>' members scored by admission time (µs); a = the sum
--        of the costs still stored. An entry at s counts while now - s < window.
-- ctr:   fixed windows aligned to multiples of the window on Redis's clock; a = index of
--        the current window, b = previous window's count, c = current count. Estimate =
--        b · (W - e) / W + c, e = time into the current window.
-- conc:  side ZSET of lease ids scored by lease expiry (µs). A lease is released by the
--        permit, or expires so that a dead process cannot hold slots forever.

-- Sends the side-key members `commit` queued ('log' entries, 'conc' leases) in one
-- ZADD: a batch of admissions costs one call per side key instead of one per admission.
local function flush(d)
  if d.nadd > 0 then
    call('ZADD', d.side, unpack(d.adds, 1, d.nadd))
    d.nadd = 0
  end
end

-- Brings the dimension's state to `now`.
local function load(d)
  local code = d.code
  if code == TB then
    if d.a == nil then d.a = d.full; d.b = now; return end
    if now > d.b then
      local missing = d.full - d.a
      if missing > 0 then
        local el = now - d.b
        if el >= ceil_div(missing, d.rate) then d.a = d.full else d.a = d.a + el * d.rate end
      end
      d.b = now
    end
  elseif code == GCRA or code == LEAKY then
    local tat, frac = d.a or 0, d.b or 0
    if tat >= now then d.debt = (tat - now) * d.rate + frac else d.debt = 0 end
  elseif code == CTR then
    local W = d.window
    local idx = floor_div(now, W)
    if d.a == nil then d.a = idx; d.b = 0; d.c = 0
    elseif idx == d.a + 1 then d.b = d.c; d.c = 0; d.a = idx
    elseif idx > d.a + 1 then d.b = 0; d.c = 0; d.a = idx end
    d.e = max(now - d.a * W, 0)
    if d.e >= W then d.e = W - 1 end
  elseif code == LOG then
    d.a = d.a or 0
    d.cut = now - d.window
    local old = call('ZRANGEBYSCORE', d.side, '-inf', d.cut)
    d.expired = #old
    for j = 1, #old do d.a = d.a - member_cost(old[j]) end
    if d.a < 0 then d.a = 0 end
  else -- conc
    call('ZREMRANGEBYSCORE', d.side, '-inf', now)
    d.a = call('ZCARD', d.side)
  end
end

-- nil when `cost` fits now, else the exact wait in µs.
local function check(d, cost)
  local code = d.code
  if code == TB then
    local need = cost * d.unit
    if d.a >= need then return nil end
    return ceil_div(need - d.a, d.rate)
  elseif code == GCRA then
    local over = d.debt + cost * d.unit - d.full
    if over <= 0 then return nil end
    return ceil_div(over, d.rate)
  elseif code == LEAKY then
    if d.debt <= 0 then return nil end
    return ceil_div(d.debt, d.rate)
  elseif code == CTR then
    local W, A = d.window, d.amount
    if d.c + cost <= A and d.b * (W - d.e) <= (A - d.c - cost) * W then return nil end
    if d.c + cost <= A and d.b > 0 then
      local at = W - floor_div((A - d.c - cost) * W, d.b)
      if at < W then return max(at - d.e, 1) end
    end
    local at = 0
    if d.c > 0 then at = max(W - floor_div((A - cost) * W, d.c), 0) end
    if at < W then return (d.a + 1) * W + at - now end
    return (d.a + 2) * W - now
  elseif code == LOG then
    local excess = d.a + cost - d.amount
    if excess <= 0 then return nil end
    flush(d)
    local freed, offset = 0, 0
    while true do
      local page = call('ZRANGEBYSCORE', d.side, '(' .. fmt('%d', d.cut), '+inf',
        'WITHSCORES', 'LIMIT', offset, 64)
      if #page == 0 then return d.window end
      for j = 1, #page, 2 do
        freed = freed + member_cost(page[j])
        if freed >= excess then return tonumber(page[j + 1]) + d.window - now end
      end
      offset = offset + 64
    end
  else -- conc
    if d.a + cost <= d.amount then return nil end
    flush(d)
    local first = call('ZRANGE', d.side, 0, 0, 'WITHSCORES')
    local wait = retry
    if #first > 0 then wait = min(wait, tonumber(first[2]) - now) end
    return max(wait, 1)
  end
end

-- Charges `cost`; `s` is the admission's sequence number. Side-key members are queued
-- (see `flush`): `check` and `store` send them before they read or finish the side key.
local function commit(d, cost, s)
  local code = d.code
  if code == TB then d.a = d.a - cost * d.unit
  elseif code == GCRA or code == LEAKY then d.debt = d.debt + cost * d.unit
  elseif code == CTR then d.c = d.c + cost
  elseif code == LOG then
    if cost > 0 then
      local k = d.nadd
      d.adds[k + 1] = now; d.adds[k + 2] = member(s, cost); d.nadd = k + 2
      d.a = d.a + cost
    end
  elseif cost > 0 then -- conc
    local k = d.nadd
    d.adds[k + 1] = now + lease; d.adds[k + 2] = fmt('%d', s); d.nadd = k + 2
    d.a = d.a + cost
  end
end

-- Turns the loaded state back into stored form (a, b, c); trims side keys and extends
-- their TTL.
local function store(d)
  local code = d.code
  if code == GCRA or code == LEAKY then
    local whole = floor_div(d.debt, d.rate)
    d.a = now + whole
    d.b = d.debt - whole * d.rate
  elseif code == LOG then
    flush(d)
    if d.expired > 0 then call('ZREMRANGEBYSCORE', d.side, '-inf', d.cut) end
    call('PEXPIRE', d.side, ttl_ms)
  elseif code == CONC then
    flush(d)
    call('PEXPIRE', d.side, ttl_ms)
  end
end

-- Refund (+) or extra charge (-) of `delta` for a permit admitted at `adm_at` µs under
-- sequence number `s` that charged `charged`.
local function adjust(d, delta, adm_at, s, charged)
  local code = d.code
  if code == TB then d.a = min(d.full, d.a + delta * d.unit)
  elseif code == GCRA or code == LEAKY then d.debt = max(0, d.debt - delta * d.unit)
  elseif code == CTR then
    local W = d.window
    local idx = -1
    if adm_at >= 0 then idx = floor_div(adm_at, W) end
    if idx == d.a then d.c = max(d.c - delta, 0)
    elseif idx == d.a - 1 then d.b = max(d.b - delta, 0)
    elseif delta < 0 then d.c = d.c - delta end
  elseif code == LOG then
    if adm_at > d.cut and charged > 0 then
      local m = member(s, charged)
      if call('ZSCORE', d.side, m) then
        local cost = max(charged - delta, 0)
        call('ZREM', d.side, m)
        if cost > 0 then call('ZADD', d.side, adm_at, member(s, cost)) end
        d.a = max(d.a + cost - charged, 0)
        return
      end
    end
    if delta < 0 then
      seq = seq + 1
      call('ZADD', d.side, now, member(seq, -delta))
      d.a = d.a - delta
    end
  end
end

-- Lowers what is left to at most `rem` (a server-reported remaining count).
local function clamp(d, rem)
  local code = d.code
  if code == TB then d.a = min(d.a, rem * d.unit)
  elseif code == GCRA then d.debt = max(d.debt, d.full - rem * d.unit)
  elseif code == LEAKY then
    if rem <= 0 then d.debt = max(d.debt, d.unit) end
  elseif code == CTR then
    local W = d.window
    local missing = (d.amount - rem) * W - (d.b * (W - d.e) + d.c * W)
    if missing > 0 then d.c = d.c + ceil_div(missing, W) end
  elseif code == LOG then
    local extra = d.amount - rem - d.a
    if extra > 0 then
      seq = seq + 1
      call('ZADD', d.side, now, member(seq, extra))
      d.a = d.a + extra
    end
  end
end

local function remaining(d)
  local code = d.code
  if code == TB then return floor_div(max(d.a, 0), d.unit)
  elseif code == GCRA then return floor_div(max(d.full - d.debt, 0), d.unit)
  elseif code == LEAKY then
    if d.debt <= 0 then return d.amount end
    return 0
  elseif code == CTR then
    local W = d.window
    local est = d.b * (W - d.e) + d.c * W
    return max(floor_div(d.amount * W - est, W), 0)
  end
  return max(d.amount - d.a, 0) -- log, conc
end

local function reset_after(d)
  local code = d.code
  if code == TB then return ceil_div(max(d.full - d.a, 0), d.rate)
  elseif code == GCRA or code == LEAKY then return ceil_div(d.debt, d.rate)
  elseif code == CTR then
    if d.c > 0 then return (d.a + 2) * d.window - now end
    if d.b > 0 then return (d.a + 1) * d.window - now end
    return 0
  end
  if d.a <= 0 then return 0 end -- log, conc
  local last = call('ZRANGE', d.side, -1, -1, 'WITHSCORES')
  if #last == 0 then return 0 end
  if code == LOG then return max(tonumber(last[2]) + d.window - now, 0) end
  return max(tonumber(last[2]) - now, 0)
end

-- ---------------------------------------------------------------- operations
-- One or more admission attempts, decided in order as if they arrived one after another
-- at `now`: each all-or-nothing over the key's dimensions, each answered with its own
-- four numbers { 1, now, seq, 0 } | { 0, now, refusing dimension, exact wait µs } |
-- { 2, now, 0, pause left µs }. The state is written once for the whole batch.
local function admit(vals, blob)
  -- per entry: count_denial, requests, tokens, lease µs, retry µs for full
  -- concurrency, then n costs
  local size = 40 + 8 * n
  local k = #vals / size
  local out = {}
  if pause > now then
    local counted, pos = 0, 1
    for j = 1, k do
      counted = counted + sunpack('<d', vals, pos)
      pos = pos + size
      local o = 4 * j
      out[o - 3] = 2; out[o - 2] = now; out[o - 1] = 0; out[o] = pause - now
    end
    if counted > 0 then
      den = den + counted
      save(nil)
    end
    return out
  end
  local numbered = false
  for i = 1, n do
    local d = dims[i]
    load(d)
    if d.code == LOG or d.code == CONC then numbered = true end
  end
  local committed, denied, pos = false, 0, 1
  for j = 1, k do
    local counted, requests, tokens
    counted, requests, tokens, lease, retry, pos = sunpack('<ddddd', vals, pos)
    local worst, worst_wait = 0, -1
    for i = 1, n do
      local d = dims[i]
      d.cost, pos = sunpack('<d', vals, pos)
      local wait = check(d, d.cost)
      if wait ~= nil and wait > worst_wait then worst, worst_wait = i, wait end
    end
    local o = 4 * j
    if worst > 0 then
      denied = denied + counted
      out[o - 3] = 0; out[o - 2] = now; out[o - 1] = worst; out[o] = worst_wait
    else
      if numbered then seq = seq + 1 end
      for i = 1, n do
        local d = dims[i]
        commit(d, d.cost, seq)
      end
      adm = adm + requests
      tok = tok + tokens
      committed = true
      out[o - 3] = 1; out[o - 2] = now; out[o - 1] = seq; out[o] = 0
    end
  end
  if committed then
    for i = 1, n do store(dims[i]) end
    den = den + denied
    -- Not paused (checked above): the idle TTL is the whole TTL.
    save(ttl_ms)
  elseif denied > 0 then
    -- Only `den` changes: the rest of the state is written back as it was read.
    local ttl = fmt('%d', max(ttl_ms + 0, call('PTTL', key)))
    local rest = ''
    if blob then rest = ssub(blob, 41) end
    call('SET', key, spack('<ddddd', pause, adm, den + denied, tok, seq) .. rest, 'PX', ttl)
  end
  return out
end

local function record(vals)
  -- admission µs (-1), seq, tokens delta for the 'tok' total, pause µs (-1 = none),
  -- releases count, then per dimension: delta (+refund), clamp (-1 = none), charged
  -- cost; then the released lease ids
  local adm_at, s, tok_delta, pause_for, releases, pos = sunpack('<ddddd', vals)
  for i = 1, n do load(dims[i]) end
  local changes = pos
  pos = pos + n * 24
  for _ = 1, releases do
    local id
    id, pos = sunpack('<d', vals, pos)
    id = fmt('%d', id)
    for i = 1, n do
      if dims[i].code == CONC then call('ZREM', dims[i].side, id) end
    end
  end
  pos = changes
  for i = 1, n do
    local d = dims[i]
    local delta, rem, charged
    delta, rem, charged, pos = sunpack('<ddd', vals, pos)
    if delta ~= 0 then adjust(d, delta, adm_at, s, charged) end
    if rem >= 0 then clamp(d, rem) end
  end
  tok = max(tok - tok_delta, 0)
  if pause_for >= 0 and now + pause_for > pause then pause = now + pause_for end
  for i = 1, n do store(dims[i]) end
  local ttl = ttl_ms + 0
  if pause > now then
    local pause_ms = ceil_div(pause - now, 1000) + 1000
    if pause_ms > ttl then ttl = pause_ms end
  end
  save(ttl)
  return { now, max(pause - now, 0) }
end

local function stats()
  local out = { now, max(pause - now, 0), adm, den, tok }
  for i = 1, n do
    local d = dims[i]
    load(d)
    out[#out + 1] = remaining(d)
    out[#out + 1] = reset_after(d)
  end
  return out
end

local function run(keys, argv)
  if call == nil then
    call, floor, max, min, fmt = redis.call, math.floor, math.max, math.min, string.format
    spack, sunpack, ssub = struct.pack, struct.unpack, string.sub
  end
  key = keys[1]
  local op = argv[1]
  local t = call('TIME')
  now = t[1] * 1000000 + t[2]
  if op == 'reset' then
    call('DEL', unpack(keys))
    return { now }
  end
  if op ~= 'admit' and op ~= 'record' and op ~= 'stats' and op ~= 'deny' then
    return redis.error_reply('unknown limiter op ' .. tostring(op))
  end
  ttl_ms = argv[2]
  local plan = argv[3]
  dims = plans[plan] or parse_plan(plan)
  n = dims.n
  local side = 1
  for i = 1, n do
    local d = dims[i]
    d.a = nil; d.b = nil; d.c = nil; d.cost = 0; d.debt = 0; d.cut = 0; d.expired = 0
    d.e = 0; d.nadd = 0
    local code = d.code
    if code == LOG or code == CONC then
      side = side + 1
      d.side = keys[side]
    end
  end
  lease, retry = 0, 0
  -- A key left by an older layout (another type) reads as absent and is overwritten.
  local blob = redis.pcall('GET', key)
  if type(blob) ~= 'string' then blob = nil end
  pause, adm, den, tok, seq = 0, 0, 0, 0, 0
  foreign = ''
  if blob then
    local pos
    pause, adm, den, tok, seq, pos = sunpack('<ddddd', blob)
    local len = #blob
    while pos <= len do
      local label, a, b, c, nxt = sunpack('<Bc0ddd', blob, pos)
      local known = false
      for i = 1, n do
        local d = dims[i]
        if d.label == label and d.code ~= CONC then
          d.a = a; d.b = b; d.c = c
          known = true
          break
        end
      end
      if not known then foreign = foreign .. ssub(blob, pos, nxt - 1) end
      pos = nxt
    end
  end
  if op == 'admit' then return admit(argv[4], blob) end
  if op == 'record' then return record(argv[4]) end
  if op == 'stats' then return stats() end
  -- deny: count one denial; the TTL never shortens
  den = den + 1
  save(max(ttl_ms + 0, call('PTTL', key)))
  return { now }
end

if redis.register_function then
  redis.register_function(FUNCTION_NAME, function(keys, argv) return run(keys, argv) end)
else
  return run(KEYS, ARGV)
end

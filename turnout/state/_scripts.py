"""The Redis store's steps as Lua scripts: each check-and-count is one round trip, atomic on the server.

One hash per backend holds everything (``_local.LocalBackend``'s fields, the
same names): ``fails``, ``open_until``, ``probe_until``, ``openings``,
``full_until``, ``full_what``, and the rate window's 61 one-second slots
``s<i>`` (the second), ``r<i>`` (requests sent), ``t<i>`` (tokens),
``x<i>`` (retries), with running totals ``wr`` and ``wt`` of the seconds from
``wlo`` on, so an admission reads a few fields, not the whole window (a
second's counts leave the totals once, when the window passes it). Times are
Redis's own clock (``TIME``), so the hosts' clocks never have to agree;
scripts answer in seconds from now.

The key expires a day after its last write (``KEEP_MS``), or later while a
cooldown or a provider's limit lasts longer.

**Requests in flight** (the ``least-busy`` strategy) are one hash for every
backend, ``<prefix>:inflight``, a field per backend and process
(``<backend>\t<process>``), and a sorted set of live processes,
``<prefix>:procs``, scored by when each one's lease ends. Every admission
renews its process's lease, counts the request and answers how many requests
the *other* live processes have in flight on each backend; a process's
requests that ended ride with its next admission as decrements. A process
that dies stops renewing: at its lease's end its counts are dropped by the
next script that looks, so none leaks. **Sessions** (affinity) are keys
``<prefix>:session:<id>`` holding the backend that served them last, set by
the admission that sends them there.
"""

from __future__ import annotations

__all__ = ["ADMIT", "FAILED", "FULL", "USED", "BUDGET", "VIEW", "BUSY", "KEEP_MS"]

KEEP_MS = 86_400_000

_PRELUDE = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local k = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local function keep(ms, slack)  -- the key lives at least ms - slack more
  if redis.call('PTTL', k) < ms - (slack or 0) then redis.call('PEXPIRE', k, ms) end
end
local function correct(from)  -- ARGV[from..]: (second, tokens) pairs, estimates replaced by what answers used
  for a = from, #ARGV - 1, 2 do
    local sec, delta = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
    local v = redis.call('HMGET', k, 's' .. (sec % 61), 't' .. (sec % 61), 'wlo')
    if tonumber(v[1]) == sec then
      delta = math.max(delta, -(tonumber(v[2]) or 0))
      redis.call('HINCRBY', k, 't' .. (sec % 61), delta)
      if sec >= (tonumber(v[3]) or sec) then redis.call('HINCRBY', k, 'wt', delta) end
    end
  end
end
local function split(text)
  local f = {}
  for w in string.gmatch(text, '[^\t]+') do f[#f + 1] = w end
  return f
end
-- in flight: spec is "process\tlease\tbackend\tended1\tended2..." (backend: the one to count one more on,
-- or "-"); answers "backend=n backend=n" for the other live processes' requests
local function ended(ik, spec)  -- this process's requests that ended since it last said
  local f = split(spec)
  for j = 4, #f do
    local field = f[j] .. '\t' .. f[1]
    if redis.call('HINCRBY', ik, field, -1) <= 0 then redis.call('HDEL', ik, field) end
  end
end
local function inflight(ik, pk, spec, add)
  local f = split(spec)
  local proc, lease = f[1], tonumber(f[2])
  if add then redis.call('HINCRBY', ik, f[3] .. '\t' .. proc, 1) end
  redis.call('ZADD', pk, now + lease, proc)
  redis.call('ZREMRANGEBYSCORE', pk, '-inf', now)
  local live = {}
  for _, p in ipairs(redis.call('ZRANGE', pk, 0, -1)) do live[p] = true end
  local all = redis.call('HGETALL', ik)
  local counts, names = {}, {}
  for j = 1, #all, 2 do
    local name, owner = string.match(all[j], '^(.*)\t([^\t]*)$')
    if owner == nil or not live[owner] then
      redis.call('HDEL', ik, all[j])
    elseif owner ~= proc then
      if counts[name] == nil then names[#names + 1] = name; counts[name] = 0 end
      counts[name] = counts[name] + (tonumber(all[j + 1]) or 0)
    end
  end
  local keep_for = math.ceil(lease * 4000) + 60000
  redis.call('PEXPIRE', ik, keep_for)
  redis.call('PEXPIRE', pk, keep_for)
  local out = {}
  for _, name in ipairs(names) do out[#out + 1] = name .. '=' .. counts[name] end
  return table.concat(out, ' ')
end
local function slots(names)
  local fields = {}
  for i = 0, 60 do
    for _, n in ipairs(names) do fields[#fields + 1] = n .. i end
  end
  return redis.call('HMGET', k, unpack(fields))
end
"""

ADMIT = (
    _PRELUDE
    + """
-- KEYS: the backend, the in-flight hash, the live processes, the session (any key when there is none).
-- ARGV: tokens, mode (hold | hedge | count | again), the backend's limits "rpm tpm probe-lease keep-ms" (rpm,
-- tpm 0: none), in flight (see inflight(); "" when not counted), the session "backend\tttl-ms\tother1..."
-- ("": none), then token corrections this process owes (see USED), applied first. The answer is one string,
-- "code|wait|why|fails|openings[|second|rpm used|tpm used|in flight elsewhere]" (one reply to read, not
-- eight); code 3: the session was served last by the backend in "why", one of the others named.
correct(6)
if ARGV[4] ~= '' then ended(KEYS[2], ARGV[4]) end
local tokens, mode = tonumber(ARGV[1]), ARGV[2]
local rpm, tpm, lease, keep_ms = string.match(ARGV[3], '(%d+) (%d+) ([%d.]+) (%d+)')
rpm, tpm, lease, keep_ms = tonumber(rpm), tonumber(tpm), tonumber(lease), tonumber(keep_ms)
local function answer(...) return table.concat({...}, '|') end
local sec = math.floor(now)
local i = sec % 61
local b = redis.call('HMGET', k, 'open_until', 'probe_until', 'full_until', 'full_what', 'fails', 'openings',
                     'wr', 'wt', 'wlo', 's' .. i, 'r' .. i, 't' .. i, 'x' .. i)
local open_until, fails, openings = tonumber(b[1]) or 0, tonumber(b[5]) or 0, tonumber(b[6]) or 0
local probe = false
local holds = mode == 'hold' or mode == 'hedge'
if holds then
  if open_until > 0 then
    if now < open_until then return answer(0, tostring(open_until - now), 'cooling down', fails, openings) end
    if now < (tonumber(b[2]) or 0) then return answer(0, '0', 'probed by another request', fails, openings) end
    probe = true
  end
  local full_until = tonumber(b[3]) or 0
  if now < full_until then return answer(-1, tostring(full_until - now), b[4] or 'provider', fails, openings) end
end
local session = ARGV[5] ~= '' and split(ARGV[5]) or nil
if session and holds then  -- affinity: the session's last backend, if it is another this request may go to
  local last = redis.call('GET', KEYS[4])
  if last and last ~= session[1] then
    for j = 3, #session do
      if session[j] == last then return answer(3, '0', last, fails, openings) end
    end
  end
end
-- the window's running totals (wr requests, wt tokens) count the seconds from wlo on: take out those that left
local used_r, used_t, lo = tonumber(b[7]) or 0, tonumber(b[8]) or 0, tonumber(b[9])
if lo == nil or lo <= sec - 121 then
  used_r, used_t = 0, 0
else
  for s = lo, sec - 61 do
    local v = redis.call('HMGET', k, 's' .. (s % 61), 'r' .. (s % 61), 't' .. (s % 61))
    if tonumber(v[1]) == s then used_r, used_t = used_r - (tonumber(v[2]) or 0), used_t - (tonumber(v[3]) or 0) end
  end
end
if mode ~= 'count' and (rpm > 0 or tpm > 0) then
  local need = tokens
  if tpm > 0 and need > tpm then need = tpm end
  if tpm == 0 then need = 0 end
  local over_r = rpm > 0 and used_r + 1 > rpm
  if over_r or (tpm > 0 and used_t + need > tpm) then
    local v = slots({'s', 'r', 't'})
    local live = {}
    for j = 0, 60 do
      local s = tonumber(v[3 * j + 1])
      if s and s > sec - 61 and s <= sec then
        live[#live + 1] = {s, tonumber(v[3 * j + 2]) or 0, tonumber(v[3 * j + 3]) or 0}
      end
    end
    table.sort(live, function(x, y) return x[1] < y[1] end)
    local fr, ft, wait = used_r, used_t, 61
    for _, e in ipairs(live) do
      fr, ft = fr - e[2], ft - e[3]
      if (rpm == 0 or fr + 1 <= rpm) and (tpm == 0 or ft + need <= tpm) then wait = e[1] + 61 - now break end
    end
    redis.call('HSET', k, 'wr', used_r, 'wt', used_t, 'wlo', sec - 60)
    return answer(-1, tostring(wait), over_r and 'rpm' or 'tpm', fails, openings, sec, used_r, used_t)
  end
end
-- count it: this second's slot (started afresh if it still holds a second that left) and the totals, one write
local r, t, x = 1, tokens, 0
if tonumber(b[10]) == sec then
  r, t, x = (tonumber(b[11]) or 0) + 1, (tonumber(b[12]) or 0) + tokens, tonumber(b[13]) or 0
end
if mode == 'again' or mode == 'hedge' then x = x + 1 end
used_r, used_t = used_r + 1, used_t + tokens
if probe then
  redis.call('HSET', k, 's' .. i, sec, 'r' .. i, r, 't' .. i, t, 'x' .. i, x, 'wr', used_r, 'wt', used_t,
             'wlo', sec - 60, 'probe_until', tostring(now + lease))
else
  redis.call('HSET', k, 's' .. i, sec, 'r' .. i, r, 't' .. i, t, 'x' .. i, x, 'wr', used_r, 'wt', used_t,
             'wlo', sec - 60)
end
keep(keep_ms, 3600000)  -- every request would otherwise write the expiry again
if session then redis.call('SET', KEYS[4], session[1], 'PX', tonumber(session[2])) end
local elsewhere = ''
if ARGV[4] ~= '' and mode ~= 'again' then elsewhere = inflight(KEYS[2], KEYS[3], ARGV[4], true) end
if probe then return answer(2, '0', '', fails, openings, sec, used_r, used_t, elsewhere) end
return answer(1, '0', '', fails, openings, sec, used_r, used_t, elsewhere)
"""
)

FAILED = (
    _PRELUDE
    + """
-- ARGV: allowed_fails, cooldown, cool (0|1), open_for (-1: none), keep (ms)
local fails = redis.call('HINCRBY', k, 'fails', 1)
local b = redis.call('HMGET', k, 'open_until', 'openings')
local open_until, openings = tonumber(b[1]) or 0, tonumber(b[2]) or 0
local open_for = tonumber(ARGV[4])
local half_open = open_until > 0 and now >= open_until
if open_for < 0 and (ARGV[3] == '1' or half_open or fails >= tonumber(ARGV[1])) then open_for = tonumber(ARGV[2]) end
if open_for >= 0 then
  local u = now + open_for
  if now < open_until then
    if u > open_until then
      open_until = u
      redis.call('HSET', k, 'open_until', tostring(u))
    end
  else
    open_until = u
    redis.call('HSET', k, 'open_until', tostring(u), 'probe_until', 0)
    openings = redis.call('HINCRBY', k, 'openings', 1)
  end
end
keep(math.max(tonumber(ARGV[5]), math.ceil((open_until - now) * 1000) + 61000))
if now < open_until then return {1, tostring(open_until - now), fails, openings} end
return {0, '0', fails, openings}
"""
)

FULL = (
    _PRELUDE
    + """
-- ARGV: seconds, what, keep (ms)
local u = now + tonumber(ARGV[1])
if u > (tonumber(redis.call('HGET', k, 'full_until')) or 0) then
  redis.call('HSET', k, 'full_until', tostring(u), 'full_what', ARGV[2])
end
keep(math.max(tonumber(ARGV[3]), math.ceil(tonumber(ARGV[1]) * 1000) + 61000))
return 1
"""
)

USED = (
    _PRELUDE
    + """
-- ARGV: (second a request was counted in, tokens to add or, negative, take away) pairs
correct(1)
return 1
"""
)

BUDGET = (
    _PRELUDE
    + """
-- ARGV: window (s). Requests (first attempts) and retries over it.
local sec, window = math.floor(now), tonumber(ARGV[1])
local v = slots({'s', 'r', 'x'})
local requests, retries = 0, 0
for i = 0, 60 do
  local s = tonumber(v[3 * i + 1])
  if s and s > sec - window and s <= sec then
    local x = tonumber(v[3 * i + 3]) or 0
    requests, retries = requests + (tonumber(v[3 * i + 2]) or 0) - x, retries + x
  end
end
return {requests, retries}
"""
)

BUSY = (
    _PRELUDE
    + """
-- KEYS: the in-flight hash, the live processes. ARGV: in flight (see inflight(); nothing counted). The lease's
-- renewal while requests last, the decrements no admission came to carry, or a fresh read for the ordering.
ended(KEYS[1], ARGV[1])
return inflight(KEYS[1], KEYS[2], ARGV[1], false)
"""
)

VIEW = (
    _PRELUDE
    + """
return {tostring(now), redis.call('HGETALL', k)}
"""
)

"""The Lua scripts behind :class:`wavespeed_async.redis.RedisShare`.

Each script runs atomically on the Redis server and reads the server's clock (``TIME``),
never a client's, so processes whose clocks disagree still share one timeline. All keys of
one namespace carry the hash tag ``{ws:<namespace>}``, so they live in one slot of a Redis
Cluster. Every script is O(log n) in the size of its sorted set (plus what it reaps).

Keys (``P`` = ``{ws:<namespace>}``):

* ``P:leases`` sorted set: one member per in-flight slot held (``<holder>|<n>``), scored
  by when it expires (ms): the slots held are counted from it, so no total can drift
  from the leases that justify it;
* ``P:procs``  sorted set: lease holder id -> when its leases expire (ms);
* ``P:starts`` sorted set: one member per task started, scored by when (ms);
* ``P:cool``   string: the end of the 429 cool-down (ms);
* ``P:polls``  hash: the poll token bucket (``tokens``, ``last`` in µs);
* ``P:r:<id>`` string: a delivered result (signed), kept ``result_ttl_s``;
* ``P:wh:<h>`` string: a webhook delivery already processed (the replay guard).

Anything else may have written these keys: every number read is checked (a number, not
NaN or infinite) and bounded before it is used, and a lease or a cool-down further in the
future than any process could have set is dropped or cut down.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ACQUIRE",
    "COOLDOWN",
    "DELIVER",
    "POLL",
    "RELEASE",
    "RENEW",
    "RESEED",
    "SENT",
    "START",
]

_NOW_MS: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function num(x, default)
  local v = tonumber(x)
  if v == nil or v ~= v or v == math.huge or v == -math.huge then return default end
  return v
end
"""

# Reap leases and holders that expired, or that claim to live longer than any process may
# set (``horizon``: a hostile or corrupt entry), renew the caller, then grant a slot if the
# account holds fewer than the caller's cap.
# KEYS: leases, procs. ARGV: cap, ttl_ms, holder, member, max_ttl_ms.
# Returns {granted, live holders, slots held}.
ACQUIRE: Final = (
    _NOW_MS
    + """
local beyond = string.format('(%.0f', now + tonumber(ARGV[5]))
for _, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now)
  redis.call('ZREMRANGEBYSCORE', key, beyond, '+inf')
end
local expires = now + tonumber(ARGV[2])
redis.call('ZADD', KEYS[2], expires, ARGV[3])
local live = redis.call('ZCARD', KEYS[2])
local held = redis.call('ZCARD', KEYS[1])
if held >= tonumber(ARGV[1]) then return {0, live, held} end
redis.call('ZADD', KEYS[1], expires, ARGV[4])
return {1, live, held + 1}
"""
)

# Give back leases (each a member), and wake the waiters if one was held.
# KEYS: leases. ARGV: channel, members... Returns how many were held.
RELEASE: Final = """
local n = 0
for i = 2, #ARGV do
  n = n + redis.call('ZREM', KEYS[1], ARGV[i])
end
if n > 0 then redis.call('PUBLISH', ARGV[1], 'f') end
return n
"""

# Keep a holder and its leases alive. A lease the server lost is not brought back (a
# release may be on its way), unless ``restore`` is 1 or the holder itself had been reaped
# (a pause longer than the lease, a restarted server): then every lease named is set.
# KEYS: leases, procs. ARGV: holder, ttl_ms, restore, members... Returns live holders.
RENEW: Final = (
    _NOW_MS
    + """
local expires = now + tonumber(ARGV[2])
local added = redis.call('ZADD', KEYS[2], expires, ARGV[1])
local restore = added == 1 or ARGV[3] == '1'
for i = 4, #ARGV do
  if restore then
    redis.call('ZADD', KEYS[1], expires, ARGV[i])
  else
    redis.call('ZADD', KEYS[1], 'XX', expires, ARGV[i])
  end
end
return redis.call('ZCARD', KEYS[2])
"""
)

# One more task start: wait out the cool-down (cut to the caller's bound), then the sliding
# window (starts dated in the future were not written by a process: dropped).
# KEYS: starts, cool. ARGV: limit (0: none), window_ms, member, max_cool_ms.
# Returns ms to wait (0: go).
START: Final = (
    _NOW_MS
    + """
local max_cool = tonumber(ARGV[4])
local cool = num(redis.call('GET', KEYS[2]), 0)
if cool > now + max_cool then
  cool = now + max_cool
  redis.call('SET', KEYS[2], string.format('%.0f', cool), 'PX', max_cool + 1000)
end
if cool > now then return cool - now end
local limit = tonumber(ARGV[1])
if limit > 0 then
  local window = tonumber(ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  redis.call('ZREMRANGEBYSCORE', KEYS[1], string.format('(%.0f', now + 1000), '+inf')
  if redis.call('ZCARD', KEYS[1]) >= limit then
    local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return math.max(1, tonumber(first[2]) + window - now)
  end
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
end
return 0
"""
)

# A start's submit was answered: count it from now (only if it is still in the window).
# KEYS: starts. ARGV: member.
SENT: Final = (
    _NOW_MS
    + """
redis.call('ZADD', KEYS[1], 'XX', now, ARGV[1])
return 1
"""
)

# Tell the window about starts it may have lost (a restarted server): each member with its
# age, measured by the caller's monotonic clock (a duration, so clocks need not agree). A
# member the window still has keeps its score. O(k log n) for k members.
# KEYS: starts. ARGV: window_ms, then member, age_ms pairs.
RESEED: Final = (
    _NOW_MS
    + """
local window = tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  local age = tonumber(ARGV[i + 1])
  if age >= 0 and age < window then redis.call('ZADD', KEYS[1], 'NX', now - age, ARGV[i]) end
end
if #ARGV > 1 then redis.call('PEXPIRE', KEYS[1], window) end
return 1
"""
)

# Push the cool-down out to now + ms (never shorten it, except one stored beyond the
# caller's bound) and tell every process; ms = 0 only asks.
# KEYS: cool. ARGV: ms, channel, max_ms. Returns the ms the cool-down still runs (0: none).
COOLDOWN: Final = (
    _NOW_MS
    + """
local max_ms = tonumber(ARGV[3])
local ms = math.min(tonumber(ARGV[1]), max_ms)
local cool = num(redis.call('GET', KEYS[1]), 0)
if cool > now + max_ms then
  cool = now + max_ms
  redis.call('SET', KEYS[1], string.format('%.0f', cool), 'PX', max_ms + 1000)
end
if ms > 0 and now + ms > cool then
  cool = now + ms
  redis.call('SET', KEYS[1], string.format('%.0f', cool), 'PX', ms + 1000)
  redis.call('PUBLISH', ARGV[2], 'c' .. string.format('%.0f', ms))
end
return math.max(0, cool - now)
"""
)

# Take one poll token (borrowing ahead, like the local TokenBucket, by at most a minute of
# polls). Times in µs, written with string.format: Lua's default number format keeps only
# 14 digits. KEYS: polls. ARGV: rate per s, capacity. Returns µs to wait before polling.
POLL: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function num(x, default)
  local v = tonumber(x)
  if v == nil or v ~= v or v == math.huge or v == -math.huge then return default end
  return v
end
local rate = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local h = redis.call('HMGET', KEYS[1], 'tokens', 'last')
local tokens = math.max(-rate * 60, math.min(cap, num(h[1], cap)))
local last = math.min(now, num(h[2], now))
tokens = math.min(cap, tokens + (now - last) / 1000000 * rate) - 1
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens),
  'last', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], 60000)
if tokens >= 0 then return 0 end
return math.ceil(-tokens / rate * 1000000)
"""

# Store a delivered result (for a wait that starts later) and announce it.
# KEYS: result. ARGV: value, ttl_ms, channel, message.
DELIVER: Final = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"""

"""The Lua scripts behind :class:`wavespeed_async.redis.RedisShare`.

Each script runs atomically on the Redis server and reads the server's clock (``TIME``),
never a client's, so processes whose clocks disagree still share one timeline. All keys of
one namespace carry the hash tag ``{ws:<namespace>}``, so they live in one slot of a Redis
Cluster. Every script is O(log n) in the size of its sorted set (plus the leases it reaps).

Keys (``P`` = ``{ws:<namespace>}``):

* ``P:held``   hash: lease holder id -> slots it holds;
* ``P:procs``  sorted set: lease holder id -> when its leases expire (ms);
* ``P:total``  string: slots held in all (the sum of ``P:held``);
* ``P:starts`` sorted set: one member per task started, scored by when (ms);
* ``P:cool``   string: the end of the 429 cool-down (ms);
* ``P:polls``  hash: the poll token bucket (``tokens``, ``last`` in µs);
* ``P:r:<id>`` string: a delivered result, kept ``result_ttl_s``.
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
"""

# Reap holders whose leases expired (at most 64 a call, so a call stays short), renew the
# caller, then grant a slot if the account is under the caller's cap.
# KEYS: held, procs, total. ARGV: cap, ttl_ms, holder. Returns {granted, live holders}.
ACQUIRE: Final = (
    _NOW_MS
    + """
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now, 'LIMIT', 0, 64)
for _, p in ipairs(dead) do
  local n = tonumber(redis.call('HGET', KEYS[1], p) or '0')
  if n > 0 then redis.call('DECRBY', KEYS[3], n) end
  redis.call('HDEL', KEYS[1], p)
  redis.call('ZREM', KEYS[2], p)
end
redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[3])
local live = redis.call('ZCARD', KEYS[2])
local total = tonumber(redis.call('GET', KEYS[3]) or '0')
if total >= tonumber(ARGV[1]) then return {0, live} end
redis.call('HINCRBY', KEYS[1], ARGV[3], 1)
redis.call('INCR', KEYS[3])
return {1, live}
"""
)

# Give back up to n slots of a holder (never more than it holds: a holder reaped as dead
# cannot push the total below what the live ones hold), and wake the waiters.
# KEYS: held, total. ARGV: holder, n, channel.
RELEASE: Final = """
local held = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local n = math.min(held, tonumber(ARGV[2]))
if n > 0 then
  redis.call('HINCRBY', KEYS[1], ARGV[1], -n)
  redis.call('DECRBY', KEYS[2], n)
  redis.call('PUBLISH', ARGV[3], 'f')
end
return n
"""

# Keep a holder's leases alive. With reconcile = 1, or when the holder had been reaped
# (a pause longer than the lease, or a restarted server), set what it holds to ``n``.
# KEYS: held, procs, total. ARGV: holder, ttl_ms, n, reconcile. Returns live holders.
RENEW: Final = (
    _NOW_MS
    + """
local added = redis.call('ZADD', KEYS[2], now + tonumber(ARGV[2]), ARGV[1])
if added == 1 or ARGV[4] == '1' then
  local held = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
  local n = tonumber(ARGV[3])
  redis.call('HSET', KEYS[1], ARGV[1], n)
  redis.call('INCRBY', KEYS[3], n - held)
end
return redis.call('ZCARD', KEYS[2])
"""
)

# One more task start: wait out the cool-down, then the sliding window.
# KEYS: starts, cool. ARGV: limit (0: none), window_ms, member. Returns ms to wait (0: go).
START: Final = (
    _NOW_MS
    + """
local cool = tonumber(redis.call('GET', KEYS[2]) or '0')
if cool > now then return cool - now end
local limit = tonumber(ARGV[1])
if limit > 0 then
  local window = tonumber(ARGV[2])
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
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
  if age < window then redis.call('ZADD', KEYS[1], 'NX', now - age, ARGV[i]) end
end
if #ARGV > 1 then redis.call('PEXPIRE', KEYS[1], window) end
return 1
"""
)

# Push the cool-down out to now + ms (never shorten it) and tell every process; ms = 0 only
# asks. KEYS: cool. ARGV: ms, channel. Returns the ms the cool-down still runs (0: none).
COOLDOWN: Final = (
    _NOW_MS
    + """
local ms = tonumber(ARGV[1])
local cool = tonumber(redis.call('GET', KEYS[1]) or '0')
if ms > 0 and now + ms > cool then
  cool = now + ms
  redis.call('SET', KEYS[1], cool, 'PX', ms + 1000)
  redis.call('PUBLISH', ARGV[2], 'c' .. ms)
end
return math.max(0, cool - now)
"""
)

# Take one poll token (borrowing ahead, like the local TokenBucket). Times in µs, written
# with string.format: Lua's default number format keeps only 14 digits.
# KEYS: polls. ARGV: rate per s, capacity. Returns µs to wait before polling.
POLL: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local rate = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
local h = redis.call('HMGET', KEYS[1], 'tokens', 'last')
local tokens = tonumber(h[1]) or cap
local last = tonumber(h[2]) or now
tokens = math.min(cap, tokens + (now - last) / 1000000 * rate) - 1
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens),
  'last', string.format('%.0f', now))
redis.call('PEXPIRE', KEYS[1], 60000)
if tokens >= 0 then return 0 end
return math.ceil(-tokens / rate * 1000000)
"""

# Store a delivered result (for a wait that starts later) and announce it.
# KEYS: result. ARGV: payload, ttl_ms, channel, message.
DELIVER: Final = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', tonumber(ARGV[2]))
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"""

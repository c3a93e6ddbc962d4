"""The account-wide spending budget of :class:`~wavespeed_async.redis.RedisShare`.

``FlowLimits(budget_usd=...)`` with a share is one budget for every process of the
namespace: each reservation is checked and added on the server, atomically, by one Lua
script, so four workers with a $10 budget commit at most $10 together.

Keys (``P`` = ``{ws:<namespace>}``, ``N`` = the budget's name, ``RedisShare(budget_name=)``):

* ``P:spend:N``        hash: lease holder id -> what it has committed (micro-dollars);
* ``P:spend:N:total``  string: the sum, what every reservation is checked against.

Every call carries what its process has committed in all, and the script first sets the
holder's entry to it: so a server that restarted empty learns again what the live
processes committed (those that ended are forgotten, as with the start window), and what a
process reserved while the server was away is added when it is back: each process tells
it within a fraction of a second of reconnecting. A process's calls go one at a time, so
what it says it has committed is never out of date.

While the server is away, a process may commit on its own a part of what was left when it
last heard of the budget: ``(limit - committed) / live processes``, so that together they
still stay within it. Committed spend never expires: a budget counts until its keys are
deleted (:meth:`SharedSpend.reset_spend`); use another ``budget_name`` for a new budget.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Coroutine
from typing import TYPE_CHECKING, Any, Final

import anyio

from wavespeed_async._core.errors import ValidationError
from wavespeed_async.redis._link import DOWN

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from redis.commands.core import AsyncScript

    from wavespeed_async._runtime.flow import FlowControl

__all__ = ["SPEND", "SharedSpend", "check_budget_name"]

_NAME: Final = re.compile(r"[A-Za-z0-9_.:-]{1,64}\Z")
#: How often a process checks whether the server came back (a local check, no request).
_WATCH_S: Final = 0.25

# Set the holder's entry to what it says it has committed (a restarted server learns it
# again), then add delta: a reservation (delta > 0) only if the total stays within limit.
# KEYS: spend hash, total. ARGV: holder, committed, delta, limit.
# Returns {added (1/0), total after}. Integer micro-dollars throughout.
SPEND: Final = """
local own = tonumber(ARGV[2])
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local total = tonumber(redis.call('GET', KEYS[2]) or '0')
if cur ~= own then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  total = redis.call('INCRBY', KEYS[2], string.format('%d', own - cur))
end
local delta = tonumber(ARGV[3])
if delta > 0 and total + delta > tonumber(ARGV[4]) then return {0, total} end
if delta ~= 0 then
  redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[3])
  total = redis.call('INCRBY', KEYS[2], ARGV[3])
end
return {1, total}
"""


def check_budget_name(name: object) -> str:
    """``name`` if it may name a budget, else a ValidationError naming the field."""
    if isinstance(name, str) and _NAME.match(name):
        return name
    raise ValidationError(
        "budget_name",
        f"budget_name: {name!r:.80}; allowed: 1 to 64 characters from A-Z a-z 0-9 _ . : -",
    )


class SharedSpend:
    """The spend side of the Share protocol, mixed into ``RedisShare``.

    ``RedisShare`` provides the connection, the namespace, outages and background tasks.
    """

    # What RedisShare provides.
    namespace: str | None
    holder: str
    budget_name: str
    live_processes: int
    outages: int
    reconnects: int
    _redis: aioredis.Redis | None
    _scripts: dict[str, AsyncScript]
    _fallback: FlowControl | None

    if TYPE_CHECKING:  # RedisShare's (``_link.Link``)

        async def start(self) -> None: ...
        async def _timed(self, call: Awaitable[Any]) -> Any: ...
        def _away(self, why: BaseException | str) -> FlowControl: ...
        def _reject(self, reason: str) -> None: ...
        def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]: ...

    # This process's side of the budget (set on first use).
    _spend_lock: anyio.Lock | None = None
    _spend_own = 0  # what this process has committed, micro-dollars
    _spend_total = 0  # the account's total, as last seen
    _spend_outage = -1  # the outage the local allowance below belongs to
    _spend_away = 0  # committed alone during that outage
    _spend_watching = False

    def _spend_keys(self) -> list[str]:
        key = f"{{ws:{self.namespace}}}:spend:{self.budget_name}"
        return [key, f"{key}:total"]

    async def _spend_call(self, delta: int, limit: int) -> bool:
        """One SPEND script call (the server is there): whether ``delta`` was added."""
        await self.start()
        script = self._scripts.get("SPEND")
        if script is None and self._redis is not None:
            script = self._scripts["SPEND"] = self._redis.register_script(SPEND)
        if script is None:  # pragma: no cover - start() always connects or raises
            raise ConnectionError("the share is closed")
        answer = await self._timed(
            script(keys=self._spend_keys(), args=[self.holder, self._spend_own, delta, limit])
        )
        try:
            added, total = (int(x) for x in answer)
        except (TypeError, ValueError):  # not what the script returns: written by another
            self._reject("a budget answer that is not two integers")
            return False  # the safe side: nothing reserved
        self._spend_total = max(0, total)
        if added == 1:
            self._spend_own += delta
        return added == 1

    def _spending(self) -> anyio.Lock:
        if self._spend_lock is None:
            self._spend_lock = anyio.Lock()
        return self._spend_lock

    async def reserve_spend(self, micros: int, limit_micros: int) -> bool:
        """Add ``micros`` to the budget, atomically, only if it stays within the limit."""
        if not self._spend_watching:
            self._spend_watching = True
            self._spawn(self._watch_spend())
        async with self._spending():
            if self._fallback is None:
                try:
                    return await self._spend_call(micros, limit_micros)
                except DOWN as exc:
                    self._away(exc)
            # Away: this process's part of what was left when it last heard.
            if self._spend_outage != self.outages:
                self._spend_outage, self._spend_away = self.outages, 0
            left = max(0, limit_micros - self._spend_total) // max(1, self.live_processes)
            if self._spend_away + micros > left:
                return False
            self._spend_away += micros
            self._spend_own += micros
            return True

    def release_spend(self, micros: int) -> None:
        """Take ``micros`` back off the budget.

        At once in what this process says it has committed (its next call tells the
        server), and in background for the others.
        """
        amount = min(micros, self._spend_own)
        if amount > 0:
            self._spend_own -= amount
            self._spawn(self._sync_spend())

    async def _sync_spend(self) -> None:
        """Tell the server what this process has committed (nothing added)."""
        async with self._spending():
            if self._fallback is None:
                try:
                    await self._spend_call(0, 0)
                except DOWN as exc:
                    self._away(exc)

    async def _watch_spend(self) -> None:
        """After an outage, tell the server at once what this process has committed.

        A restarted server forgot it; this does not wait for the next reservation.
        """
        seen = self.reconnects
        while True:
            await anyio.sleep(_WATCH_S)
            if self.reconnects != seen and self._fallback is None:
                seen = self.reconnects
                await self._sync_spend()

    def spent(self) -> int:
        """The budget's committed spend (micro-dollars) as this process last saw it."""
        return self._spend_total

    async def reset_spend(self) -> None:
        """Delete the budget's keys: it starts again from nothing.

        Another process still running puts back what it has committed with its next call.
        """
        await self.start()
        async with self._spending():
            if self._redis is not None:
                await self._redis.delete(*self._spend_keys())
            self._spend_total = self._spend_own = 0

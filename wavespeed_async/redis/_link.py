"""The RedisShare's connection to its server: start and close, subscription, lease renewal.

Also what happens while the server is away or slow (the local fallback).

:class:`Link` holds no state of its own: :class:`~wavespeed_async.redis.share.RedisShare`
sets every attribute declared here, and implements the Share interface on top.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final

import anyio
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from wavespeed_async._core.errors import ConnectError
from wavespeed_async._core.limiters import WINDOW_MARGIN_S
from wavespeed_async._core.models import Prediction
from wavespeed_async._core.secret import SigningKey
from wavespeed_async._core.settings import FlowLimits
from wavespeed_async._runtime.flow import FlowControl
from wavespeed_async.redis import _lua as lua
from wavespeed_async.redis import _wire as wire
from wavespeed_async.redis._local import Latency, RecentStarts

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

__all__ = ["DOWN", "WINDOW_MS", "Arg", "Link", "live_count"]

log = logging.getLogger("wavespeed_async.redis")

#: The API's start window, plus the margin the local window keeps too.
WINDOW_MS: Final = int((60.0 + WINDOW_MARGIN_S) * 1000)
Arg = str | int | float | bytes
#: What a Redis call may raise when the server is away (OSError: a refused connect).
DOWN: Final = (RedisError, OSError, asyncio.TimeoutError)


def live_count(value: object) -> int:
    """A count of live processes read from the server, bounded."""
    if isinstance(value, (int, bytes, str)):
        with contextlib.suppress(ValueError):
            return min(max(int(value), 1), 100_000)
    return 1


class Link:
    """The connection side of a RedisShare (see the module's docstring)."""

    url: str
    namespace: str | None
    holder: str
    lease_ttl_s: float
    max_connections: int
    pool_timeout_s: float
    socket_timeout_s: float
    reconnect_interval_s: float
    slow_call_s: float
    live_processes: int
    rejected: int
    outages: int
    reconnects: int
    _url: str
    _started: bool
    _fallback: FlowControl | None
    _shared: dict[object, str]
    _local: set[object]
    _released_away: list[str]
    _releasing: set[str]
    _limits: FlowLimits
    _clock: Callable[[], float]
    _on_delivery: Callable[[Prediction], object]
    _on_cooldown: Callable[[float], None]
    _signer: SigningKey
    _max_cool_ms: int
    _redis: aioredis.Redis | None
    _scripts: dict[str, AsyncScript]
    _start_lock: anyio.Lock | None
    _listener: asyncio.Task[None] | None
    _tasks: set[asyncio.Task[Any]]
    _freed: anyio.Event
    _seq: itertools.count[int]
    _recent: RecentStarts
    _cool_until: float
    _rng: random.Random
    _latency: Latency
    _said: set[str]
    _k_leases: str
    _k_procs: str
    _k_starts: str
    _k_cool: str
    _k_polls: str
    _k_result: str
    _k_webhook: str
    _channel: str

    async def start(self) -> None:
        """Connect, subscribe and start renewing leases (once; later calls return at once).

        Raises:
            ConnectError: the server cannot be reached (the message names the URL, without
                its password).
        """
        if self._started:
            return
        if self._start_lock is None:
            self._start_lock = anyio.Lock()
        async with self._start_lock:
            if self._redis is not None:  # started while this call waited for the lock
                return
            # A bounded pool that waits: redis-py's default pool opens a socket per
            # concurrent call, and thousands of waits would open thousands of sockets.
            pool = aioredis.BlockingConnectionPool.from_url(
                self._url,
                max_connections=self.max_connections,
                timeout=self.pool_timeout_s,
                socket_timeout=self.socket_timeout_s,
                socket_connect_timeout=self.socket_timeout_s,
            )
            r = aioredis.Redis(connection_pool=pool)
            scripts = {name: r.register_script(getattr(lua, name)) for name in lua.__all__}
            try:
                pubsub = await self._subscribe(r)
                # A cool-down announced before this process listened: learn it now, so
                # that a start needs no call where no shared window applies.
                left_ms = await scripts["COOLDOWN"](
                    keys=[self._k_cool], args=[0, self._channel, self._max_cool_ms]
                )
            except DOWN as exc:
                await r.aclose()
                await pool.disconnect()
                raise ConnectError(
                    f"cannot reach the share at {self.url}: {type(exc).__name__}: {exc}",
                    url=self.url,
                ) from None
            self._redis = r
            self._scripts = scripts
            self._started = True
            self._note_cooldown_ms(int(left_ms))
            self._listen_to(pubsub)
            self._spawn(self._renew_forever())

    async def aclose(self) -> None:
        """Give back this process's leases, stop background work, close the connections."""
        tasks = list(self._tasks)
        self._tasks.clear()
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(BaseException):
                await t
        r, self._redis = self._redis, None
        if r is None:
            return
        members = [*self._shared.values(), *self._releasing, *self._released_away]
        with contextlib.suppress(*DOWN):
            if members:  # releases still on their way included
                await self._scripts["RELEASE"](
                    keys=[self._k_leases], args=[self._channel, *members]
                )
            await r.zrem(self._k_procs, self.holder)
        self._shared.clear()
        await r.aclose()
        await r.connection_pool.disconnect()

    async def _subscribe(self, r: aioredis.Redis) -> aioredis.client.PubSub:
        pubsub = r.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(self._channel)
        except BaseException:
            await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]  # untyped in redis-py
            raise
        return pubsub

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _listen_to(self, pubsub: aioredis.client.PubSub) -> None:
        """Read ``pubsub`` from now on (and stop reading an earlier subscription)."""
        if self._listener is not None:
            self._listener.cancel()
        self._listener = self._spawn(self._listen(pubsub))

    async def _call(self, name: str, keys: list[str], args: list[Arg]) -> Any:
        await self.start()
        return await self._timed(self._scripts[name](keys=keys, args=args))

    async def _timed(self, call: Awaitable[Any]) -> Any:
        """Await one call to the server; a server that answers slowly counts as away."""
        started = time.monotonic()
        result = await call
        if self._latency.add(time.monotonic() - started) > self.slow_call_s:
            self._away(
                f"its calls take {self._latency.seconds:.2f} s, more than slow_call_s "
                f"({self.slow_call_s:g} s)"
            )
        return result

    # -- outage ----------------------------------------------------------------------------

    def _away(self, why: BaseException | str) -> FlowControl:
        """The server is away (or slow): share the limits locally until it is back.

        Each limit is shared 1/N, the slots already held included.
        """
        if self._fallback is None:
            n = max(1, self.live_processes)
            lim = self._limits
            # Each process keeps its own connection pool: only the account's limits split.
            part = dataclasses.replace(lim.split(n), max_connections=lim.max_connections)
            self._fallback = FlowControl(part, clock=self._clock)
            self.outages += 1
            state, cause = (
                ("answers slowly", why)
                if isinstance(why, str)
                else ("is unreachable", f"{type(why).__name__}: {why}")
            )
            log.warning(
                "share at %s %s (%s); limits are now shared locally (1/%d each, the %d "
                "slot(s) held counted) until it is back",
                self.url,
                state,
                cause,
                n,
                len(self._shared) + len(self._local),
            )
            self._spawn(self._reconnect())
            self._wake()
        return self._fallback

    def _local_room(self, fallback: FlowControl) -> bool:
        cap = fallback.limits.max_in_flight
        return cap is None or len(self._shared) + len(self._local) < cap

    async def _reconnect(self) -> None:
        r = self._redis
        while r is not None:
            await anyio.sleep(self.reconnect_interval_s * (0.5 + self._rng.random()))
            # Pooled connections to the server that went away are dead, though idle ones
            # do not know it yet: the first call on one would end sharing again at once.
            with contextlib.suppress(*DOWN):
                await r.connection_pool.disconnect()
            try:
                pubsub = await self._subscribe(r)
            except DOWN:
                continue
            try:
                started = time.monotonic()
                await r.ping()  # a probe that changes nothing: is the server fast again?
                took = time.monotonic() - started
                moved = None if took > self.slow_call_s else await self._remind()
            except DOWN:
                moved = None
            if moved is None:  # away, or still slow: stay local
                await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
                continue
            self._latency.reset(took)
            self._resume(moved)
            self.reconnects += 1
            log.warning("share at %s is back; limits are account-wide again", self.url)
            self._listen_to(pubsub)
            self._wake()
            return

    async def _remind(self) -> dict[object, str]:
        """Tell a server that is back what this process knows (it may have restarted empty).

        That is the slots it holds, its starts in the window and a cool-down still running;
        and learn a cool-down that began while this process could not hear of it. Returns the
        leases given to the slots taken locally meanwhile.
        """
        moved = {token: self._member() for token in self._local}
        members = [*self._shared.values(), *moved.values()]
        released = list(self._released_away)
        self.live_processes = live_count(
            await self._scripts["RENEW"](
                keys=[self._k_leases, self._k_procs],
                args=[self.holder, int(self.lease_ttl_s * 1000), 1, *members],
            )
        )
        if released:
            await self._scripts["RELEASE"](keys=[self._k_leases], args=[self._channel, *released])
            del self._released_away[: len(released)]
        now = self._clock()
        if self._recent:
            await self._scripts["RESEED"](
                keys=[self._k_starts], args=[WINDOW_MS, *self._recent.ages_ms(now)]
            )
        # Ours, if one still runs; and one started while this process was away.
        ms = math.ceil((self._cool_until - now) * 1000) if self._cool_until > now else 0
        left_ms = await self._scripts["COOLDOWN"](
            keys=[self._k_cool], args=[ms, self._channel, self._max_cool_ms]
        )
        if int(left_ms) > ms:
            self._note_cooldown_ms(int(left_ms))
        return moved

    def _resume(self, moved: dict[object, str]) -> None:
        """Sharing is back: the slots taken locally become leases.

        Those given back while the server was told are released again; those taken since
        are told now.
        """
        gone = [member for token, member in moved.items() if token not in self._local]
        for token, member in moved.items():
            if token in self._local:
                self._shared[token] = member
        self._local.difference_update(moved)
        late = {token: self._member() for token in self._local}
        self._shared.update(late)
        self._local.clear()
        self._fallback = None
        if late:
            self._spawn(self._quietly("RENEW", self._lease_keys(), self._renew_args(restore=1)))
        if gone or self._released_away:
            self._release([*gone, *self._released_away])
            self._released_away.clear()

    # -- background ------------------------------------------------------------------------

    async def _listen(self, pubsub: aioredis.client.PubSub) -> None:
        try:
            while True:
                msg = await pubsub.get_message(timeout=None)
                if msg is None:
                    continue
                try:
                    self._on_message(msg["data"])
                except Exception as exc:
                    self._reject(f"a message that failed ({type(exc).__name__}: {exc})")
        except DOWN as exc:
            self._away(exc)
        finally:
            with contextlib.suppress(BaseException):
                await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]

    def _reject(self, reason: str) -> None:
        """Count a value that is not used; say so once per kind of reason."""
        self.rejected += 1
        level = logging.DEBUG if reason in self._said else logging.WARNING
        self._said.add(reason)
        log.log(
            level,
            "share at %s: ignored %s (%d ignored so far; anything that can write to the "
            "server can send these)",
            self.url,
            reason,
            self.rejected,
        )

    def _on_message(self, data: object) -> None:
        if not isinstance(data, bytes):
            self._reject("a message that is not bytes")
            return
        kind, body = data[:1], data[1:]
        if kind == b"f":
            self._wake()
            return
        try:
            if kind == b"c":
                self._note_cooldown_ms(wire.cooldown_ms(body))
            elif kind == b"d":
                origin, _, value = body.partition(b"\n")
                if origin == self.holder.encode():
                    return
                self._on_delivery(wire.read_result(self._signer, value))
            else:
                self._reject("a message of an unknown kind")
        except wire.Rejected as exc:
            self._reject(f"a delivery: {exc}" if kind == b"d" else str(exc))

    def _note_cooldown_ms(self, ms: int) -> None:
        """A cool-down read from the server: at most the Client's ``max_retry_after_s``."""
        if ms <= 0:
            return
        seconds = min(ms, self._max_cool_ms) / 1000
        self._cool_until = max(self._cool_until, self._clock() + seconds)
        self._on_cooldown(seconds)

    def _wake(self) -> None:
        self._freed.set()
        self._freed = anyio.Event()

    def _member(self) -> str:
        return f"{self.holder}|{next(self._seq)}"

    def _lease_keys(self) -> list[str]:
        return [self._k_leases, self._k_procs]

    def _renew_args(self, *, restore: int) -> list[Arg]:
        return [self.holder, int(self.lease_ttl_s * 1000), restore, *self._shared.values()]

    async def _renew_forever(self) -> None:
        period = self.lease_ttl_s / 3
        while True:
            await anyio.sleep(period)
            # Renewed while the limits are shared locally too: a server that is only slow
            # keeps this process's leases, so no other process takes their slots meanwhile.
            try:
                live = await self._call("RENEW", self._lease_keys(), self._renew_args(restore=0))
            except DOWN as exc:
                self._away(exc)
            else:
                self.live_processes = live_count(live)

    async def _quietly(self, name: str, keys: list[str], args: list[Arg]) -> bool:
        """A call made in the background: an absent server is an outage, not an error."""
        try:
            await self._call(name, keys, args)
        except DOWN as exc:
            self._away(exc)
        except ConnectError as exc:  # not reachable at startup: nothing to share with yet
            log.warning("%s", exc)
        else:
            return True
        return False

    def _release(self, members: list[str]) -> None:
        """Give ``members`` back on the server, in the background."""
        self._releasing.update(members)

        async def release() -> None:
            done = await self._quietly("RELEASE", [self._k_leases], [self._channel, *members])
            self._releasing.difference_update(members)
            if not done:  # told once the server is back
                self._released_away.extend(members)

        self._spawn(release())

"""The Redis share: account-wide leases, start window, cool-down, poll budget, deliveries."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import math
import os
import random
import socket
import uuid
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

import anyio
import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from wavespeed_async._core.errors import ConnectError, ValidationError
from wavespeed_async._core.limiters import WINDOW_MARGIN_S
from wavespeed_async._core.models import Prediction, bare_prediction_decoder
from wavespeed_async._core.secret import masked, redacted_url
from wavespeed_async._core.settings import FlowLimits
from wavespeed_async._runtime.flow import FlowControl
from wavespeed_async.redis import _lua as lua
from wavespeed_async.redis.budget import SharedSpend, check_budget_name

if TYPE_CHECKING:
    from redis.commands.core import AsyncScript

__all__ = ["RedisShare"]

log = logging.getLogger("wavespeed_async.redis")

#: The API's start window, plus the margin the local window keeps too.
_WINDOW_MS: Final = int((60.0 + WINDOW_MARGIN_S) * 1000)
_Arg = str | int | float | bytes
#: What a Redis call may raise when the server is away (OSError: a refused connect).
_DOWN: Final = (RedisError, OSError, asyncio.TimeoutError)


class _RecentStarts:
    """This process's starts within the window, oldest first, by its monotonic clock: what
    it tells a server that lost them (a restart) when it is back."""

    def __init__(self, window_s: float) -> None:
        self._window_s = window_s
        self._at: dict[str, float] = {}  # member -> when; insertion order is time order

    def __len__(self) -> int:
        return len(self._at)

    def add(self, member: str, now: float) -> None:
        self._at.pop(member, None)  # counted again from now (its submit was answered)
        self._at[member] = now
        while True:  # forget what left the window (the newest never has)
            oldest = next(iter(self._at))
            if now - self._at[oldest] < self._window_s:
                break
            del self._at[oldest]

    def ages_ms(self, now: float) -> list[str | int]:
        """``member, age in ms`` pairs, flat, for the RESEED script."""
        pairs: list[str | int] = []
        for member, at in self._at.items():
            age = now - at
            if age < self._window_s:
                pairs += [member, int(age * 1000)]
        return pairs


class RedisShare(SharedSpend):
    """Limits and wake-ups shared by every process of one account, through one Redis.

    One RedisShare belongs to one Client (``Client(share=RedisShare(...))``).

    Args:
        url: ``redis://[:password@]host:port/db`` (``rediss://`` for TLS). Never shown
            with its password.
        namespace: Processes with the same namespace share limits. Default: a hash of the
            Client's API key and base URL (never the key), so one account on one API shares.
        lease_ttl_s: An in-flight slot is a lease renewed every ``lease_ttl_s / 3`` by a
            live process; a process that dies gives its slots back this long after its last
            renewal (a task it had submitted may still run on the server meanwhile).
        result_ttl_s: How long a delivered result is kept for a wait that starts later.
        max_connections: The connection pool's size. Calls beyond it wait for a free
            connection (up to ``pool_timeout_s``) instead of opening thousands of sockets.
        pool_timeout_s: How long a call waits for a free pooled connection.
        socket_timeout_s: A Redis call that takes longer counts as the server being away.
        reconnect_interval_s: While the server is away, how often to try it again.
        budget_name: The account-wide budget (``FlowLimits.budget_usd``) counted against.

    Raises:
        ValidationError: a setting out of range, or a URL that is not ``redis(s)://``.
    """

    def __init__(
        self,
        url: str,
        *,
        namespace: str | None = None,
        lease_ttl_s: float = 30.0,
        result_ttl_s: float = 3600.0,
        max_connections: int = 32,
        pool_timeout_s: float = 20.0,
        socket_timeout_s: float = 5.0,
        reconnect_interval_s: float = 1.0,
        budget_name: str = "default",
    ) -> None:
        url = masked(url)  # no traceback's locals show its password
        # What __repr__ reads, set before anything can raise (a traceback printed with its
        # locals calls it on a half-built instance).
        self.url = redacted_url(url)
        self.namespace = namespace
        self._started = False
        self._fallback: FlowControl | None = None
        self._shared: set[object] = set()  # tokens holding a Redis lease
        self._local: dict[object, anyio.CapacityLimiter] = {}  # tokens held while away
        #: Processes sharing, as last seen (the fallback takes 1/N of the limits).
        self.live_processes = 1
        if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise ValidationError(
                "share", f"share: {redacted_url(url)!r}; allowed: a redis:// or rediss:// URL"
            )
        for name, value in (
            ("lease_ttl_s", lease_ttl_s),
            ("result_ttl_s", result_ttl_s),
            ("pool_timeout_s", pool_timeout_s),
            ("socket_timeout_s", socket_timeout_s),
            ("reconnect_interval_s", reconnect_interval_s),
        ):
            if not (isinstance(value, (int, float)) and 0 < value < math.inf):
                raise ValidationError(name, f"{name}: {value!r}; allowed: a number > 0")
        if not isinstance(max_connections, int) or max_connections < 2:
            raise ValidationError(
                "max_connections", f"max_connections: {max_connections!r}; allowed: >= 2"
            )
        self._url = url
        self.lease_ttl_s = float(lease_ttl_s)
        self.result_ttl_s = float(result_ttl_s)
        self.max_connections = max_connections
        self.pool_timeout_s = float(pool_timeout_s)
        self.socket_timeout_s = float(socket_timeout_s)
        self.reconnect_interval_s = float(reconnect_interval_s)
        self.budget_name = check_budget_name(budget_name)
        #: This process's lease holder id (unique per RedisShare).
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._limits = FlowLimits()
        self._clock: Callable[[], float] = lambda: 0.0
        self._on_delivery: Callable[[Prediction], object] = lambda p: None
        self._on_cooldown: Callable[[float], None] = lambda s: None
        self._redis: aioredis.Redis | None = None
        self._scripts: dict[str, AsyncScript] = {}
        self._start_lock: anyio.Lock | None = None
        # One waiter per process asks the server at a time; the others queue here in
        # order, so a thousand waiting calls are one script call per release, not 1,000.
        self._slot_lock = anyio.Lock()
        self._starts_lock = anyio.Lock()
        self._listener: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._freed = anyio.Event()
        self._seq = itertools.count()
        # What a restarted server forgot: the starts of the last window, and the cool-down.
        self._recent = _RecentStarts(_WINDOW_MS / 1000)
        self._cool_until = -math.inf
        self._rng = random.Random()
        #: Times the server went away, and times sharing resumed.
        self.outages = 0
        self.reconnects = 0

    @property
    def connections(self) -> int:
        """Sockets this share may hold open: its pool (the subscription included)."""
        return self.max_connections

    def __repr__(self) -> str:
        state = (
            "away"
            if self._fallback is not None
            else ("connected" if self._started else "not started")
        )
        return (
            f"<RedisShare {self.url} namespace={self.namespace!r} {state} "
            f"held={len(self._shared) + len(self._local)} live_processes={self.live_processes}>"
        )

    # -- lifecycle -------------------------------------------------------------------------

    def bind(
        self,
        limits: FlowLimits,
        *,
        namespace: str,
        clock: Callable[[], float],
        on_delivery: Callable[[Prediction], object],
        on_cooldown: Callable[[float], None],
    ) -> None:
        """Attach to a Client (called by the Client when it opens)."""
        if self._started:
            raise ValidationError("share", "share: this RedisShare already serves a Client")
        self._limits = limits
        self.namespace = self.namespace or namespace
        self._clock = clock
        self._on_delivery = on_delivery
        self._on_cooldown = on_cooldown
        p = f"{{ws:{self.namespace}}}"
        self._k_held, self._k_procs, self._k_total = f"{p}:held", f"{p}:procs", f"{p}:total"
        self._k_starts, self._k_cool, self._k_polls = f"{p}:starts", f"{p}:cool", f"{p}:polls"
        self._k_result = f"{p}:r:"
        self._channel = f"{p}:events"

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
            try:
                pubsub = await self._subscribe(r)
            except _DOWN as exc:
                await r.aclose()
                await pool.disconnect()
                raise ConnectError(
                    f"cannot reach the share at {self.url}: {type(exc).__name__}: {exc}",
                    url=self.url,
                ) from None
            self._redis = r
            for name in lua.__all__:
                self._scripts[name] = r.register_script(getattr(lua, name))
            self._started = True
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
        with contextlib.suppress(*_DOWN):
            # Everything this holder holds, releases still in flight included.
            await self._scripts["RELEASE"](
                keys=[self._k_held, self._k_total], args=[self.holder, 2**31, self._channel]
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

    async def _call(self, name: str, keys: list[str], args: list[_Arg]) -> Any:
        await self.start()
        return await self._scripts[name](keys=keys, args=args)

    # -- outage ----------------------------------------------------------------------------

    def _away(self, exc: BaseException) -> FlowControl:
        """The server is away: share the limits locally (1/N of each) until it is back."""
        if self._fallback is None:
            n = max(1, self.live_processes)
            lim = self._limits
            # Each process keeps its own connection pool: only the account's limits split.
            part = dataclasses.replace(lim.split(n), max_connections=lim.max_connections)
            self._fallback = FlowControl(part, clock=self._clock)
            self.outages += 1
            log.warning(
                "share at %s is unreachable (%s: %s); limits are now shared locally (1/%d "
                "each) until it is back",
                self.url,
                type(exc).__name__,
                exc,
                n,
            )
            self._spawn(self._reconnect())
            self._freed.set()
        return self._fallback

    async def _reconnect(self) -> None:
        r = self._redis
        while r is not None:
            await anyio.sleep(self.reconnect_interval_s * (0.5 + self._rng.random()))
            # Pooled connections to the server that went away are dead, though idle ones
            # do not know it yet: the first call on one would end sharing again at once.
            with contextlib.suppress(*_DOWN):
                await r.connection_pool.disconnect()
            try:
                pubsub = await self._subscribe(r)
            except _DOWN:
                continue
            try:
                await self._remind()
            except _DOWN:
                await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]
                continue
            for token, limiter in self._local.items():
                limiter.release_on_behalf_of(token)
                self._shared.add(token)
            self._local.clear()
            self._fallback = None
            self.reconnects += 1
            log.warning("share at %s is back; limits are account-wide again", self.url)
            self._listen_to(pubsub)
            self._wake()
            return

    async def _remind(self) -> None:
        """Tell a server that is back what this process knows (it may have restarted empty):
        the slots it holds, its starts in the window and a cool-down still running; and
        learn a cool-down that began while this process could not hear of it."""
        held = len(self._shared) + len(self._local)
        self.live_processes = int(
            await self._scripts["RENEW"](
                keys=[self._k_held, self._k_procs, self._k_total],
                args=[self.holder, int(self.lease_ttl_s * 1000), held, 1],
            )
        )
        now = self._clock()
        if self._recent:
            await self._scripts["RESEED"](
                keys=[self._k_starts], args=[_WINDOW_MS, *self._recent.ages_ms(now)]
            )
        # Ours, if one still runs; and one started while this process was away.
        ms = math.ceil((self._cool_until - now) * 1000) if self._cool_until > now else 0
        left_ms = int(
            await self._scripts["COOLDOWN"](keys=[self._k_cool], args=[ms, self._channel])
        )
        if left_ms > ms:
            self._cool_until = now + left_ms / 1000
            self._on_cooldown(left_ms / 1000)

    # -- background ------------------------------------------------------------------------

    async def _listen(self, pubsub: aioredis.client.PubSub) -> None:
        try:
            while True:
                msg = await pubsub.get_message(timeout=None)
                if msg is not None:
                    self._on_message(msg["data"])
        except _DOWN as exc:
            self._away(exc)
        finally:
            with contextlib.suppress(BaseException):
                await pubsub.aclose()  # type: ignore[no-untyped-call,unused-ignore]

    def _on_message(self, data: bytes) -> None:
        kind, body = data[:1], data[1:]
        if kind == b"f":
            self._wake()
            return
        try:
            if kind == b"c":
                seconds = int(body) / 1000
            elif kind == b"d":
                origin, _, payload = body.partition(b"\n")
                if origin.decode() == self.holder:
                    return
                pred = bare_prediction_decoder.decode(payload)
            else:
                return
        except ValueError:  # msgspec.DecodeError and UnicodeDecodeError are ValueErrors
            # Not what a RedisShare publishes; the listener must keep reading.
            log.warning("share at %s: an unreadable message was ignored", self.url)
            return
        if kind == b"c":
            self._cool_until = max(self._cool_until, self._clock() + seconds)
            self._on_cooldown(seconds)
        else:
            self._on_delivery(pred)

    def _wake(self) -> None:
        self._freed.set()
        self._freed = anyio.Event()

    async def _renew_forever(self) -> None:
        period = self.lease_ttl_s / 3
        while True:
            await anyio.sleep(period)
            if self._fallback is not None:
                continue
            try:
                self.live_processes = int(
                    await self._scripts["RENEW"](
                        keys=[self._k_held, self._k_procs, self._k_total],
                        args=[self.holder, int(self.lease_ttl_s * 1000), len(self._shared), 0],
                    )
                )
            except _DOWN as exc:
                self._away(exc)

    async def _quietly(self, name: str, keys: list[str], args: list[_Arg]) -> None:
        """A call made in the background: an absent server is an outage, not an error."""
        try:
            await self._call(name, keys, args)
        except _DOWN as exc:
            self._away(exc)
        except ConnectError as exc:  # not reachable at startup: nothing to share with yet
            log.warning("%s", exc)

    # -- the Share interface ---------------------------------------------------------------

    async def acquire_slot(self, token: object) -> None:
        """Wait for an account-wide in-flight slot (a lease) on behalf of ``token``."""
        cap = self._limits.max_in_flight
        if cap is None:
            return
        while True:
            fallback = self._fallback
            if fallback is not None:
                limiter = fallback.in_flight
                await limiter.acquire_on_behalf_of(token)
                if self._fallback is fallback:
                    self._local[token] = limiter
                    return
                limiter.release_on_behalf_of(token)  # sharing resumed meanwhile
                continue
            async with self._slot_lock:
                if await self._lease(cap):
                    self._shared.add(token)
                    return

    async def _lease(self, cap: int) -> bool:
        """Ask the server for a lease until it grants one (True) or is away (False)."""
        retry_s = min(0.25, self.lease_ttl_s / 4)
        while self._fallback is None:
            freed = self._freed
            try:
                granted, live = await self._call(
                    "ACQUIRE",
                    [self._k_held, self._k_procs, self._k_total],
                    [cap, int(self.lease_ttl_s * 1000), self.holder],
                )
            except _DOWN as exc:
                self._away(exc)
                return False
            self.live_processes = int(live)
            if granted:
                return True
            # Wait for a release anywhere (published) or for a lease to expire.
            with anyio.move_on_after(retry_s * (0.5 + self._rng.random())):
                await freed.wait()
        return False

    def release_slot(self, token: object) -> None:
        """Give back ``token``'s slot; the server is told in the background."""
        limiter = self._local.pop(token, None)
        if limiter is not None:
            limiter.release_on_behalf_of(token)
        elif token in self._shared:
            self._shared.discard(token)
            self._spawn(
                self._quietly(
                    "RELEASE", [self._k_held, self._k_total], [self.holder, 1, self._channel]
                )
            )

    async def acquire_start(self) -> object:
        """Wait out the shared cool-down and the account-wide start window.

        Returns:
            The start's member in the window (``None`` when it was not counted there).
        """
        limit = self._limits.max_tasks_per_minute or 0
        # In arrival order, one at a time (like the local window): waiters that all woke
        # together would each ask the server for nothing.
        async with self._starts_lock:
            while True:
                fallback = self._fallback
                member = f"{self.holder}:{next(self._seq)}"
                if fallback is not None:
                    await fallback.acquire_start()  # its handle is None: a local window
                    if not limit:
                        return None
                    # Counted by the shared window too once the server is back.
                    self._recent.add(member, self._clock())
                    return member
                try:
                    wait_ms = await self._call(
                        "START", [self._k_starts, self._k_cool], [limit, _WINDOW_MS, member]
                    )
                except _DOWN as exc:
                    self._away(exc)
                    continue
                if not wait_ms:
                    if not limit:
                        return None
                    self._recent.add(member, self._clock())
                    return member
                await anyio.sleep(int(wait_ms) / 1000)

    def start_sent(self, handle: object) -> None:
        """Count the start ``handle`` from now: its submit was answered."""
        if isinstance(handle, str):
            self._recent.add(handle, self._clock())
            if self._fallback is None:
                self._spawn(self._quietly("SENT", [self._k_starts], [handle]))

    async def acquire_poll(self) -> None:
        """Wait for this poll's share of the account-wide poll budget."""
        rate = self._limits.max_polls_per_s
        if rate is None:
            return
        fallback = self._fallback
        if fallback is None:
            try:
                wait_us = await self._call("POLL", [self._k_polls], [rate, max(1.0, rate / 10)])
            except _DOWN as exc:
                fallback = self._away(exc)
            else:
                if wait_us:
                    await anyio.sleep(int(wait_us) / 1e6)
                return
        await fallback.acquire_poll()

    def start_cooldown(self, seconds: float) -> None:
        """Pause every process of the account for ``seconds`` (this one already waits)."""
        self._cool_until = max(self._cool_until, self._clock() + seconds)
        if self._fallback is None:
            ms = max(1, math.ceil(seconds * 1000))
            self._spawn(self._quietly("COOLDOWN", [self._k_cool], [ms, self._channel]))

    def publish(self, prediction: Prediction) -> None:
        """Store ``prediction`` for later waits and wake the process waiting for it."""
        if self._fallback is not None:
            return  # the waiting process finds the result by its fallback poll
        payload = msgspec.json.encode(prediction)
        message = b"d" + self.holder.encode() + b"\n" + payload
        self._spawn(
            self._quietly(
                "DELIVER",
                [self._k_result + prediction.id],
                [payload, int(self.result_ttl_s * 1000), self._channel, message],
            )
        )

    async def stored_result(self, task_id: str) -> Prediction | None:
        """A result published for ``task_id`` before this wait started, if any."""
        if self._fallback is not None:
            return None
        try:
            await self.start()
            r = self._redis
            raw = None if r is None else await r.get(self._k_result + task_id)
        except _DOWN as exc:
            self._away(exc)
            return None
        if raw is None:
            return None
        try:
            return bare_prediction_decoder.decode(raw)
        except msgspec.DecodeError:
            return None

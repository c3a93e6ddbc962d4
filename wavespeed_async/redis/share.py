"""The Redis share: account-wide leases, start window, cool-down, poll budget, deliveries."""

from __future__ import annotations

import hashlib
import itertools
import logging
import math
import os
import random
import socket
import uuid
from collections.abc import Callable
from typing import Final
from urllib.parse import urlsplit

import anyio

from wavespeed_async._core.errors import ValidationError
from wavespeed_async._core.models import Prediction
from wavespeed_async._core.secret import SigningKey, masked, redacted_url
from wavespeed_async._core.settings import FlowLimits
from wavespeed_async.redis import _wire as wire
from wavespeed_async.redis._link import DOWN, WINDOW_MS, Link, live_count
from wavespeed_async.redis._local import Latency, RecentStarts
from wavespeed_async.redis.budget import SharedSpend, check_budget_name

__all__ = ["MAX_LEASE_TTL_S", "RedisShare"]

log = logging.getLogger("wavespeed_async.redis")

#: The longest ``lease_ttl_s``: a lease that claims to live longer was not set by a
#: process of the account, and is dropped.
MAX_LEASE_TTL_S: Final = 3600.0
#: The longest a poll waits for the account-wide budget (the bucket borrows at most this).
_MAX_POLL_WAIT_S: Final = 60.0
#: A process that gets no slot for this long says so (once per wait).
_STARVED_S: Final = 60.0
# Kept for the names that tests and older code import.
_RecentStarts = RecentStarts


class RedisShare(Link, SharedSpend):
    """Limits and wake-ups shared by every process of one account, through one Redis.

    One RedisShare belongs to one Client (``Client(share=RedisShare(...))``).

    Args:
        url: ``redis://[:password@]host:port/db`` (``rediss://`` for TLS). Never shown
            with its password.
        namespace: Processes with the same namespace share limits. Default: a hash of the
            Client's API key and base URL (never the key), so one account on one API shares.
        lease_ttl_s: An in-flight slot is a lease renewed every ``lease_ttl_s / 3`` by a
            live process; a process that dies gives its slots back this long after its last
            renewal (a task it had submitted may still run on the server meanwhile). At
            most :data:`MAX_LEASE_TTL_S`.
        result_ttl_s: How long a delivered result is kept for a wait that starts later.
        max_connections: The connection pool's size. Calls beyond it wait for a free
            connection (up to ``pool_timeout_s``) instead of opening thousands of sockets.
        pool_timeout_s: How long a call waits for a free pooled connection.
        socket_timeout_s: A Redis call that takes longer counts as the server being away.
        reconnect_interval_s: While the server is away, how often to try it again.
        slow_call_s: When the server's calls take longer than this (smoothed over the last
            few), it counts as away too: the limits are shared locally until it is fast
            again, rather than every process waiting for one slow call per task.
        budget_name: The account-wide budget (``FlowLimits.budget_usd``) counted against.

    Raises:
        ValidationError: a setting out of range, or a URL that is not ``redis(s)://``.

    Attributes:
        rejected: Values read from the server that were not used: results without this
            account's signature, or for another task, or unfinished; messages that are
            not a RedisShare's. Anything that can write to the server can write these;
            they are counted (and logged), never delivered.
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
        slow_call_s: float = 0.25,
        budget_name: str = "default",
    ) -> None:
        url = masked(url)  # no traceback's locals show its password
        # What __repr__ reads, set before anything can raise (a traceback printed with its
        # locals calls it on a half-built instance).
        self.url = redacted_url(url)
        self.namespace = namespace
        self._started = False
        self._fallback = None
        self._shared = {}  # token -> its lease on the server
        self._local = set()  # tokens taken locally while the server is away
        #: Processes sharing, as last seen (the fallback takes 1/N of the limits).
        self.live_processes = 1
        self.rejected = 0
        if urlsplit(url).scheme not in ("redis", "rediss", "unix"):
            raise ValidationError(
                "share", f"share: {redacted_url(url)!r}; allowed: a redis:// or rediss:// URL"
            )
        for name, value, high in (
            ("lease_ttl_s", lease_ttl_s, MAX_LEASE_TTL_S),
            ("result_ttl_s", result_ttl_s, math.inf),
            ("pool_timeout_s", pool_timeout_s, math.inf),
            ("socket_timeout_s", socket_timeout_s, math.inf),
            ("reconnect_interval_s", reconnect_interval_s, math.inf),
            ("slow_call_s", slow_call_s, math.inf),
        ):
            if not (isinstance(value, (int, float)) and 0 < value < math.inf and value <= high):
                allowed = f"a number > 0 and <= {high:g}" if high < math.inf else "a number > 0"
                raise ValidationError(name, f"{name}: {value!r}; allowed: {allowed}")
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
        self.slow_call_s = float(slow_call_s)
        self.budget_name = check_budget_name(budget_name)
        #: This process's lease holder id (unique per RedisShare).
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._limits = FlowLimits()
        self._clock: Callable[[], float] = lambda: 0.0
        self._on_delivery: Callable[[Prediction], object] = lambda p: None
        self._on_cooldown: Callable[[float], None] = lambda s: None
        self._signer = SigningKey(os.urandom(32))  # until bound: verifies nothing shared
        self._max_cool_ms = 60_000
        self._redis = None
        self._scripts = {}
        self._start_lock = None
        # One waiter per process asks the server at a time; the others queue here in
        # order, so a thousand waiting calls are one script call per release, not 1,000.
        self._slot_lock = anyio.Lock()
        self._starts_lock = anyio.Lock()
        self._listener = None
        self._tasks = set()
        self._freed = anyio.Event()
        self._seq = itertools.count()
        # Leases given back while the server was away, or whose release is on its way.
        self._released_away: list[str] = []
        self._releasing: set[str] = set()
        # What a restarted server forgot: the starts of the last window, and the cool-down.
        self._recent = RecentStarts(WINDOW_MS / 1000)
        self._cool_until = -math.inf
        self._rng = random.Random()
        self._latency = Latency()
        self._said: set[str] = set()  # rejection reasons logged already
        #: Times the server went away (or became slow), and times sharing resumed.
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
            f"held={len(self._shared) + len(self._local)} live_processes={self.live_processes} "
            f"rejected={self.rejected}>"
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
        signer: SigningKey,
        max_cooldown_s: float,
    ) -> None:
        """Attach to a Client (called by the Client when it opens)."""
        if self._started:
            raise ValidationError("share", "share: this RedisShare already serves a Client")
        self._limits = limits
        self.namespace = self.namespace or namespace
        self._clock = clock
        self._on_delivery = on_delivery
        self._on_cooldown = on_cooldown
        # One key per namespace: a result cannot be moved from one namespace to another.
        self._signer = signer.derive(f"namespace {self.namespace}")
        self._max_cool_ms = max(1, math.ceil(max_cooldown_s * 1000))
        p = f"{{ws:{self.namespace}}}"
        self._k_leases, self._k_procs = f"{p}:leases", f"{p}:procs"
        self._k_starts, self._k_cool, self._k_polls = f"{p}:starts", f"{p}:cool", f"{p}:polls"
        self._k_result, self._k_webhook = f"{p}:r:", f"{p}:wh:"
        self._channel = f"{p}:events"

    # -- the Share interface ---------------------------------------------------------------

    async def acquire_slot(self, token: object) -> None:
        """Wait for an account-wide in-flight slot (a lease) on behalf of ``token``."""
        cap = self._limits.max_in_flight
        if cap is None:
            return
        while True:
            fallback = self._fallback
            if fallback is not None:
                if self._local_room(fallback):
                    self._local.add(token)
                    return
                await self._freed.wait()  # a release here, or sharing resumed
                continue
            async with self._slot_lock:
                member = await self._lease(cap)
                if member is not None:
                    self._shared[token] = member
                    return

    async def _lease(self, cap: int) -> str | None:
        """Ask the server for a lease until it grants one (its member) or is away (None)."""
        retry_s = min(0.25, self.lease_ttl_s / 4)
        since = anyio.current_time()
        said = False
        while self._fallback is None:
            freed = self._freed
            member = self._member()
            try:
                granted, live, held = await self._call(
                    "ACQUIRE",
                    self._lease_keys(),
                    [
                        cap,
                        int(self.lease_ttl_s * 1000),
                        self.holder,
                        member,
                        MAX_LEASE_TTL_S * 1000,
                    ],
                )
            except DOWN as exc:
                self._away(exc)
                return None
            self.live_processes = live_count(live)
            if granted:
                return member
            if not said and anyio.current_time() - since > _STARVED_S:
                said = True
                log.warning(
                    "share at %s: no in-flight slot for %g s; the server counts %s slot(s) "
                    "held by %d process(es), %d of them here (cap %d)",
                    self.url,
                    _STARVED_S,
                    held,
                    self.live_processes,
                    len(self._shared),
                    cap,
                )
            # Wait for a release anywhere (published) or for a lease to expire.
            with anyio.move_on_after(retry_s * (0.5 + self._rng.random())):
                await freed.wait()
        return None

    def release_slot(self, token: object) -> None:
        """Give back ``token``'s slot; the server is told in the background."""
        if token in self._local:
            self._local.discard(token)
            self._wake()
            return
        member = self._shared.pop(token, None)
        if member is None:
            return
        if self._fallback is not None:
            self._released_away.append(member)  # told once the server is back
            self._wake()
            return
        self._release([member])

    async def acquire_start(self) -> object:
        """Wait out the shared cool-down and the account-wide start window.

        Returns:
            The start's member in the window (``None`` when it was not counted there).
        """
        limit = self._limits.max_tasks_per_minute or 0
        if not limit:
            # No shared window: no call. A cool-down is heard on the channel (or was read
            # when this process subscribed), and every request waits it out.
            return None
        # In arrival order, one at a time (like the local window): waiters that all woke
        # together would each ask the server for nothing.
        async with self._starts_lock:
            while True:
                fallback = self._fallback
                member = self._member()
                if fallback is not None:
                    await fallback.acquire_start()  # its handle is None: a local window
                    # Counted by the shared window too once the server is back.
                    self._recent.add(member, self._clock())
                    return member
                try:
                    wait_ms = await self._call(
                        "START",
                        [self._k_starts, self._k_cool],
                        [limit, WINDOW_MS, member, self._max_cool_ms],
                    )
                except DOWN as exc:
                    self._away(exc)
                    continue
                if not wait_ms:
                    self._recent.add(member, self._clock())
                    return member
                await anyio.sleep(min(int(wait_ms), max(WINDOW_MS, self._max_cool_ms)) / 1000)

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
            except DOWN as exc:
                fallback = self._away(exc)
            else:
                if wait_us:
                    await anyio.sleep(min(int(wait_us) / 1e6, _MAX_POLL_WAIT_S))
                return
        await fallback.acquire_poll()

    def start_cooldown(self, seconds: float) -> None:
        """Pause every process of the account for ``seconds`` (this one already waits)."""
        self._cool_until = max(self._cool_until, self._clock() + seconds)
        if self._fallback is None:
            ms = min(max(1, math.ceil(seconds * 1000)), self._max_cool_ms)
            self._spawn(
                self._quietly("COOLDOWN", [self._k_cool], [ms, self._channel, self._max_cool_ms])
            )

    def publish(self, prediction: Prediction) -> None:
        """Store ``prediction`` (signed) for later waits and wake the process waiting for it."""
        if self._fallback is not None:
            return  # the waiting process finds the result by its fallback poll
        value = wire.result_value(self._signer, prediction)
        if len(value) > wire.MAX_VALUE_BYTES:
            log.warning(
                "task %s: its result is larger than %d bytes; not shared (other processes "
                "poll for it)",
                prediction.id,
                wire.MAX_VALUE_BYTES,
            )
            return
        message = b"d" + self.holder.encode() + b"\n" + value
        self._spawn(
            self._quietly(
                "DELIVER",
                [self._k_result + prediction.id],
                [value, int(self.result_ttl_s * 1000), self._channel, message],
            )
        )

    async def stored_result(self, task_id: str) -> Prediction | None:
        """A result published for ``task_id`` before this wait started, if any.

        Only a final one of that task, signed with this account's key.
        """
        if self._fallback is not None:
            return None
        try:
            await self.start()
            r = self._redis
            # At most one byte more than a result may have: a larger value is not read.
            raw = (
                None
                if r is None
                else await self._timed(
                    r.getrange(self._k_result + task_id, 0, wire.MAX_VALUE_BYTES)
                )
            )
        except DOWN as exc:
            self._away(exc)
            return None
        if not raw:  # no such key (GETRANGE answers an empty string)
            return None
        try:
            return wire.read_result(self._signer, bytes(raw), task_id)
        except wire.Rejected as exc:
            self._reject(f"a stored result: {exc}")
            return None

    async def first_delivery(self, delivery_id: str, ttl_s: float) -> bool | None:
        """Record a webhook delivery for the account (set if absent, kept ``ttl_s``).

        ``True`` the first time, ``False`` for a replay, ``None`` while the server is away.
        """
        if self._fallback is not None:
            return None
        digest = hashlib.sha256(delivery_id.encode("utf-8", "replace")).hexdigest()[:32]
        try:
            await self.start()
            r = self._redis
            if r is None:
                return None
            done = await self._timed(
                r.set(self._k_webhook + digest, b"1", nx=True, px=max(1, math.ceil(ttl_s * 1000)))
            )
        except DOWN as exc:
            self._away(exc)
            return None
        return bool(done)

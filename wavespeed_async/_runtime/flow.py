"""Flow control shared by everything one Client does.

Concurrent ``run()`` calls from many web handlers and several ``run_many()`` batches on the
same Client share one set of limits, so that together they never exceed the account's:

* an in-flight cap: tasks submitted and not yet terminal (``max_in_flight``);
* a start-rate limit: tasks started per minute (``tasks_per_minute``), a sliding window like
  the server's;
* a cool-down shared by every request after a 429, so that one 429 does not become a
  thousand;
* a global poll budget (``max_polls_per_s``), so that 10,000 tasks in flight do not become
  10,000 GETs a second.

The decision logic (:class:`SlidingWindow`, :class:`TokenBucket`, :class:`Cooldown`) is
pure, driven by the times passed in, and tested without sleeping; :class:`FlowControl`
only sleeps for the delays they return.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import anyio

from wavespeed_async._core.errors import ValidationError
from wavespeed_async._core.settings import TIERS

if TYPE_CHECKING:
    from wavespeed_async._runtime.share import Share

__all__ = ["Cooldown", "FlowControl", "FlowLimits", "SlidingWindow", "TokenBucket"]

#: Tasks are timed by the server on arrival; a small margin keeps us under its window.
WINDOW_MARGIN_S: Final = 0.5


@dataclass(frozen=True, slots=True, kw_only=True)
class FlowLimits:
    """Limits shared by every call on one Client.

    Attributes:
        max_in_flight: Tasks submitted and not yet terminal, at most (``run`` and
            ``run_many`` wait for a slot). ``None``: no cap.
        tasks_per_minute: Tasks started in any 60 s window, at most. ``None``: no limit.
        max_polls_per_s: Result GETs per second across all tasks, at most. ``None``: no
            budget.
        max_connections: Open HTTP connections to the API, at most (the pool size).
    """

    max_in_flight: int | None = 256
    tasks_per_minute: int | None = None
    max_polls_per_s: float | None = 500.0
    max_connections: int = 100

    def __post_init__(self) -> None:
        for name in ("max_in_flight", "tasks_per_minute"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ValidationError(
                    name, f"{name}: {value!r} is not allowed; allowed: an integer >= 1 or None"
                )
        if self.max_polls_per_s is not None and not self.max_polls_per_s > 0:
            raise ValidationError(
                "max_polls_per_s",
                f"max_polls_per_s: {self.max_polls_per_s!r} is not allowed; "
                "allowed: a number > 0 or None",
            )
        if not isinstance(self.max_connections, int) or self.max_connections < 1:
            raise ValidationError(
                "max_connections",
                f"max_connections: {self.max_connections!r} is not allowed; "
                "allowed: an integer >= 1",
            )

    @classmethod
    def for_tier(cls, tier: str, **overrides: object) -> FlowLimits:
        """Limits that match a WaveSpeed account tier (``bronze``, ``silver``, ...).

        The start rate and the in-flight cap follow the tier's published limits (see
        ``wavespeed_async.TIERS``); ``overrides`` replace any field.
        """
        try:
            t = TIERS[tier.lower()]
        except KeyError:
            raise ValidationError(
                "tier", f"tier: {tier!r} is not known; allowed: one of {', '.join(TIERS)}"
            ) from None
        fields: dict[str, object] = {
            "tasks_per_minute": t.tasks_per_minute,
            "max_in_flight": t.max_running,
        }
        fields.update(overrides)
        return cls(**fields)  # type: ignore[arg-type]

    def split(self, n: int) -> FlowLimits:
        """One of ``n`` equal shares of these limits, for ``n`` processes on one account.

        The in-flight cap, the start rate, the poll budget and the pool size are divided
        by ``n`` (rounded down, at least 1 each), so that ``n`` Clients with these
        limits together stay within the original ones. With ``n`` above a cap, each share
        keeps 1 and the sum exceeds the cap: share limits through Redis instead.

        Raises:
            ValidationError: ``n`` is not an integer >= 1.
        """
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValidationError("n", f"n: {n!r} is not allowed; allowed: an integer >= 1")
        return FlowLimits(
            max_in_flight=None if self.max_in_flight is None else max(1, self.max_in_flight // n),
            tasks_per_minute=(
                None if self.tasks_per_minute is None else max(1, self.tasks_per_minute // n)
            ),
            max_polls_per_s=None if self.max_polls_per_s is None else self.max_polls_per_s / n,
            max_connections=max(1, self.max_connections // n),
        )


class SlidingWindow:
    """At most ``limit`` events in any ``window_s`` seconds (pure; times are passed in)."""

    __slots__ = ("_events", "limit", "window_s")

    def __init__(self, limit: int, window_s: float = 60.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._events: collections.deque[float] = collections.deque()

    def delay(self, now: float) -> float:
        """Seconds to wait before an event at ``now`` would be allowed (0: allowed now)."""
        events = self._events
        # One expression decides both pruning and the wait, so rounding cannot make them
        # disagree (an event that "must be waited for 0 s" but is still counted).
        while events and events[0] + self.window_s <= now:
            events.popleft()
        if len(events) < self.limit:
            return 0.0
        return events[0] + self.window_s - now

    def record(self, now: float) -> None:
        """Count an event at ``now``; call only after :meth:`delay` returned 0."""
        self._events.append(now)

    def __repr__(self) -> str:
        return f"SlidingWindow(limit={self.limit}, window_s={self.window_s})"


class TokenBucket:
    """A token bucket: ``rate`` tokens per second, bursts up to ``capacity`` (pure)."""

    __slots__ = ("_last", "_tokens", "capacity", "rate")

    def __init__(self, rate: float, capacity: float | None = None) -> None:
        self.rate = rate
        self.capacity = capacity if capacity is not None else max(1.0, rate / 10)
        self._tokens = self.capacity
        self._last: float | None = None

    def take(self, now: float) -> float:
        """Take a token at ``now``; return how long the caller must wait before using it.

        Tokens may be borrowed ahead (the balance goes negative), so that waiters are
        served in order and each waits exactly its share.
        """
        if self._last is not None:
            self._tokens = min(self.capacity, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= 1.0
        if self._tokens >= 0:
            return 0.0
        return -self._tokens / self.rate

    def __repr__(self) -> str:
        return f"TokenBucket(rate={self.rate}, capacity={self.capacity})"


class Cooldown:
    """A shared "not before" time, pushed out when the server answers 429 (pure)."""

    __slots__ = ("until",)

    def __init__(self) -> None:
        self.until = -math.inf

    def extend(self, now: float, seconds: float) -> None:
        """Hold every request back for ``seconds`` from ``now`` (never shortens)."""
        self.until = max(self.until, now + seconds)

    def delay(self, now: float) -> float:
        """Seconds left in the cool-down at ``now``."""
        return max(0.0, self.until - now)


class FlowControl:
    """The async side: waits for what the pure limiters say. One per Client.

    ``clock`` returns monotonic seconds (anyio's event-loop clock by default). With a
    ``share`` (see ``wavespeed_async._runtime.share``), the in-flight cap, the start window, the
    cool-down and the poll budget are account-wide: the share decides, and the local
    in-flight limiter still caps this process.
    """

    def __init__(
        self,
        limits: FlowLimits,
        *,
        clock: Callable[[], float] | None = None,
        share: Share | None = None,
    ) -> None:
        self.limits = limits
        self.share = share
        self._clock = clock or anyio.current_time
        self.in_flight = anyio.CapacityLimiter(limits.max_in_flight or math.inf)
        self._starts = (
            SlidingWindow(limits.tasks_per_minute, 60.0 + WINDOW_MARGIN_S)
            if limits.tasks_per_minute
            else None
        )
        self._start_lock = anyio.Lock()
        self._polls = TokenBucket(limits.max_polls_per_s) if limits.max_polls_per_s else None
        self.cooldown = Cooldown()
        self.cooldowns_started = 0

    def now(self) -> float:
        """The monotonic clock these limits run on, in seconds."""
        return self._clock()

    async def acquire_slot(self, token: object) -> None:
        """Take an in-flight slot on behalf of ``token`` (give it back with
        :meth:`release_slot`); without a trip through the event loop when one is free."""
        try:
            self.in_flight.acquire_on_behalf_of_nowait(token)
        except anyio.WouldBlock:
            await self.in_flight.acquire_on_behalf_of(token)
        if self.share is not None:
            try:
                await self.share.acquire_slot(token)
            except BaseException:
                self.in_flight.release_on_behalf_of(token)
                raise

    def release_slot(self, token: object) -> None:
        """Give back ``token``'s in-flight slot."""
        if self.share is not None:
            self.share.release_slot(token)
        self.in_flight.release_on_behalf_of(token)

    async def wait_cooldown(self) -> None:
        """Wait out a 429 cool-down, if one is running."""
        while (d := self.cooldown.delay(self._clock())) > 0:
            await anyio.sleep(d)

    def start_cooldown(self, seconds: float) -> None:
        """Hold back every request of this Client for ``seconds`` (after a 429)."""
        self.note_cooldown(seconds)
        if self.share is not None:
            self.share.start_cooldown(seconds)

    def note_cooldown(self, seconds: float) -> None:
        """Hold back this Client for ``seconds``, without telling a share (which calls this
        when another process started a cool-down)."""
        now = self._clock()
        if self.cooldown.delay(now) < seconds:
            self.cooldowns_started += 1
        self.cooldown.extend(now, seconds)

    async def acquire_start(self) -> object:
        """Wait until one more task may be started under the per-minute limit.

        Returns:
            A handle to pass to :meth:`start_sent` once the submit has been answered.
        """
        if self.share is not None:
            return await self.share.acquire_start()
        if self._starts is None:
            return None
        # The lock keeps starts in arrival order, and the window consistent.
        async with self._start_lock:
            while (d := self._starts.delay(self._clock())) > 0:
                await anyio.sleep(d)
            self._starts.record(self._clock())
        return None

    def start_sent(self, handle: object) -> None:
        """The submit counted by ``handle`` was answered (or failed)."""
        if self.share is not None:
            self.share.start_sent(handle)

    async def acquire_poll(self) -> None:
        """Wait for this poll's share of the global poll budget."""
        if self.share is not None:
            await self.share.acquire_poll()
            return
        delay = self.take_poll(self._clock())
        if delay > 0:
            await anyio.sleep(delay)

    def take_poll(self, now: float) -> float:
        """Take this poll's share of the poll budget at ``now``, without waiting.

        Returns:
            Seconds to wait before sending the poll (0: send now). The share is taken
            either way: the caller sends the poll once that time has passed. With a share,
            0: the account-wide budget is taken by :meth:`acquire_poll` as the poll is sent.
        """
        if self._polls is None or self.share is not None:
            return 0.0
        return self._polls.take(now)

    def __repr__(self) -> str:
        shared = "" if self.share is None else f", share={self.share!r}"
        return (
            f"FlowControl(in_flight={self.in_flight.borrowed_tokens}/"
            f"{self.limits.max_in_flight}, tasks_per_minute={self.limits.tasks_per_minute}, "
            f"max_polls_per_s={self.limits.max_polls_per_s}{shared})"
        )

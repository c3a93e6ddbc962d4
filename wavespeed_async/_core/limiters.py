"""Pure limiters: a sliding window, a token bucket and a cool-down, driven by given times.

They decide how long to wait and never wait themselves: the runtime's flow control sleeps
for what they return, and the tests drive them with plain numbers.
"""

from __future__ import annotations

import collections
import math
from typing import Final

__all__ = ["WINDOW_MARGIN_S", "Cooldown", "SlidingWindow", "TokenBucket"]

#: Tasks are timed by the server on arrival; a small margin keeps us under its window.
WINDOW_MARGIN_S: Final = 0.5


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

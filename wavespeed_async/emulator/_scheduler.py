"""The emulator's clock and event scheduler: timed callbacks, wake-up futures, sleeps.

Everything that happens later (a task leaving the queue, a held answer timing out) is a
callback on one heap, run when due: by a loop timer with the real clock, by
``Emulator.advance`` with a ``ManualClock``, and by every request before it is handled.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

from wavespeed_async.emulator._config import ManualClock, RealClock

__all__ = ["Scheduler", "Wake"]

#: Why a held request woke up.
Wake = Literal["done", "timeout", "closing"]

_T = TypeVar("_T")


class Scheduler:
    """A heap of ``(due time, sequence, callback(due time))`` on the emulator's clock."""

    def __init__(self, manual: ManualClock | None) -> None:
        #: The manual clock, or ``None`` with the real one.
        self.manual = manual
        self._clock: ManualClock | RealClock = manual or RealClock()
        self._heap: list[tuple[float, int, Callable[[float], None]]] = []
        self._seq = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._pending: set[asyncio.Future[Wake]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        #: Set by ``close()``: held requests answer at once, nothing new is armed.
        self.closing = False

    def now(self) -> float:
        return self._clock.now()

    def at(self, due: float, callback: Callable[[float], None]) -> None:
        """Run ``callback(due)`` once the clock reaches ``due``."""
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, callback))
        if due < self._timer_at:
            self.arm()

    def run_due(self) -> None:
        now = self.now()
        heap = self._heap
        while heap and heap[0][0] <= now:
            due, _, callback = heapq.heappop(heap)
            callback(due)

    # ------------------------------------------------------------------ lifecycle

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Serve on ``loop`` (called on start; ``arm()`` once the server listens)."""
        self._loop = loop
        self.closing = False

    def create_task(self, coro: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
        """Run ``coro`` on the serving loop."""
        assert self._loop is not None  # noqa: S101 - set by start()
        return self._loop.create_task(coro)

    def arm(self) -> None:
        """With the real clock, wake up when the earliest event is due."""
        if self.manual is not None or self._loop is None or self.closing:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._heap:
            self._timer_at = math.inf
            return
        self._timer_at = self._heap[0][0]
        delay = max(0.0, self._timer_at - self.now())
        self._timer = self._loop.call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = math.inf
        self.run_due()
        self.arm()

    def close(self) -> None:
        """Stop the timer and wake every held request with ``"closing"``."""
        self.closing = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for fut in list(self._pending):
            if not fut.done():
                fut.set_result("closing")

    def advance(self, seconds: float) -> None:
        """Step a ``ManualClock`` by ``seconds``, running each event at its due time."""
        clock = self.manual
        if clock is None:
            raise RuntimeError("advance() needs EmulatorConfig(clock=ManualClock())")
        if seconds < 0:
            raise ValueError(f"seconds: {seconds} is negative; allowed: >= 0")
        target = clock.now() + seconds
        while self._heap and self._heap[0][0] <= target:
            due = self._heap[0][0]
            if due > clock.now():
                clock.advance(due - clock.now())
            self.run_due()
        if target > clock.now():
            clock.advance(target - clock.now())

    # ------------------------------------------------------------------ held requests

    def future(self) -> asyncio.Future[Wake]:
        """A future a held request awaits; resolved ``"closing"`` on close."""
        assert self._loop is not None  # noqa: S101 - set by start()
        fut: asyncio.Future[Wake] = self._loop.create_future()
        self._pending.add(fut)
        fut.add_done_callback(self._pending.discard)
        if self.closing:
            fut.set_result("closing")
        return fut

    def time_out(self, fut: asyncio.Future[Wake], seconds: float) -> None:
        """Resolve ``fut`` with ``"timeout"`` in ``seconds``, unless it is done by then."""

        def wake(_: float) -> None:
            if not fut.done():
                fut.set_result("timeout")

        self.at(self.now() + seconds, wake)

    async def sleep(self, seconds: float) -> bool:
        """Sleep on the emulator's clock; ``False`` when the emulator is closing."""
        if seconds <= 0:
            return not self.closing
        fut = self.future()
        self.time_out(fut, seconds)
        return await fut != "closing"

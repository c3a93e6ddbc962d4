"""Flow control shared by everything one Client does.

Concurrent ``run()`` calls from many web handlers and several ``run_many()`` batches on the
same Client share one set of limits, so that together they never exceed the account's:

* an in-flight cap: tasks submitted and not yet terminal (``max_in_flight``);
* a start-rate limit: tasks started per minute (``max_tasks_per_minute``), a sliding window like
  the server's;
* a cool-down shared by every request after a 429, so that one 429 does not become a
  thousand;
* a global poll budget (``max_polls_per_s``), so that 10,000 tasks in flight do not become
  10,000 GETs a second.

The decision logic (``_core.limiters``) is pure, driven by the times passed in, and tested
without sleeping; :class:`FlowControl`
only sleeps for the delays they return.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING

import anyio

from wavespeed_async._core.limiters import WINDOW_MARGIN_S, Cooldown, SlidingWindow, TokenBucket
from wavespeed_async._core.settings import FlowLimits

if TYPE_CHECKING:
    from wavespeed_async._runtime.share import Share

__all__ = ["FlowControl", "FlowLimits"]


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
            SlidingWindow(limits.max_tasks_per_minute, 60.0 + WINDOW_MARGIN_S)
            if limits.max_tasks_per_minute
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
        """Take an in-flight slot on behalf of ``token``; give it back with :meth:`release_slot`.

        A free slot is taken without a trip through the event loop.
        """
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
        """Hold back this Client for ``seconds``, without telling a share.

        A share calls this when another process started a cool-down.
        """
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
            f"{self.limits.max_in_flight}, "
            f"max_tasks_per_minute={self.limits.max_tasks_per_minute}, "
            f"max_polls_per_s={self.limits.max_polls_per_s}{shared})"
        )

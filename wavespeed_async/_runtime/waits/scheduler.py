"""One poll timer per Client: every poll that falls due is sent in the same loop pass.

A ``wait()`` does not sleep and poll in its own coroutine. It registers a
:class:`PollEntry` with the Client's :class:`PollScheduler` and awaits the entry's future
once. The scheduler keeps the entries in a :class:`PollHeap` keyed by due time and arms a
single event-loop timer for the earliest one. When it fires, every entry that is due is
sent at once (each poll its own request, through the Client's ordinary request path), and
each answer is handled without waking the waiting coroutine: a running task is put back
on the heap at its next adaptive poll time (:func:`next_poll_delay`), and only an ended
task, an error or a webhook delivery resolves the waiter's future.

The heap is pure (times are passed in) and tested without an event loop; the scheduler
only arms timers and starts the requests.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
from collections.abc import Awaitable, Callable
from heapq import heappop as _heappop
from typing import Final

from wavespeed_async._core.errors import ClientClosedError
from wavespeed_async._core.models import Prediction
from wavespeed_async._core.settings import PollConfig
from wavespeed_async._runtime.events import Events
from wavespeed_async._runtime.flow import FlowControl
from wavespeed_async._runtime.waits.heap import PollEntry, PollHeap

__all__ = ["PollScheduler", "SendPoll", "WaitExpired"]

log = logging.getLogger("wavespeed_async")

#: A timer may run this much before its time; polls due by then are sent with it.
_TIMER_SLACK_S: Final = 0.001


class WaitExpired(Exception):
    """A wait's deadline passed.

    The scheduler fails its future with this; the Client turns it into ``TaskTimeoutError``.
    """


#: Sends one poll of an entry's task (retries until ``entry.deadline``) -> its current state.
SendPoll = Callable[["PollEntry"], Awaitable[Prediction]]


class PollScheduler:
    """The poll timer of one Client, on one event loop.

    Args:
        loop: The Client's event loop.
        send: Sends one poll through the Client's request path (retries and errors as
            for any call).
        config: The adaptive schedule's settings.
        flow: The Client's flow control: each poll takes a token of its poll budget.
        events: The Client's events: each answer is told there (a new status, the polls).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        send: SendPoll,
        config: PollConfig,
        flow: FlowControl,
        events: Events | None = None,
    ) -> None:
        self._loop = loop
        self._events = events if events is not None else Events()
        self._send = send
        self._config = config
        self._flow = flow
        self._heap = PollHeap()
        #: (deadline, seq, entry) of the waits with a deadline; stale items (waits that
        #: ended) are skipped when they come up, and dropped when they outnumber the rest.
        self._deadlines: list[tuple[float, int, PollEntry]] = []
        self._timed = 0
        self._deadline_seq = itertools.count()
        self._by_id: dict[str, list[PollEntry]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf
        self._closed = False
        #: Timer wake-ups, and polls sent by them (for tests and profiles).
        self.wakeups = 0
        self.dispatched = 0

    def __len__(self) -> int:
        """Waits in progress."""
        return sum(len(v) for v in self._by_id.values())

    def add(self, entry: PollEntry) -> asyncio.Future[Prediction]:
        """Start polling for ``entry``; the returned future ends with the task's end state.

        The future fails with the error of a poll that failed (after the request path's
        own retries), or with :class:`WaitExpired` at ``entry.deadline``: one timer for
        every wait, not one per wait. Call :meth:`discard` when the wait ends for any
        other reason.
        """
        if self._closed:
            raise ClientClosedError("this Client is closed; create a new one")
        future: asyncio.Future[Prediction] = self._loop.create_future()
        entry.future = future
        self._by_id.setdefault(entry.task_id, []).append(entry)
        # Tasks started together end in waves: learn from at least a wave's worth.
        entry.estimator.grow_window(len(self._by_id))
        self._schedule(entry, *entry.next_due(self._loop.time(), self._config))
        deadline = entry.deadline
        if deadline is not None:
            entry.timed = True
            self._timed += 1
            heapq.heappush(self._deadlines, (deadline, next(self._deadline_seq), entry))
            if len(self._deadlines) > 2 * self._timed + 64:
                self._deadlines = [item for item in self._deadlines if item[2].timed]
                heapq.heapify(self._deadlines)
            if deadline < self._timer_at:
                self._arm(deadline)
        return future

    def discard(self, entry: PollEntry) -> None:
        """Stop polling for ``entry`` (its wait was cancelled or timed out); idempotent."""
        self._heap.remove(entry)
        if entry.timed:
            entry.timed = False
            self._timed -= 1
            if not self._timed and not len(self._heap) and self._timer is not None:
                # Nothing left to poll or to time out: no wake-up for stale deadlines.
                self._deadlines.clear()
                self._timer.cancel()
                self._timer = None
                self._timer_at = math.inf
        request, entry.request = entry.request, None
        if request is not None:
            request.cancel()
        same = self._by_id.get(entry.task_id)
        if same is not None:
            if entry in same:
                same.remove(entry)
            if not same:
                del self._by_id[entry.task_id]

    def waiting_for(self, task_id: str) -> PollEntry | None:
        """A wait in progress for ``task_id``, if any."""
        entries = self._by_id.get(task_id)
        return entries[0] if entries else None

    def deliver(self, prediction: Prediction) -> bool:
        """End every wait for ``prediction``'s task with it (a webhook delivery).

        Returns:
            Whether a wait for this task was in progress.
        """
        entries = self._by_id.get(prediction.id)
        if not entries:
            return False
        for entry in list(entries):
            self._resolve(entry, prediction)
        return True

    def close(self) -> list[asyncio.Task[None]]:
        """Stop the timer and fail every wait with ``ClientClosedError``.

        Returns:
            The poll requests that were in flight, cancelled (await them to let them end).
        """
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        requests: list[asyncio.Task[None]] = []
        for entries in list(self._by_id.values()):
            for entry in list(entries):
                if entry.request is not None:
                    requests.append(entry.request)
                self._fail(entry, ClientClosedError("the Client was closed during the wait"))
        return requests

    # -- internals ---------------------------------------------------------------------

    def _schedule(self, entry: PollEntry, earliest: float, due: float) -> None:
        self._heap.push(entry, due, earliest)
        if due < self._timer_at:
            self._arm(due)

    def _arm(self, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = due
        self._timer = self._loop.call_at(due, self._fire)

    def _fire(self) -> None:
        """The timer: send every poll that is due, then re-arm for the next one."""
        self._timer = None
        self._timer_at = math.inf
        if self._closed:
            return
        self.wakeups += 1
        loop = self._loop
        now = loop.time()
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now + _TIMER_SLACK_S:
            entry = _heappop(deadlines)[2]
            if entry.timed:
                self._fail(entry, WaitExpired())
        heap = self._heap
        take_poll = self._flow.take_poll
        create_task = loop.create_task
        poll = self._poll
        sent = 0
        # The loop runs a timer up to its clock resolution early: count that as due.
        for entry in heap.pop_due(now + _TIMER_SLACK_S):
            if entry.budgeted:
                entry.budgeted = False
            else:
                wait_s = take_poll(now)
                if wait_s > 0:
                    # Over the poll budget: the token is reserved; send when it is due.
                    entry.budgeted = True
                    heap.push(entry, now + wait_s)
                    continue
            sent += 1
            entry.request = create_task(poll(entry))
        self.dispatched += sent
        due = heap.next_due()
        while deadlines and not deadlines[0][2].timed:
            _heappop(deadlines)
        if deadlines and (due is None or deadlines[0][0] < due):
            due = deadlines[0][0]
        if due is not None:
            self._arm(due)

    async def _poll(self, entry: PollEntry) -> None:
        """One poll of ``entry``'s task, and what follows from its answer."""
        try:
            pred = await self._send(entry)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the waiter gets the poll's error, exactly as raised
            entry.request = None
            self._fail(entry, exc)
            return
        entry.request = None
        entry.polls += 1
        entry.last = pred
        if self._events.active:
            self._events.polled(entry.task_id, pred)
        now = self._loop.time()
        seen_at = now - entry.started
        if not pred.done:
            entry.pending_at = seen_at
            future = entry.future
            if future is not None and not future.done():
                earliest, due = entry.next_due(now, self._config)
                self._schedule(entry, earliest, due)
            return
        if entry.learn:
            # Learn when the task ended (between the last two polls), not when it was seen:
            # a schedule that learned its own lateness could never recover.
            entry.estimator.observe_detection(seen_at, entry.pending_at)
        log.debug(
            "task %s %s after %d polls",
            entry.task_id,
            pred.status,
            entry.polls,
            extra={"task_id": entry.task_id},
        )
        self._resolve(entry, pred)

    def _resolve(self, entry: PollEntry, pred: Prediction) -> None:
        future = entry.future
        self.discard(entry)
        if future is not None and not future.done():
            future.set_result(pred)

    def _fail(self, entry: PollEntry, exc: BaseException) -> None:
        future = entry.future
        self.discard(entry)
        if future is not None and not future.done():
            future.set_exception(exc)

"""What the poll timer keeps: one entry per wait, and a heap of them by due time (pure).

A :class:`PollEntry` holds one ``wait()``'s schedule, its last answer and the future its
caller awaits; :class:`PollHeap` orders entries by when they fall due. Both are driven by
the times passed in: no event loop, no clock.
"""

from __future__ import annotations

import heapq
import itertools
from heapq import heappop as _heappop
from heapq import heappush as _heappush
from math import ceil as _ceil
from typing import TYPE_CHECKING, Any, Final

from wavespeed_async._core.models import Prediction
from wavespeed_async._core.schedule import DurationEstimator, next_poll_delay
from wavespeed_async._core.settings import PollConfig

if TYPE_CHECKING:
    import asyncio

__all__ = ["POLL_GRID_S", "PollEntry", "PollHeap"]

#: Poll times are rounded up to this grid (seconds), so that polls of many tasks that fall
#: due at about the same time share one timer wake-up.
POLL_GRID_S: Final = 0.01
#: A poll may be sent early, by up to this fraction of its interval (at most
#: ``_EARLY_MAX_S``), when the timer fires for another poll: polls of tasks with nearby
#: times share a wake-up of the event loop instead of each waking it.
_EARLY_FRACTION: Final = 0.2
_EARLY_MAX_S: Final = 0.04
#: The last poll before a wait's deadline is sent this long before it.
_DEADLINE_MARGIN_S: Final = 0.05


class PollEntry:
    """One ``wait()`` in progress: its schedule, its last answer, and the future it awaits."""

    __slots__ = (
        "budgeted",
        "deadline",
        "estimator",
        "future",
        "last",
        "learn",
        "pending_at",
        "polls",
        "request",
        "seq",
        "started",
        "target",
        "task_id",
        "timed",
        "webhook",
    )

    def __init__(
        self,
        task_id: str,
        *,
        started: float,
        estimator: DurationEstimator,
        learn: bool,
        webhook: bool,
        deadline: float | None,
        last: Prediction | None,
        future: asyncio.Future[Prediction] | None = None,
        target: Any = None,
    ) -> None:
        self.task_id = task_id
        #: The request that polls this task (an ``HTTPRequest``), made once per wait
        #: instead of at every poll; the scheduler does not look at it.
        self.target = target
        self.started = started
        self.estimator = estimator
        self.learn = learn
        self.webhook = webhook
        self.deadline = deadline
        #: The last state seen (the submit's answer before any poll).
        self.last = last
        self.polls = 0
        #: When (seconds after ``started``) the last poll saw the task still running.
        self.pending_at: float | None = None
        #: The heap item that is current for this entry (older items are skipped); 0: none.
        self.seq = 0
        #: A token of the poll budget is already taken for the next poll.
        self.budgeted = False
        #: The poll request in flight, if any.
        self.request: asyncio.Task[None] | None = None
        self.future = future
        #: The deadline is on the scheduler's deadline heap and the wait still runs.
        self.timed = False

    @property
    def status(self) -> str:
        return self.last.status if self.last is not None else "created"

    def next_due(self, now: float, config: PollConfig) -> tuple[float, float]:
        """When to poll next (event-loop times): the earliest time to send, and the due time.

        Both come from the adaptive schedule and the deadline.
        """
        if self.webhook:
            delay = config.webhook_fallback_s
        else:
            delay = next_poll_delay(
                now - self.started, self.polls, self.status, self.estimator, config
            )
        due = _ceil((now + delay) / POLL_GRID_S) * POLL_GRID_S
        deadline = self.deadline
        if deadline is not None and now < deadline - _DEADLINE_MARGIN_S:
            # Poll once more just before the deadline rather than sleeping past it.
            due = min(due, deadline - _DEADLINE_MARGIN_S)
        early = _EARLY_FRACTION * delay
        return due - (early if early < _EARLY_MAX_S else _EARLY_MAX_S), due

    def __repr__(self) -> str:
        return f"<PollEntry {self.task_id} polls={self.polls} status={self.status}>"


class PollHeap:
    """Entries, each with a window of time to be polled in (pure: times are passed in).

    An entry is due at the end of its window (``hi``) and may be sent from its start
    (``lo``): :meth:`next_due` is the earliest end of any window, and :meth:`pop_due` at
    that time takes every entry whose window has opened, so that polls with nearby times
    are sent together. Rescheduling or removing an entry leaves its old heap items behind,
    skipped when they come up (lazy deletion); the heaps are rebuilt when such items
    outnumber the live ones.
    """

    __slots__ = ("_by_hi", "_by_lo", "_live", "_seq")

    def __init__(self) -> None:
        self._by_lo: list[tuple[float, int, PollEntry]] = []
        self._by_hi: list[tuple[float, int, PollEntry]] = []
        self._seq = itertools.count(1)
        self._live = 0

    def __len__(self) -> int:
        """Entries scheduled (stale items not counted)."""
        return self._live

    def push(self, entry: PollEntry, due: float, earliest: float | None = None) -> None:
        """Schedule ``entry`` at ``due``; replaces its earlier schedule, if any.

        It may be sent from ``earliest`` (default ``due``) with the polls due by then.
        """
        if entry.seq:
            self._live -= 1
        entry.seq = seq = next(self._seq)
        self._live += 1
        _heappush(
            self._by_lo, (due if earliest is None or earliest > due else earliest, seq, entry)
        )
        by_hi = self._by_hi
        _heappush(by_hi, (due, seq, entry))
        if len(by_hi) > 2 * self._live + 64:
            self._compact()

    def remove(self, entry: PollEntry) -> None:
        """Unschedule ``entry`` (a no-op if it is not scheduled)."""
        if entry.seq:
            entry.seq = 0
            self._live -= 1

    def next_due(self) -> float | None:
        """The earliest due time, or ``None`` when nothing is scheduled."""
        heap = self._by_hi
        while heap:
            top = heap[0]
            if top[1] == top[2].seq:
                return top[0]
            _heappop(heap)
        return None

    def pop_due(self, now: float) -> list[PollEntry]:
        """Unschedule and return every entry that may be sent at ``now``.

        Those are the entries whose window has opened, in the order of the windows' starts.
        """
        heap = self._by_lo
        out: list[PollEntry] = []
        while heap and heap[0][0] <= now:
            _lo, seq, entry = _heappop(heap)
            if seq == entry.seq:
                entry.seq = 0
                out.append(entry)
        self._live -= len(out)
        return out

    def _compact(self) -> None:
        for heap in (self._by_lo, self._by_hi):
            heap[:] = [item for item in heap if item[1] == item[2].seq]
            heapq.heapify(heap)

"""The deadlines of a Client's polls in flight, behind one event-loop timer.

aiohttp keeps a request's ``total`` timeout with a timer of its own: a ``TimerHandle`` on
the loop's heap, a ``TimerContext`` that looks up the current task, a callback on the
connection that cancels the handle. Every poll of a Client has the same deadline,
``Timeouts.request_s`` after it is sent, so the deadlines of the polls in flight come in
the order the polls were sent: :class:`Deadlines` keeps them in a deque, with one timer
armed for the oldest. When it fires, the task of every request past its deadline is
cancelled, as aiohttp's timer does, and the request turns that cancellation back into a
timeout (:meth:`Deadline.timed_out`); any other cancellation of the task (the caller's)
still propagates as a cancellation.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
from typing import Any, Final

__all__ = ["Deadline", "Deadlines"]

#: The loop runs a timer up to its clock resolution early: a deadline that close is due.
_SLACK_S: Final = 0.001


class Deadline:
    """The deadline of one request, sent in ``task``."""

    __slots__ = ("_owner", "at", "cancelling", "done", "expired", "task")

    def __init__(
        self, owner: Deadlines, task: asyncio.Task[Any], at: float, cancelling: int
    ) -> None:
        self._owner = owner
        self.task = task
        #: Event-loop time at which the request is cut.
        self.at = at
        #: ``task.cancelling()`` when the request started (Python 3.11+; else 0).
        self.cancelling = cancelling
        #: The request ended (:meth:`finish`).
        self.done = False
        #: The deadline passed and the task was cancelled for it.
        self.expired = False

    def finish(self) -> None:
        """The request ended; its deadline no longer applies (call it in a ``finally``)."""
        self.done = True
        pending = self._owner._pending
        # Most requests end in the order they started: drop ended ones from the front.
        while pending and pending[0].done:
            pending.popleft()

    def timed_out(self) -> bool:
        """For a ``CancelledError`` caught by the request: whether it is this deadline's.

        ``True``: the request timed out; the cancellation is withdrawn (on 3.11+,
        ``Task.uncancel``) and must not propagate. ``False``: re-raise it. A task also
        cancelled from outside while its deadline passed stays cancelled on Python 3.11+;
        on 3.10, which cannot tell the two apart, the timeout wins (as with aiohttp's
        own timer).
        """
        if not self.expired:
            return False
        if sys.version_info >= (3, 11):
            return self.task.uncancel() <= self.cancelling
        return True  # pragma: no cover - Python 3.10


class Deadlines:
    """Requests in flight that each end at most ``duration_s`` after they start.

    Args:
        duration_s: Every request's deadline, counted from :meth:`start`. One duration for
            all keeps the deque in deadline order.
        loop: The event loop the requests run on (default: the one running at the first
            :meth:`start`).
    """

    __slots__ = ("_loop", "_pending", "_timer", "duration_s")

    def __init__(self, duration_s: float, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop
        self.duration_s = duration_s
        self._pending: deque[Deadline] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def __len__(self) -> int:
        """Deadlines kept (requests in flight, and ended ones not dropped yet)."""
        return len(self._pending)

    def start(self) -> Deadline:
        """The deadline of a request starting now in the current task.

        The caller calls :meth:`Deadline.finish` when the request ends (in a ``finally``)
        and asks :meth:`Deadline.timed_out` about any ``CancelledError`` it catches.
        """
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        task = asyncio.current_task(loop)
        if task is None:
            raise RuntimeError("a request with a deadline runs in a task")
        cancelling = 0
        if sys.version_info >= (3, 11):
            cancelling = task.cancelling()
        deadline = Deadline(self, task, loop.time() + self.duration_s, cancelling)
        self._pending.append(deadline)
        if self._timer is None:
            self._timer = loop.call_at(deadline.at, self._fire, loop)
        return deadline

    def close(self) -> None:
        """Stop the timer (the requests in flight keep no deadline; end them first)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._pending.clear()

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        """The timer: cancel the task of every request past its deadline, re-arm for the next.

        Not re-armed once nothing is in flight.
        """
        self._timer = None
        pending = self._pending
        due = loop.time() + _SLACK_S
        while pending:
            deadline = pending[0]
            if not deadline.done:
                if deadline.at > due:
                    self._timer = loop.call_at(deadline.at, self._fire, loop)
                    return
                deadline.expired = True
                deadline.task.cancel()
            pending.popleft()

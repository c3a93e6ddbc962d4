"""Every wait of one Client, in one place: polls, deadlines and deliveries.

:class:`Waits` is what ``Client.wait()`` hands a task to once its arguments are checked.
It remembers when each task of this Client was created (the schedule learns durations
from it), keeps the model's :class:`~wavespeed_async._core.schedule.DurationEstimator`,
takes webhook deliveries (this process's, early ones that come before their wait, and
those another process published through the share), and polls everything else from one
timer (:class:`~wavespeed_async._runtime.waits.scheduler.PollScheduler`) through a plain
GET (``Api.poll``), with each poll's request deadline kept by one more timer
(:mod:`~wavespeed_async._runtime.waits.deadlines`).
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, TypeVar

from wavespeed_async._core.errors import (
    ClientClosedError,
    TaskFailedError,
    TaskTimeoutError,
)
from wavespeed_async._core.models import Prediction
from wavespeed_async._core.schedule import DurationEstimator
from wavespeed_async._core.settings import PollConfig
from wavespeed_async._runtime.events import Events
from wavespeed_async._runtime.flow import FlowControl
from wavespeed_async._runtime.waits.heap import PollEntry
from wavespeed_async._runtime.waits.scheduler import PollScheduler, WaitExpired

if TYPE_CHECKING:
    from wavespeed_async._http.base import HTTPRequest
    from wavespeed_async._runtime.share import Share

__all__ = ["Waits"]

log = logging.getLogger("wavespeed_async")

#: Tasks remembered per kind (submit times, early deliveries, webhook tasks): bounded,
#: oldest dropped first.
_MAX_REMEMBERED: Final = 100_000
_V = TypeVar("_V")


def _bounded_put(d: collections.OrderedDict[str, _V], key: str, value: _V) -> None:
    d[key] = value
    if len(d) > _MAX_REMEMBERED:
        d.popitem(last=False)


def finished(pred: Prediction) -> Prediction:
    """``pred`` if it completed; a :class:`TaskFailedError` for any other end."""
    if pred.status != "completed":
        raise TaskFailedError(pred)
    return pred


class Waits:
    """The waits of one Client, on its event loop.

    Args:
        loop: The Client's event loop.
        poll: Sends one poll of a wait (``Api.poll``).
        poll_request: The request that polls a task (``Api.poll_request``).
        config: The adaptive schedule's settings.
        flow: The Client's flow control (the poll budget).
        share: Deliveries published by other processes are looked up there.
        events: The Client's events (polls' answers and deliveries are told there).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        poll: Callable[[PollEntry], Awaitable[Prediction]],
        poll_request: Callable[[str], HTTPRequest],
        config: PollConfig,
        flow: FlowControl,
        share: Share | None,
        events: Events | None = None,
    ) -> None:
        self._loop = loop
        self._config = config
        self._poll_request = poll_request
        self._share = share
        self._events = events = events if events is not None else Events()
        self._scheduler = PollScheduler(loop, poll, config, flow, events)
        self._estimators: dict[str, DurationEstimator] = {}
        #: When and for which model each task of this Client was created.
        self._submitted: collections.OrderedDict[str, tuple[float, str]] = collections.OrderedDict()
        #: Deliveries that came before their wait started.
        self._early: collections.OrderedDict[str, Prediction] = collections.OrderedDict()
        self._webhook_tasks: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._closed = False
        #: Deliveries that ended, or will end, a wait of this Client.
        self.deliveries = 0

    def __len__(self) -> int:
        """Waits in progress."""
        return len(self._scheduler)

    @property
    def scheduler(self) -> PollScheduler:
        """The poll timer (for tests and profiles)."""
        return self._scheduler

    def created(self, task_id: str, model: str, *, webhook: bool) -> None:
        """A task of this Client was just created (its wait's schedule starts now)."""
        _bounded_put(self._submitted, task_id, (self._loop.time(), model))
        if webhook:
            _bounded_put(self._webhook_tasks, task_id, None)

    def watching(self, task_id: str) -> tuple[bool, str | None]:
        """Whether a wait for ``task_id`` is in progress, and the status it last saw."""
        entry = self._scheduler.waiting_for(task_id)
        if entry is None:
            return False, None
        return True, entry.last.status if entry.last is not None else None

    def knows(self, task_id: str) -> bool:
        """Whether ``task_id`` was created by this Client (and not waited for to its end)."""
        return task_id in self._submitted

    def estimator(self, model: str) -> DurationEstimator:
        """The learned durations of ``model``'s tasks."""
        est = self._estimators.get(model)
        if est is None:
            est = self._estimators[model] = DurationEstimator.from_config(self._config)
        return est

    async def wait(self, task_id: str, last: Prediction | None, limit: float | None) -> Prediction:
        """Wait until ``task_id`` ends; return it completed.

        ``last`` is its state as known, if any.

        Raises:
            TaskFailedError: it ended in any other way.
            TaskTimeoutError: ``limit`` seconds passed first.
            ClientClosedError: the Client was closed meanwhile.
        """
        if self._closed:
            raise ClientClosedError("this Client is closed; create a new one")
        early = self._early.pop(task_id, None)
        remote = False
        if early is None and self._share is not None:
            # Delivered to another process before this wait started? (Asked after the
            # subscription exists, so nothing is lost between the two.)
            early = await self._share.stored_result(task_id)
            remote = early is not None
            early = early or self._early.pop(task_id, None)
        if early is not None:
            if self._events.active:
                self._events.delivered(task_id, early, remote=remote)
            return finished(early)
        now = self._loop.time()
        known = self._submitted.get(task_id)
        started, model = known if known else (now, last.model if last else "")
        entry = PollEntry(
            task_id,
            started=started,
            estimator=self.estimator(model),
            learn=known is not None,
            webhook=task_id in self._webhook_tasks,
            deadline=None if limit is None else now + limit,
            last=last,
            target=self._poll_request(task_id),
        )
        scheduler = self._scheduler
        future = scheduler.add(entry)  # fails with WaitExpired at the deadline
        try:
            result = await future
        except WaitExpired:
            pass
        else:
            self._submitted.pop(task_id, None)
            self._webhook_tasks.pop(task_id, None)
            return finished(result)
        finally:
            scheduler.discard(entry)
            if future.done() and not future.cancelled():
                future.exception()  # retrieved, even when this wait was cancelled
        raise TaskTimeoutError(
            f"task {task_id} did not finish within {limit} s; it still runs on the server",
            task_id=task_id,
            last=entry.last,
        )

    def deliver(self, prediction: Prediction) -> bool:
        """A verified delivery of this process: end the waits for its task.

        With no wait, keep it for a wait about to start. Returns whether a wait was pending.
        """
        self.deliveries += 1
        if not self._scheduler.deliver(prediction):
            _bounded_put(self._early, prediction.id, prediction)
            return False
        if self._events.active:
            self._events.delivered(prediction.id, prediction, remote=False)
        log.debug(
            "task %s %s by webhook",
            prediction.id,
            prediction.status,
            extra={"task_id": prediction.id},
        )
        return True

    def deliver_remote(self, prediction: Prediction) -> None:
        """A delivery another process published: end the wait here, if there is one."""
        if not prediction.done:
            return
        if self._scheduler.deliver(prediction):
            self.deliveries += 1
            if self._events.active:
                self._events.delivered(prediction.id, prediction, remote=True)
        elif prediction.id in self._submitted:
            # Created here and not waited for yet: its wait() is about to start.
            self.deliveries += 1
            _bounded_put(self._early, prediction.id, prediction)

    def close(self) -> list[asyncio.Task[None]]:
        """Fail every wait with ``ClientClosedError``; return the polls in flight, cancelled.

        Await them to let them end.
        """
        self._closed = True
        return self._scheduler.close()

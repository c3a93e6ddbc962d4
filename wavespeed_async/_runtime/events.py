"""The emitter of one Client's events: its listeners, its streams, and its follows.

Every emission point in the client is guarded by ``if emitter.active:``: with no listener
and no stream, no event (and no other object) is made, and the only cost is that check.

The emitter keeps, while anyone listens, one *follow* per task: the submit and the waits
of a task, from ``submitting`` (or a wait's start) to one terminal event. It numbers them
(``ref``), remembers a job's ``index``, the status last seen (a poll's answer is a
``status`` event only when it is new), the polls, and the times a terminal event reports.
Two waits of one task are one follow: its end is told once, and a wait that times out or
is cancelled while another goes on tells nothing. Ended follows are remembered briefly, so
that a second wait's end of the same task is not told again.
"""

from __future__ import annotations

import collections
import itertools
import time
from collections.abc import Callable
from typing import Final

from wavespeed_async._core.errors import (
    APIStatusError,
    SubmissionOutcomeUnknown,
    TaskFailedError,
)
from wavespeed_async._core.events import (
    AbandonedEvent,
    CompletedEvent,
    CooldownEvent,
    CreatedEvent,
    DeliveredEvent,
    FailedEvent,
    RetryEvent,
    StatusEvent,
    SubmittingEvent,
    TimeoutEvent,
    UnknownEvent,
    WaitingEvent,
)
from wavespeed_async._core.models import TERMINAL_STATUSES, Prediction
from wavespeed_async._runtime.event_stream import EventListener, Subscribers

__all__ = ["EventListener", "Events"]

#: Open follows remembered at most (a task submitted and never waited for stays open):
#: oldest forgotten first.
_MAX_FOLLOWS: Final = 100_000
#: Ended follows remembered, so that a second wait's end of the same task is not told
#: again: those waits end at about the same time, so a short memory is enough.
_MAX_ENDED: Final = 10_000


class _Follow:
    """One follow of a task (see the module's docstring)."""

    __slots__ = (
        "created_at",
        "delivered",
        "index",
        "model",
        "pending_at",
        "polls",
        "ref",
        "seen_at",
        "started",
        "status",
        "waiters",
    )

    def __init__(
        self, ref: int, index: int | None, model: str, status: str | None, now: float
    ) -> None:
        self.ref = ref
        self.index = index
        self.model = model
        self.status = status
        self.started = now
        #: When the task was created, if in this follow.
        self.created_at: float | None = None
        self.polls = 0
        #: The last poll that saw the task running, and the poll that saw it ended.
        self.pending_at: float | None = None
        self.seen_at: float | None = None
        self.delivered = False
        self.waiters = 0


class _Submit:
    __slots__ = ("index", "model", "sent")

    def __init__(self, index: int | None, model: str) -> None:
        self.index = index
        self.model = model
        #: Its ``submitting`` was told (the request went out).
        self.sent = False


def _bounded(
    d: collections.OrderedDict[str, _Follow], key: str, value: _Follow, most: int = _MAX_FOLLOWS
) -> None:
    d[key] = value
    if len(d) > most:
        d.popitem(last=False)


class Events(Subscribers):
    """The events of one Client: its follows, and what it tells of them.

    ``active`` is true while a listener or a stream exists; callers build and emit
    nothing otherwise.
    """

    __slots__ = ("_clock", "_ended", "_follows", "_refs", "_submits")

    def __init__(self) -> None:
        super().__init__()
        self._clock: Callable[[], float] = time.monotonic
        self._refs = itertools.count(1)
        self._follows: collections.OrderedDict[str, _Follow] = collections.OrderedDict()
        self._ended: collections.OrderedDict[str, _Follow] = collections.OrderedDict()
        self._submits: dict[int, _Submit] = {}

    def __repr__(self) -> str:
        return (
            f"<Events listeners={len(self._listeners)} streams={self.streams} "
            f"follows={len(self._follows)} listener_errors={self.listener_errors}>"
        )

    def bind_clock(self, clock: Callable[[], float]) -> None:
        """Use the Client's event-loop clock for ``at``."""
        self._clock = clock

    def now(self) -> tuple[float, float]:
        """``(at, time)``: the loop's clock and the wall clock."""
        return self._clock(), time.time()

    def _idle(self) -> None:
        # No one to tell: forget what the follows were (rebuilt when someone listens).
        self._follows.clear()
        self._ended.clear()
        self._submits.clear()

    # -- follows --------------------------------------------------------------------------

    def snapshot(self, task_id: str, status: str | None) -> StatusEvent | None:
        """A ``status`` event of ``task_id``'s current status, for a new stream of it.

        The status is its open follow's, else ``status`` (a wait's last answer), which then
        opens a follow, so that the next poll is told only if it sees something new.
        """
        follow = self._follows.get(task_id)
        if follow is None:
            if status is None or task_id in self._ended:
                return None
            follow = _Follow(next(self._refs), None, "", status, self._clock())
            _bounded(self._follows, task_id, follow)
        if follow.status is None:
            return None
        at, wall = self.now()
        return StatusEvent(
            at=at,
            time=wall,
            task_id=task_id,
            index=follow.index,
            ref=follow.ref,
            status=follow.status,
        )

    def _follow(self, task_id: str) -> _Follow | None:
        """The open follow of ``task_id``; ``None`` if it ended.

        One is made now if none is open or recently ended (a listener that came after it
        started).
        """
        follow = self._follows.get(task_id)
        if follow is None and task_id not in self._ended:
            follow = _Follow(next(self._refs), None, "", None, self._clock())
            _bounded(self._follows, task_id, follow)
        return follow

    def begin_submit(self, model: str, index: int | None) -> int:
        """A submit starts (nothing is told yet); returns its ``ref`` for what follows."""
        ref = next(self._refs)
        self._submits[ref] = _Submit(index, model)
        if len(self._submits) > _MAX_FOLLOWS:  # a submit that never ended (a bug's): forget
            del self._submits[next(iter(self._submits))]
        return ref

    def submitting(self, ref: int) -> None:
        """The submit of ``ref`` is being sent (after the limits and any cool-down)."""
        submit = self._submits.get(ref)
        if submit is None or submit.sent:
            return
        submit.sent = True
        at, wall = self.now()
        self.emit(
            SubmittingEvent(at=at, time=wall, index=submit.index, ref=ref, model=submit.model)
        )

    def created(self, ref: int | None, pred: Prediction, model: str, *, webhook: bool) -> None:
        """The submit of ``ref`` created ``pred``."""
        submit = self._submits.pop(ref, None) if ref is not None else None
        at, wall = self.now()
        index = submit.index if submit is not None else None
        follow = _Follow(ref if ref is not None else next(self._refs), index, model, None, at)
        follow.created_at = at
        follow.status = pred.status
        task_id = pred.id
        self._ended.pop(task_id, None)
        _bounded(self._follows, task_id, follow)
        self.emit(
            CreatedEvent(
                at=at,
                time=wall,
                task_id=task_id,
                index=index,
                ref=follow.ref,
                model=model,
                status=pred.status,
                webhook=webhook,
            )
        )

    def submit_failed(self, ref: int | None, exc: BaseException, model: str) -> None:
        """The submit of ``ref`` ended without a task id: ``unknown`` or ``failed``.

        Nothing is told if it was never sent: a job declined by ``on_submitting``, a batch
        left first.
        """
        submit = self._submits.pop(ref, None) if ref is not None else None
        if submit is not None and not submit.sent:
            return
        at, wall = self.now()
        index = submit.index if submit is not None else None
        if isinstance(exc, SubmissionOutcomeUnknown) or not isinstance(exc, Exception):
            cause = exc.cause_kind if isinstance(exc, SubmissionOutcomeUnknown) else "cancelled"
            self.emit(
                UnknownEvent(
                    at=at,
                    time=wall,
                    index=index,
                    ref=ref,
                    model=model,
                    cause=cause,
                    error=str(exc),
                )
            )
            return
        self.emit(
            FailedEvent(
                at=at,
                time=wall,
                index=index,
                ref=ref,
                model=model,
                error=str(exc),
                error_type=type(exc).__name__,
                code=getattr(exc, "code", None),
                http_status=exc.status if isinstance(exc, APIStatusError) else None,
            )
        )

    def waiting(self, task_id: str, last: Prediction | None, index: int | None) -> None:
        """A wait of ``task_id`` starts (``last``: its state as the caller knows it)."""
        follow = self._follows.get(task_id)
        if follow is not None:
            follow.waiters += 1
            if follow.index is None:
                follow.index = index
            return
        at, wall = self.now()
        status = last.status if last is not None else None
        model = last.model if last is not None else ""
        follow = _Follow(next(self._refs), index, model, status, at)
        follow.waiters = 1
        self._ended.pop(task_id, None)
        _bounded(self._follows, task_id, follow)
        self.emit(
            WaitingEvent(
                at=at,
                time=wall,
                task_id=task_id,
                index=index,
                ref=follow.ref,
                model=model,
                status=status,
            )
        )

    def polled(self, task_id: str, pred: Prediction) -> None:
        """A poll of ``task_id`` answered ``pred``."""
        follow = self._follow(task_id)
        if follow is None:
            return
        follow.polls += 1
        at = self._clock()
        status = pred.status
        if status in TERMINAL_STATUSES:
            follow.seen_at = at
            return
        follow.pending_at = at
        previous = follow.status
        if status != previous:
            follow.status = status
            self.emit(
                StatusEvent(
                    at=at,
                    time=time.time(),
                    task_id=task_id,
                    index=follow.index,
                    ref=follow.ref,
                    status=status,
                    previous=previous,
                )
            )

    def delivered(self, task_id: str, pred: Prediction, *, remote: bool) -> None:
        """A webhook delivery woke the wait for ``task_id``."""
        follow = self._follow(task_id)
        if follow is None:
            return
        follow.delivered = True
        at, wall = self.now()
        self.emit(
            DeliveredEvent(
                at=at,
                time=wall,
                task_id=task_id,
                index=follow.index,
                ref=follow.ref,
                status=pred.status,
                remote=remote,
            )
        )

    def retry(
        self,
        request: str,
        cause: str,
        attempt: int,
        delay_s: float,
        http_status: int | None,
        task_id: str | None,
        ref: int | None,
    ) -> None:
        """A failed request is sent again after ``delay_s`` (see :class:`RetryEvent`)."""
        index = None
        if task_id is not None:
            follow = self._follows.get(task_id)
            if follow is not None:
                index, ref = follow.index, follow.ref
        elif ref is not None:
            submit = self._submits.get(ref)
            index = submit.index if submit is not None else None
        at, wall = self.now()
        self.emit(
            RetryEvent(
                at=at,
                time=wall,
                task_id=task_id,
                index=index,
                ref=ref,
                request=request,
                cause=cause,
                attempt=attempt,
                delay_s=delay_s,
                http_status=http_status,
            )
        )

    def cooldown(
        self,
        seconds: float,
        *,
        remote: bool = False,
        task_id: str | None = None,
        ref: int | None = None,
    ) -> None:
        """A 429 started (or lengthened) the Client's pause."""
        index = None
        if task_id is not None:
            follow = self._follows.get(task_id)
            if follow is not None:
                index, ref = follow.index, follow.ref
        elif ref is not None:
            submit = self._submits.get(ref)
            index = submit.index if submit is not None else None
        at, wall = self.now()
        self.emit(
            CooldownEvent(
                at=at,
                time=wall,
                task_id=task_id,
                index=index,
                ref=ref,
                seconds=seconds,
                remote=remote,
            )
        )

    # -- the end of a follow --------------------------------------------------------------

    def _end(self, task_id: str, *, final: bool, counted: bool = True) -> _Follow | None:
        """One wait of ``task_id`` ended; the follow to report the end of, or ``None``.

        ``None`` when the end is not to be told (already told, or, unless ``final``, other
        waits go on). ``counted``: the wait's start was told (:meth:`waiting`), so it counts
        as a waiter.
        """
        follow = self._follows.get(task_id)
        if follow is None:
            ended = self._ended.get(task_id)
            if ended is not None:
                ended.waiters = max(0, ended.waiters - counted)
                return None
            follow = _Follow(next(self._refs), None, "", None, self._clock())
            follow.waiters = int(counted)
        follow.waiters = max(0, follow.waiters - counted)
        if not final and follow.waiters > 0:
            return None
        self._follows.pop(task_id, None)
        _bounded(self._ended, task_id, follow, _MAX_ENDED)
        return follow

    def _duration(self, follow: _Follow, at: float) -> float:
        start = follow.created_at if follow.created_at is not None else follow.started
        return at - start

    def completed(self, task_id: str, pred: Prediction, index: int | None) -> None:
        """A wait of ``task_id`` returned the completed task."""
        follow = self._end(task_id, final=True)
        if follow is None:
            return
        at, wall = self.now()
        detect = None
        if not follow.delivered and follow.seen_at is not None:
            detect = follow.seen_at - (
                follow.pending_at
                if follow.pending_at is not None
                else (follow.created_at if follow.created_at is not None else follow.started)
            )
        self.emit(
            CompletedEvent(
                at=at,
                time=wall,
                task_id=task_id,
                index=follow.index if follow.index is not None else index,
                ref=follow.ref,
                model=follow.model or pred.model,
                status=pred.status,
                polls=follow.polls,
                duration_s=self._duration(follow, at),
                outputs=pred.outputs,
                inference_ms=pred.inference_ms,
                detect_s=detect,
                delivered=follow.delivered,
            )
        )

    def failed(self, task_id: str, exc: BaseException, index: int | None) -> None:
        """A wait of ``task_id`` (or the submit that named it) ended with ``exc``.

        The task failed, or it cannot be followed.
        """
        follow = self._end(task_id, final=True)
        if follow is None:
            return
        at, wall = self.now()
        status = follow.status
        code = getattr(exc, "code", None)
        detect = None
        if isinstance(exc, TaskFailedError):
            status = exc.status
            if not follow.delivered and follow.seen_at is not None:
                start = follow.pending_at if follow.pending_at is not None else follow.started
                detect = follow.seen_at - start
        self.emit(
            FailedEvent(
                at=at,
                time=wall,
                task_id=task_id,
                index=follow.index if follow.index is not None else index,
                ref=follow.ref,
                model=follow.model,
                status=status,
                polls=follow.polls,
                duration_s=self._duration(follow, at),
                error=str(exc),
                error_type=type(exc).__name__,
                code=code if isinstance(code, int) else None,
                http_status=exc.status if isinstance(exc, APIStatusError) else None,
                detect_s=detect,
                delivered=follow.delivered,
            )
        )

    def timed_out(
        self,
        task_id: str,
        limit_s: float | None,
        last: Prediction | None,
        index: int | None,
        *,
        counted: bool = True,
    ) -> None:
        """A wait of ``task_id`` reached its deadline (told if no other wait goes on)."""
        follow = self._end(task_id, final=False, counted=counted)
        if follow is None:
            return
        at, wall = self.now()
        self.emit(
            TimeoutEvent(
                at=at,
                time=wall,
                task_id=task_id,
                index=follow.index if follow.index is not None else index,
                ref=follow.ref,
                model=follow.model,
                status=last.status if last is not None else follow.status,
                polls=follow.polls,
                duration_s=self._duration(follow, at),
                limit_s=limit_s,
            )
        )

    def abandoned(
        self, task_id: str, reason: str, index: int | None, *, counted: bool = True
    ) -> None:
        """A wait of ``task_id`` stopped early (told if no other wait goes on)."""
        follow = self._end(task_id, final=False, counted=counted)
        if follow is None:
            return
        at, wall = self.now()
        self.emit(
            AbandonedEvent(
                at=at,
                time=wall,
                task_id=task_id,
                index=follow.index if follow.index is not None else index,
                ref=follow.ref,
                model=follow.model,
                status=follow.status,
                polls=follow.polls,
                duration_s=self._duration(follow, at),
                reason=reason,
            )
        )

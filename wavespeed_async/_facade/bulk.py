"""Bulk fan-out: many tasks under bounded concurrency, results as they complete.

::

    async with client.run_many(model, inputs, concurrency=64) as results:
        async for r in results:          # completion order (or input order: ordered=True)
            ...

The ``async with`` owns every task it starts (structured concurrency): results are not
yielded from inside a task group, and leaving the block early (``break``, an exception,
cancellation, a failing input iterator) stops submitting and polling at once, leaks no
task, and reports the ids of tasks that were created and not delivered in
:attr:`BulkRun.abandoned` (they still run, and are billed, on the server).

A submit already sent when the block is left is given a short grace
(``submit_grace_s``, default :data:`DEFAULT_SUBMIT_GRACE_S` seconds) to learn its task id;
the jobs whose submit is still unanswered after it are listed in :attr:`BulkRun.unknown`.
So every task the batch created is accounted for: its id is in a delivered result or in
``abandoned``, or its index is in ``unknown``.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
)
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Generic, TypeVar

import anyio
from anyio.abc import TaskGroup

from wavespeed_async._core.errors import (
    AuthenticationError,
    PermissionDeniedError,
    SubmissionOutcomeUnknown,
    SubmitSkipped,
    ValidationError,
    WaveSpeedError,
)
from wavespeed_async._core.models import Prediction
from wavespeed_async._facade.results import (
    BulkFailed,
    BulkOk,
    BulkOutcome,
    BulkResult,
    Progress,
)
from wavespeed_async._facade.sending import WorkerJob, call_hook, current_job, submit_in_flight

if TYPE_CHECKING:
    from wavespeed_async._core.settings import FlowLimits

__all__ = [
    "DEFAULT_SUBMIT_GRACE_S",
    "BulkFailed",
    "BulkOk",
    "BulkOutcome",
    "BulkResult",
    "BulkRun",
    "Progress",
    "submit_in_flight",
]


log = logging.getLogger("wavespeed_async")

T = TypeVar("T")

#: Errors that end the whole batch: every further job would fail the same way.
BATCH_FATAL = (AuthenticationError, PermissionDeniedError)

#: Seconds a submit already sent may still take to answer after a batch is left early.
DEFAULT_SUBMIT_GRACE_S: Final = 5.0


@dataclass(slots=True)
class _Fatal:
    error: BaseException


class _Inbox(Generic[T]):
    """What the workers hand to the consumer, in the order it arrived.

    A deque and, while the consumer waits, one event: anyio's memory stream would also
    do, but each wait through it costs a pass of the event loop before it even looks
    (``receive`` starts with a checkpoint) and several objects per item. Nothing here
    needs a bound: the batch's window (a semaphore taken before a job starts and given
    back when its result is delivered) already bounds how many results can be waiting.

    Args:
        senders: How many workers put items; the inbox ends when each has called
            :meth:`sender_done`.
    """

    __slots__ = ("_closed", "_items", "_senders", "_waiter")

    def __init__(self, senders: int) -> None:
        self._items: deque[T] = deque()
        self._senders = senders
        self._waiter: anyio.Event | None = None
        self._closed = False

    def put(self, item: T) -> None:
        """Hand ``item`` to the consumer (dropped once the consumer closed the inbox)."""
        if not self._closed:
            self._items.append(item)
            self._wake()

    def sender_done(self) -> None:
        """One worker will put nothing more."""
        self._senders -= 1
        if self._senders <= 0:
            self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.set()

    def get_nowait(self) -> T:
        """The next item.

        Raises:
            anyio.WouldBlock: Nothing yet, and a worker may still put something.
            anyio.EndOfStream: Nothing more will come.
            anyio.ClosedResourceError: The consumer closed the inbox.
        """
        if self._closed:
            raise anyio.ClosedResourceError
        if self._items:
            return self._items.popleft()
        if self._senders <= 0:
            raise anyio.EndOfStream
        raise anyio.WouldBlock

    async def get(self) -> T:
        """The next item, waiting for it if needed (raises as :meth:`get_nowait`)."""
        while True:
            try:
                return self.get_nowait()
            except anyio.WouldBlock:
                waiter = self._waiter
                if waiter is None:
                    waiter = self._waiter = anyio.Event()
                await waiter.wait()

    def close(self) -> None:
        """The consumer is gone: drop what is left, and whatever comes later."""
        self._closed = True
        self._items.clear()


class _Inputs(Generic[T]):
    """Pulls (index, item) pairs lazily from a sync or async iterable, one at a time."""

    def __init__(self, source: Iterable[T] | AsyncIterable[T]) -> None:
        self._sync: Iterator[T] | None = None
        self._async: AsyncIterator[T] | None = None
        if isinstance(source, AsyncIterable):
            self._async = aiter(source)
        else:
            self._sync = iter(source)
        self._lock = anyio.Lock()
        self._next = 0
        self.exhausted = False

    async def next(self) -> tuple[int, T] | None:
        if self._sync is not None:
            # A plain iterator advances without awaiting, so workers cannot interleave.
            if self.exhausted:
                return None
            try:
                item = next(self._sync)
            except StopIteration:
                self.exhausted = True
                return None
            return self._numbered(item)
        async with self._lock:  # async generators cannot be advanced concurrently
            if self.exhausted or self._async is None:
                return None
            try:
                item = await anext(self._async)
            except StopAsyncIteration:
                self.exhausted = True
                return None
            return self._numbered(item)

    def _numbered(self, item: T) -> tuple[int, T]:
        index = self._next
        self._next += 1
        return index, item


class BulkRun(Generic[T]):
    """A running batch: enter it with ``async with``, then iterate it for results.

    Made by :meth:`Client.run_many` (submit each input, then wait for it) and
    :meth:`Client.wait_many` (wait for task ids from an earlier process); not built
    directly. ::

        async with client.run_many(model, inputs, concurrency=64) as results:
            async for r in results:       # a BulkOk or a BulkFailed per input
                print(r.index, r.id, r.ok, r.outputs if r.ok else r.error)
            print(results.progress)       # e.g. "40/40 done (39 ok, 1 failed); ..."

    Entering starts ``concurrency`` workers; inputs are taken lazily, one at a time, so a
    generator of a million inputs runs in flat memory. Results arrive in completion order
    (input order with ``ordered=True``, buffered within a reorder window). One job's
    failure is a result (``r.ok`` false, ``r.error`` set, ``r.id`` the task id when a
    task was created), never an exception that ends the batch.

    Raises (from the ``async for``):
        AuthenticationError, PermissionDeniedError: the server refused the key or the
            account; every further job would be refused too, so the batch ends.
        ValidationError: at creation, ``concurrency`` or ``reorder_window`` is out of range.

    Leaving the block before the end (``break``, an exception, cancellation) stops
    submitting and polling; the ids of tasks that were created and not delivered are in
    :attr:`abandoned` afterwards.

    Attributes:
        progress: Live counters (:class:`Progress`), safe to read at any time.
        abandoned: After leaving the block early: ids of tasks created and not delivered.
            They keep running (and are billed) on the server; ``client.wait_many(ids)``
            collects them later.
        unknown: After the block: indexes of the jobs whose submit outcome is unknown (a
            task may exist whose id never came back): submits still unanswered when the
            grace after leaving early ran out, and results delivered with
            :class:`SubmissionOutcomeUnknown`.
    """

    def __init__(
        self,
        job: Callable[[int, T, Callable[[str], Awaitable[None]]], Any],
        inputs: Iterable[T] | AsyncIterable[T],
        *,
        concurrency: int,
        ordered: bool,
        reorder_window: int | None,
        on_task_created: Callable[[int, str], Any] | None,
        keep_inputs: bool = True,
        submit_grace_s: float = DEFAULT_SUBMIT_GRACE_S,
        on_submitting: Callable[[int], Any] | None = None,
        on_not_sent: Callable[[int], Any] | None = None,
    ) -> None:
        # What __repr__ reads, set before anything can raise (a traceback printed with its
        # locals calls it on a half-built instance).
        size = getattr(inputs, "__len__", None)
        self.progress = Progress(total=size() if callable(size) else None)
        if not (
            isinstance(submit_grace_s, (int, float))
            and math.isfinite(submit_grace_s)
            and submit_grace_s >= 0
        ):
            raise ValidationError(
                "submit_grace_s", f"submit_grace_s: {submit_grace_s!r}; allowed: seconds >= 0"
            )
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValidationError(
                "concurrency", f"concurrency: {concurrency!r}; allowed: an integer >= 1"
            )
        window = reorder_window if reorder_window is not None else 4 * concurrency
        if ordered and window < concurrency:
            raise ValidationError(
                "reorder_window",
                f"reorder_window: {window}; allowed: an integer >= concurrency ({concurrency})",
            )
        self._job = job
        self._inputs = _Inputs(inputs)
        self._concurrency = concurrency
        self._ordered = ordered
        # Jobs taken from the inputs and not yet delivered to the consumer, at most: this
        # bounds memory whatever the consumer's speed, and the reorder buffer when ordered.
        self._window = anyio.Semaphore(window if ordered else concurrency * 2)
        self._on_task_created = on_task_created
        self._on_submitting = on_submitting
        self._on_not_sent = on_not_sent
        self._keep_inputs = keep_inputs
        self._grace_s = float(submit_grace_s)
        self._created: dict[int, str] = {}  # index -> task id, until delivered
        self._pending: dict[int, BulkOutcome[T]] = {}  # ordered mode: waiting for their turn
        self._next_index = 0
        self._tg: TaskGroup | None = None
        self._recv: _Inbox[BulkOutcome[T] | _Fatal] | None = None
        self._workers: list[WorkerJob] = []  # one per worker that started
        self._unknown: set[int] = set()
        self._stop = False
        self._closing = False
        self._finished = False
        self.abandoned: list[str] = []
        self.unknown: list[int] = []

    def __repr__(self) -> str:
        return f"<BulkRun {self.progress}>"

    async def __aenter__(self) -> BulkRun[T]:
        # The inbox ends when the last worker is done.
        inbox: _Inbox[BulkOutcome[T] | _Fatal] = _Inbox(self._concurrency)
        self._recv = inbox
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        for _ in range(self._concurrency):
            tg.start_soon(self._worker, inbox)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        if self._tg is None or self._recv is None:
            return None
        self._stop = True
        if not self._finished:
            self._wind_down()
        try:
            if exc is not None and not isinstance(exc, anyio.get_cancelled_exc_class()):
                # The consumer's own error (or a batch-fatal one raised from __anext__):
                # tear the workers down and let it propagate as itself, not wrapped in an
                # exception group.
                await self._tg.__aexit__(None, None, None)
                return False
            return await self._tg.__aexit__(exc_type, exc, tb)
        finally:
            self._recv.close()
            self.abandoned = sorted(set(self._created.values()))
            self.unknown = sorted(self._unknown)
            if self.unknown and not self._finished:
                log.warning(
                    "left a batch early: %d submit(s) got no answer within %g s; a task may "
                    "exist for inputs %s",
                    len(self.unknown),
                    self._grace_s,
                    ", ".join(map(str, self.unknown[:20]))
                    + (" ..." if len(self.unknown) > 20 else ""),
                )
            if self.abandoned:
                log.warning(
                    "left a batch early: %d task(s) still run on the server and are billed: %s",
                    len(self.abandoned),
                    ", ".join(self.abandoned[:20]) + (" ..." if len(self.abandoned) > 20 else ""),
                    extra={"task_ids": self.abandoned},
                )

    def _wind_down(self) -> None:
        """Stop at once, except submits already sent: they get the grace to answer."""
        if self._tg is None:
            return
        self._closing = True
        deadline = anyio.current_time() + self._grace_s
        for job in self._workers:
            if job.in_doubt:
                job.scope.deadline = min(job.scope.deadline, deadline)
            else:
                job.scope.cancel()
        self._tg.cancel_scope.cancel()

    def __aiter__(self) -> BulkRun[T]:
        return self

    async def __anext__(self) -> BulkOutcome[T]:
        if self._recv is None:
            raise RuntimeError("use a BulkRun inside 'async with' before iterating it")
        while True:
            if self._ordered and self._next_index in self._pending:
                return self._deliver(self._pending.pop(self._next_index))
            try:
                try:
                    item = self._recv.get_nowait()
                except anyio.WouldBlock:
                    item = await self._recv.get()
            except (anyio.EndOfStream, anyio.ClosedResourceError):
                self._finished = True
                if self._pending:  # unreachable unless a worker vanished; never drop results
                    return self._deliver(self._pending.pop(min(self._pending)))
                raise StopAsyncIteration from None
            if isinstance(item, _Fatal):
                self._stop = True
                raise item.error
            if not self._ordered:
                return self._deliver(item)
            self._pending[item.index] = item

    def _deliver(self, result: BulkOutcome[T]) -> BulkOutcome[T]:
        self._created.pop(result.index, None)
        self._next_index = max(self._next_index, result.index + 1)
        self._window.release()
        return result

    async def _worker(self, inbox: _Inbox[BulkOutcome[T] | _Fatal]) -> None:
        window = self._window
        inputs = self._inputs
        job = WorkerJob(anyio.CancelScope(shield=True))
        self._workers.append(job)
        token = current_job.set(job)
        try:
            # Shielded: the teardown cancels this scope itself (see _wind_down), except
            # while a submit is in doubt, which gets the grace to answer.
            with job.scope:
                while not self._stop:
                    await _acquire(window)
                    try:
                        pulled = await inputs.next()
                    except Exception as exc:  # the caller's input iterator failed
                        window.release()
                        inbox.put(_Fatal(exc))
                        return
                    if pulled is None:
                        window.release()
                        return
                    index, item = pulled
                    result = await self._run(job, index, item)
                    inbox.put(result)
                    if isinstance(result, _Fatal):
                        return
        finally:
            current_job.reset(token)
            inbox.sender_done()

    async def _run(self, job: WorkerJob, index: int, item: T) -> BulkOutcome[T] | _Fatal:
        """Run one job in ``job``'s worker; the teardown's cancellation propagates."""
        progress = self.progress
        task_id: str | None = None
        on_submitting, on_not_sent = self._on_submitting, self._on_not_sent
        job.on_sending = None if on_submitting is None else (lambda: on_submitting(index))
        job.on_not_sent = None if on_not_sent is None else (lambda: on_not_sent(index))

        async def created(tid: str) -> None:
            nonlocal task_id
            task_id = tid
            job.in_doubt = False
            self._created[index] = tid
            progress.submitting -= 1
            progress.running += 1
            hook = self._on_task_created
            if hook is not None:
                try:
                    # Shielded: the id is recorded even when the batch is left meanwhile.
                    with anyio.CancelScope(shield=True):
                        await call_hook(lambda: hook(index, tid))
                except Exception:
                    log.exception("on_task_created failed for task %s", tid, extra={"task_id": tid})
            if self._closing:  # learned within the grace: reported as abandoned
                job.scope.cancel()

        progress.submitting += 1
        kept = item if self._keep_inputs else None
        job.index = index
        try:
            pred: Prediction = await self._job(index, item, created)
        except BATCH_FATAL as exc:
            self._stop = True
            self._count_end(task_id, ok=False)
            return _Fatal(exc)
        except WaveSpeedError as exc:
            self._count_end(task_id, ok=False, skipped=isinstance(exc, SubmitSkipped))
            tid = task_id or exc.task_id
            if tid is None and isinstance(exc, SubmissionOutcomeUnknown):
                self._unknown.add(index)
            final = getattr(exc, "prediction", None) or getattr(exc, "last", None)
            return BulkFailed(index, kept, tid, final, exc)
        except Exception as exc:  # a bug or an unexpected error: end the batch
            self._stop = True
            return _Fatal(exc)
        except BaseException:  # the teardown cut it short
            if job.in_doubt:
                self._unknown.add(index)
            raise
        finally:
            job.in_doubt = False
            job.index = None
        self._count_end(task_id, ok=True)
        return BulkOk(index, kept, pred.id, pred, None)

    def _count_end(self, task_id: str | None, *, ok: bool, skipped: bool = False) -> None:
        progress = self.progress
        if task_id is None:
            progress.submitting -= 1
        else:
            progress.running -= 1
        if ok:
            progress.completed += 1
        elif skipped:
            progress.skipped += 1
        else:
            progress.failed += 1


# Fast paths: anyio's awaiting forms always yield to the event loop, even when nothing has
# to wait; at thousands of jobs those extra loop passes are most of the client's CPU.


async def _acquire(sem: anyio.Semaphore) -> None:
    try:
        sem.acquire_nowait()
    except anyio.WouldBlock:
        await sem.acquire()


def default_concurrency(limits: FlowLimits) -> int:
    """The batch concurrency when none is given: the Client's in-flight cap, else 64."""
    cap = limits.max_in_flight
    return cap if cap is not None else 64

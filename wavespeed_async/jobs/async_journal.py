"""A journal's calls made off the event loop, in order, committed together.

Every journal write is fsync'ed (``synchronous=FULL``): milliseconds on a real disk, far
more on a network filesystem or a busy one. Made on the event loop, each would stop the
rest of the process meanwhile (polls, downloads, other submits, the progress).
:class:`AsyncJournal` makes them in a worker thread instead (one at a time), and the calls
that arrive while a commit is under way share the next one: one transaction, one fsync
for all of them (group commit)::

    journal = AsyncJournal(Journal.open(path))
    await journal.mark_submitting(3, body)   # durable when this returns
    ...                                      # POST
    await journal.mark_created(3, task_id)   # durable when this returns

The promises of :class:`~wavespeed_async.jobs.journal.Journal` hold for each call:

* it returns only once its write is committed (fsync'ed), and the writes happen in the
  order of the calls;
* a call the journal refuses (a step the lifecycle forbids) raises its
  :class:`~wavespeed_async.jobs.journal.JournalError` and changes nothing; the other calls
  of its commit are not affected;
* a commit that fails (a full disk, a read-only file) raises
  :class:`~wavespeed_async.jobs.journal.JournalWriteError` from every call it held: none of
  them happened, and what was committed before stays;
* a call runs to its end, and returns its outcome, even when its caller is cancelled
  meanwhile (the cancellation comes at the caller's next checkpoint): a write is never
  abandoned half-way, and once the last call returns no thread is writing any more.

Between calls, and once no call is under way, the journal may be used directly too (its
calls are safe from any thread, one at a time).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import anyio

from wavespeed_async.jobs.journal import JobRecord, Journal, JournalWriteError
from wavespeed_async.jobs.lifecycle import JobState

__all__ = ["AsyncJournal"]

T = TypeVar("T")


class _Call(Generic[T]):
    """One call waiting for its commit, then its outcome."""

    __slots__ = ("done", "error", "fn", "value")

    def __init__(self, fn: Callable[[Journal], T]) -> None:
        self.fn = fn
        self.done = False
        self.value: T | None = None
        self.error: BaseException | None = None


class AsyncJournal:
    """A :class:`Journal` whose calls run in a worker thread and commit in groups.

    Make it (and call it) inside one event loop.

    Args:
        journal: The journal; its calls are made from a worker thread.
    """

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._pending: list[_Call[Any]] = []
        self._busy = False
        self._round: anyio.Event | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        #: Commits made, and calls committed: how much the groups shared.
        self.commits = 0
        self.calls = 0

    @property
    def location(self) -> str:
        """The journal's file."""
        return self.journal.location

    async def call(self, fn: Callable[[Journal], T]) -> T:
        """Run ``fn(journal)`` in the next commit; its result once it is committed.

        ``fn`` runs in a worker thread, inside a transaction: it must only call the
        journal (a read sees the writes of the calls before it).
        """
        call = _Call(fn)
        self._pending.append(call)
        # Shielded: a write under way is never abandoned; cancellation comes after it.
        with anyio.CancelScope(shield=True):
            while not call.done:
                if self._busy:
                    if self._round is None:
                        self._round = anyio.Event()
                    await self._round.wait()
                else:
                    await self._commit_pending()
        if call.error is not None:
            raise call.error
        return call.value  # type: ignore[return-value]  # done without error: a T

    async def _commit_pending(self) -> None:
        """Commit every call waiting now, in one transaction, in a worker thread."""
        self._busy = True
        calls, self._pending = self._pending, []
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(1)
        try:
            await anyio.to_thread.run_sync(self._commit, calls, limiter=self._limiter)
        except Exception as exc:  # the thread could not run them: none happened
            for c in calls:
                c.value, c.error = None, self.journal.write_error(exc)
        finally:
            for c in calls:
                c.done = True
            self.commits += 1
            self.calls += len(calls)
            self._busy = False
            waiting, self._round = self._round, None
            if waiting is not None:
                waiting.set()

    def _commit(self, calls: Sequence[_Call[Any]]) -> None:
        """In the worker thread: run ``calls`` in one transaction, then commit it."""
        journal = self.journal
        try:
            with journal.transaction():
                for c in calls:
                    try:
                        with journal.savepoint():
                            c.value = c.fn(journal)
                    except JournalWriteError:
                        raise
                    except sqlite3.Error as exc:  # a read that failed: the file is unwell
                        raise journal.write_error(exc) from exc
                    except Exception as exc:  # refused: this call alone, nothing written
                        c.error = exc
        except JournalWriteError as exc:
            for c in calls:
                # Its own exception for each caller (each raise adds its traceback).
                error = JournalWriteError(str(exc), location=exc.location)
                error.__cause__ = exc.__cause__
                c.value, c.error = None, error

    # -- the journal's calls -----------------------------------------------------------

    async def all(self) -> list[JobRecord]:
        """Every job, in line order."""
        return await self.call(Journal.all)

    async def get_meta(self, key: str) -> str | None:
        return await self.call(lambda j: j.get_meta(key))

    async def set_meta(self, key: str, value: str) -> None:
        await self.call(lambda j: j.set_meta(key, value))

    async def mark_submitting(
        self, line: int, body: Mapping[str, Any] | None = None, model: str | None = None
    ) -> bool:
        """Record the intent to submit; durable before this returns (send after it)."""
        # Copied now: the thread serializes it later.
        copied = None if body is None else dict(body)
        return await self.call(lambda j: j.mark_submitting(line, copied, model))

    async def mark_not_sent(self, line: int) -> bool:
        return await self.call(lambda j: j.mark_not_sent(line))

    async def mark_created(self, line: int, task_id: str) -> None:
        """Record the task id; durable (fsync'ed) when this returns."""
        await self.call(lambda j: j.mark_created(line, task_id))

    async def note_error(self, line: int, error: str) -> None:
        await self.call(lambda j: j.note_error(line, error))

    async def mark_completed(
        self, line: int, outputs: list[str], *, inference_ms: float | None = None
    ) -> None:
        names = list(outputs)
        await self.call(lambda j: j.mark_completed(line, names, inference_ms=inference_ms))

    async def mark_failed(
        self,
        line: int,
        error: str,
        *,
        task_id: str | None = None,
        code: int | None = None,
        inference_ms: float | None = None,
    ) -> None:
        await self.call(
            lambda j: j.mark_failed(
                line, error, task_id=task_id, code=code, inference_ms=inference_ms
            )
        )

    async def mark_finished(
        self,
        line: int,
        state: JobState,
        *,
        task_id: str | None = None,
        outputs: Sequence[str] = (),
        error: str | None = None,
    ) -> None:
        names = tuple(outputs)
        await self.call(
            lambda j: j.mark_finished(line, state, task_id=task_id, outputs=names, error=error)
        )

    async def mark_unknown(self, line: int, error: str) -> None:
        await self.call(lambda j: j.mark_unknown(line, error))

    async def reset(self, line: int) -> None:
        await self.call(lambda j: j.reset(line))

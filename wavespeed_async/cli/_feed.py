"""Taking jobs into a batch: waiting for room and the start rate, uploads, journaling.

Each job waits for room and for the start rate, has its local files uploaded, and is
journaled ``submitting`` just before each send of its request
(``run_many(on_submitting=...)``, after the Client's own limits, shared ones included),
and ``pending`` again after an answer that proves no task was created
(``on_not_sent``: a 429, a 503 with ``Retry-After``, a connect failure).

A job that waits for its turn, here or in the Client, is still ``pending``: a process
killed while jobs wait leaves them pending, not "unknown".
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio

from wavespeed_async._core.errors import WaveSpeedError
from wavespeed_async._core.limiters import WINDOW_MARGIN_S, SlidingWindow
from wavespeed_async._facade.client import Client
from wavespeed_async.cli._jobs import Job
from wavespeed_async.cli._progress import Counters
from wavespeed_async.cli._uploads import Uploads
from wavespeed_async.jobs.async_journal import AsyncJournal

__all__ = ["Feed", "Intake", "Pacer"]


class Pacer:
    """The start rate (``--rate``): at most so many tasks started per minute."""

    def __init__(self, per_minute: int | None, stop: anyio.Event) -> None:
        self._window = (
            SlidingWindow(per_minute, 60.0 + WINDOW_MARGIN_S) if per_minute is not None else None
        )
        self._lock = anyio.Lock()
        self._stop = stop

    async def wait(self) -> None:
        """Wait until the start rate allows one more task (or the batch stops)."""
        window = self._window
        if window is None:
            return
        async with self._lock:
            while (delay := window.delay(anyio.current_time())) > 0:
                with anyio.move_on_after(delay):
                    await self._stop.wait()
                if self._stop.is_set():
                    return
            window.record(anyio.current_time())


class Intake:
    """What the feeds of one batch share: room (``--concurrency``), pace, and uploads."""

    def __init__(
        self,
        client: Client,
        journal: AsyncJournal,
        counters: Counters,
        stop: anyio.Event,
        *,
        concurrency: int,
        rate: int | None,
    ) -> None:
        self.journal = journal
        self.counters = counters
        self.stop = stop
        self.gate = anyio.Semaphore(concurrency)
        self.pacer = Pacer(rate, stop)
        self.uploads = Uploads(client)
        # Collected tasks beyond --concurrency: places owed before the gate opens again.
        self._owed = 0

    def hold(self, running: int) -> None:
        """Count ``running`` tasks collected from an earlier run against ``--concurrency``.

        They run on the server whether or not they are polled, so a new job starts only once
        fewer than ``--concurrency`` of them remain.
        """
        for _ in range(running):
            try:
                self.gate.acquire_nowait()
            except anyio.WouldBlock:
                self._owed += 1

    def release(self) -> None:
        """A job taken in (or a task collected) has ended: room for another."""
        if self._owed:
            self._owed -= 1
            return
        self.gate.release()

    async def prepare(self, job: Job) -> dict[str, Any] | None:
        """The request body: local files uploaded (each once). ``None``: upload failed."""
        try:
            return await self.uploads.request_body(job)
        except WaveSpeedError as exc:
            await self.journal.mark_failed(job.line, f"upload failed: {exc}")
            self.counters.queued -= 1
            self.counters.failed += 1
            self.counters.ended_this_run += 1
            return None


class Feed:
    """The inputs of one model's ``run_many``: paced, uploaded, and journaled as they go.

    A job is taken only when the batch has room (the shared gate) and the start rate
    allows; its local files are uploaded; then it is handed to ``run_many``, which calls
    :meth:`submitting` (the journal's ``submitting``) once the Client's limits let it go.
    """

    def __init__(self, intake: Intake, jobs: list[Job]) -> None:
        self.intake = intake
        self._jobs: Iterator[Job] = iter(jobs)
        #: run_many's index -> line number.
        self.lines: list[int] = []
        #: index -> (body, model) of the jobs handed over and not sent yet.
        self._unsent: dict[int, tuple[dict[str, Any], str | None]] = {}

    def ended(self, index: int) -> None:
        """Job ``index`` has its result (whether or not it was ever sent)."""
        self._unsent.pop(index, None)

    async def submitting(self, index: int) -> None:
        """Journal the intent before ``run_many`` sends job ``index`` (again, after a 429).

        ``run_many`` awaits this before the send: the intent is durable first.
        """
        body, model = self._unsent[index]
        await self.intake.journal.mark_submitting(self.lines[index], body, model)

    async def not_sent(self, index: int) -> None:
        """Job ``index``'s submit was answered in a way that proves no task was created.

        It is ``pending`` again while it waits to be sent again (a process killed meanwhile
        leaves it to be submitted by the next run, not held back as unknown).
        """
        await self.intake.journal.mark_not_sent(self.lines[index])

    def __aiter__(self) -> Feed:
        return self

    async def __anext__(self) -> dict[str, Any]:
        i = self.intake
        while True:
            if i.stop.is_set():
                raise StopAsyncIteration
            job = next(self._jobs, None)
            if job is None:
                raise StopAsyncIteration
            await i.gate.acquire()
            fed = False
            try:
                await i.pacer.wait()
                if i.stop.is_set():
                    raise StopAsyncIteration
                body = await i.prepare(job)
                if body is None:
                    continue
                i.counters.queued -= 1
                i.counters.submitting += 1
                self._unsent[len(self.lines)] = (body, job.model)
                self.lines.append(job.line)
                fed = True
                return body
            finally:
                if not fed:
                    i.gate.release()

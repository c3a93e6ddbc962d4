"""What becomes of a task that ended: its outputs saved, or why not, in the journal."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any, Final

import anyio
from anyio.abc import TaskGroup

from wavespeed_async._core.errors import (
    BudgetExceeded,
    InsufficientBalanceError,
    NotFoundError,
    SubmissionOutcomeUnknown,
    TaskFailedError,
    WaveSpeedError,
)
from wavespeed_async._core.models import Prediction
from wavespeed_async._core.money import format_usd
from wavespeed_async._facade.bulk import BulkResult
from wavespeed_async._facade.client import Client
from wavespeed_async.cli._outdir import PARTIAL_DIR, output_name, partial_dir
from wavespeed_async.cli._progress import Counters
from wavespeed_async.jobs.async_journal import AsyncJournal
from wavespeed_async.jobs.journal import JournalError

__all__ = ["MAX_SAVING", "Downloads", "record_end"]

#: Downloads (and their journal writes) running at once.
MAX_SAVING: Final = 16


class Downloads:
    """The outputs of completed tasks, downloaded into DIR (``MAX_SAVING`` at once)."""

    def __init__(
        self,
        journal: AsyncJournal,
        counters: Counters,
        out: Path,
        *,
        on_journal_error: Callable[[JournalError], None],
    ) -> None:
        self.journal = journal
        self.counters = counters
        self.out = out
        self.on_journal_error = on_journal_error
        self._slots = anyio.Semaphore(MAX_SAVING)

    async def start(self, work: TaskGroup, client: Client, line: int, pred: Prediction) -> None:
        """Start saving the outputs of ``pred`` (waits while too many downloads run)."""
        self.counters.running -= 1
        self.counters.saving += 1
        await self._slots.acquire()
        work.start_soon(self._save, client, line, pred)

    async def _save(self, client: Client, line: int, pred: Prediction) -> None:
        c = self.counters
        try:
            tmp = self.out / PARTIAL_DIR / pred.id
            names: list[str] = []
            try:
                # A private folder, checked not to be a link: downloads never go through one.
                await anyio.to_thread.run_sync(partial_dir, self.out)
                paths = await client.download(pred, tmp)
                for n, path in enumerate(paths):
                    name = output_name(line, pred.id, n, path.suffix)
                    await anyio.Path(path).replace(self.out / name)
                    names.append(name)
            except (WaveSpeedError, OSError) as exc:  # OSError: a full disk, EMFILE, ...
                await self.journal.note_error(
                    line, f"task completed but its outputs could not be saved: {exc}; "
                    "re-run the same command to download them",
                )  # fmt: skip
                c.saving -= 1
                c.incomplete += 1
                c.ended_this_run += 1
                return
            finally:
                with suppress(OSError):
                    await anyio.Path(tmp).rmdir()
            await self.journal.mark_completed(line, names, inference_ms=pred.inference_ms)
            c.saving -= 1
            c.completed += 1
            c.ended_this_run += 1
        except JournalError as exc:
            self.on_journal_error(exc)  # the batch stops; the files stay for the re-run
        finally:
            self._slots.release()


async def record_end(
    journal: AsyncJournal, counters: Counters, line: int, r: BulkResult[Any], *, resumed: bool
) -> None:
    """Journal a job that ended without outputs to save: failed, unknown, or incomplete.

    ``resumed``: the job's task was created by an earlier run.
    """
    c = counters
    if r.id is None:
        c.submitting -= 1
    else:
        c.running -= 1
    c.ended_this_run += 1
    error = r.error
    text = str(error) if error is not None else "no result"
    if isinstance(error, BudgetExceeded):
        # Never sent: the job stays pending, for a run with a higher --max-spend.
        await journal.note_error(
            line,
            f"budget: held back by --max-spend {format_usd(error.budget_usd)} (it costs "
            f"{format_usd(error.quote.cost_usd)}; {format_usd(error.committed_usd)} was "
            "committed); not submitted",
        )
        c.held_back += 1
    elif isinstance(error, InsufficientBalanceError) and r.id is None:
        # Refused before anything was created: pending, for a run after a top-up.
        await journal.reset(line)
        await journal.note_error(line, f"balance: {text}; top up and re-run to submit it")
        c.held_back += 1
    elif isinstance(error, TaskFailedError):
        await journal.mark_failed(
            line,
            text,
            task_id=error.task_id,
            code=error.code,
            inference_ms=error.prediction.inference_ms,
        )
        c.failed += 1
    elif isinstance(error, NotFoundError) and resumed:
        await journal.mark_failed(
            line,
            f"task {r.id} is unknown to the server (expired, deleted, or created on "
            "another server); --retry-failed submits the job again",
            code=404,
        )
        c.failed += 1
    elif isinstance(error, SubmissionOutcomeUnknown):
        await journal.mark_unknown(line, text)
        c.unknown += 1
    elif r.id is not None:
        # The task exists and did not end here (a timeout, a network failure): keep it.
        await journal.note_error(line, f"{text}; re-run the same command to collect it")
        c.incomplete += 1
    else:  # refused before any task existed (bad input, no balance, network)
        code = getattr(error, "code", None)
        await journal.mark_failed(line, text, code=code if isinstance(code, int) else None)
        c.failed += 1

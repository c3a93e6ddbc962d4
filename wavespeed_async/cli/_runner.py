"""The run loop of a batch: one ``run_many`` per model, one ``wait_many`` to resume.

Tasks created by an earlier run are collected (never submitted again); new jobs are fed
to ``run_many`` per model (see :mod:`._feed`); every task id is committed to the journal
as soon as it is known, and every result is handed to :mod:`._results`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup

from wavespeed_async._core.settings import FlowLimits
from wavespeed_async._facade.bulk import BATCH_FATAL, BulkResult
from wavespeed_async._facade.client import Client
from wavespeed_async.cli import _spend as spend
from wavespeed_async.cli._collect import foreign_task
from wavespeed_async.cli._common import Target, err, open_client
from wavespeed_async.cli._feed import Feed, Intake
from wavespeed_async.cli._jobs import Job
from wavespeed_async.cli._plan import Plan
from wavespeed_async.cli._progress import Counters, Display, make_display
from wavespeed_async.cli._results import Downloads, record_end
from wavespeed_async.cli._stop import Stop
from wavespeed_async.jobs.async_journal import AsyncJournal
from wavespeed_async.jobs.journal import Journal, JournalError

__all__ = ["Batch"]


class Batch:
    """One run of a batch; make it inside the event loop (anyio's primitives need one)."""

    def __init__(
        self,
        args: argparse.Namespace,
        target: Target,
        journal: Journal,
        out: Path,
        plan: Plan,
    ) -> None:
        self.args = args
        self.target = target
        # Off the event loop, committed in groups: an fsync never stalls the batch.
        self.journal = AsyncJournal(journal)
        self.out = out
        self.plan = plan
        self.concurrency: int = args.concurrency
        self.counters = Counters(total=len(plan.jobs))
        self.display: Display = make_display(self.counters, quiet=args.quiet)
        self.stop = Stop(self.counters, self.display, grace_s=args.grace)
        self.downloads = Downloads(
            self.journal, self.counters, out, on_journal_error=self.stop.fail
        )
        self.task_ids: dict[int, str] = {}
        self.resumed_lines: set[int] = set()
        self._jobs = {job.line: job for job in plan.jobs}
        self._work: TaskGroup | None = None
        c = self.counters
        c.completed = plan.skipped_completed
        c.failed = plan.skipped_failed
        c.invalid = len(plan.invalid)
        c.unknown = len(plan.held_unknown)
        c.skipped = plan.skipped_completed + plan.skipped_failed
        c.queued = len(plan.to_submit)
        c.running = len(plan.to_resume)
        c.resumed = len(plan.to_resume)

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as outer:
                await outer.start(self.stop.watch_signals, outer)
                if not self.stop.requested:
                    async with open_client(
                        self.target,
                        timeout_s=self.args.timeout,
                        on_started=self._started,
                        seed=int.from_bytes(os.urandom(4), "big"),
                        share=spend.spend_share(self.args),
                        limits=spend.spend_limits(self.args, self._shared_limits()),
                    ) as client:
                        await spend.before_run(
                            client,
                            self.args,
                            self.journal,
                            self.plan,
                            self.counters,
                            emulator=self.target.emulator,
                            fail=self.stop.fail,
                        )
                        intake = Intake(
                            client,
                            self.journal,
                            self.counters,
                            self.stop.event,
                            concurrency=self.concurrency,
                            rate=self.args.rate,
                        )
                        # Before any job is taken: the collected tasks are running.
                        intake.hold(len(self.plan.to_resume))
                        self.display.start()
                        outer.start_soon(self._report)
                        with self.stop.work_scope:
                            async with anyio.create_task_group() as work:
                                self._work = work
                                if self.plan.to_resume:
                                    work.start_soon(self._resume, client, intake)
                                for model, jobs in _by_model(self.plan.to_submit):
                                    work.start_soon(self._submit, client, intake, model, jobs)
                        if not self.stop.requested and self.stop.fatal is None:
                            await spend.after_run(client, self.journal, self.plan)
                outer.cancel_scope.cancel()
        finally:
            self.display.stop()

    def _shared_limits(self) -> FlowLimits | None:
        """With ``--share``, ``--concurrency`` and ``--rate`` hold for the whole account."""
        if self.args.share is None:
            return None
        return FlowLimits(max_in_flight=self.concurrency, max_tasks_per_minute=self.args.rate)

    def _started(self, base_url: str) -> None:
        if self.args.quiet:
            return
        where = f"the built-in emulator at {base_url}" if self.target.emulator else base_url
        p = self.plan
        err(
            f"batch: {len(p.jobs)} job(s) from {self.args.jobs} -> {self.out}/ on {where}; "
            f"{len(p.to_submit)} to submit, {len(p.to_resume)} to collect, "
            f"{p.skipped_completed + p.skipped_failed} finished earlier"
        )

    async def _report(self) -> None:
        while True:
            self.display.refresh()
            await anyio.sleep(0.2)

    async def _created(self, line: int, task_id: str) -> None:
        """Record a new task: committed (fsync'ed) before the job goes on to poll.

        If the journal cannot take it, the batch stops (it could no longer promise to
        keep the ids) and the id is printed, so that it is not lost.
        """
        self.task_ids[line] = task_id
        try:
            await self.journal.mark_created(line, task_id)
        except JournalError as exc:
            err(f"line {line}: task {task_id} was created but could not be journaled: {exc}")
            self.stop.fail(exc)
        c = self.counters
        c.submitting -= 1
        c.running += 1
        c.submitted += 1

    async def _submit(self, client: Client, intake: Intake, model: str, jobs: list[Job]) -> None:
        feed = Feed(intake, jobs)

        async def created(index: int, task_id: str) -> None:
            await self._created(feed.lines[index], task_id)

        try:
            async with client.run_many(
                model,
                feed,
                concurrency=self.concurrency,
                on_task_created=created,
                on_submitting=feed.submitting,
                on_not_sent=feed.not_sent,
            ) as results:
                async for r in results:
                    intake.release()
                    feed.ended(r.index)
                    await self._dispatch(client, feed.lines[r.index], r)
        except (*BATCH_FATAL, JournalError) as exc:
            self.stop.fail(exc)

    async def _resume(self, client: Client, intake: Intake) -> None:
        items = self.plan.to_resume
        lines = [line for line, _ in items]
        for line, task_id in items:
            self.task_ids[line] = task_id
            self.resumed_lines.add(line)
        try:
            async with client.wait_many(
                [task_id for _, task_id in items], concurrency=min(len(items), 256)
            ) as results:
                async for r in results:
                    intake.release()  # one task fewer running: room for a new job
                    await self._dispatch(client, lines[r.index], r)
        except (*BATCH_FATAL, JournalError) as exc:
            self.stop.fail(exc)

    async def _dispatch(self, client: Client, line: int, r: BulkResult[Any]) -> None:
        if r.id is not None and self.task_ids.get(line) != r.id:
            # A task named only by an error answer: record it before anything else.
            await self._created(line, r.id)
        job = self._jobs.get(line)
        if line in self.resumed_lines and r.prediction is not None and job is not None:
            why = foreign_task(job, r.prediction)
            if why is not None:
                await self._foreign(line, why)
                return
        if r.ok and r.prediction is not None and self._work is not None:
            await self.downloads.start(self._work, client, line, r.prediction)
            return
        await record_end(self.journal, self.counters, line, r, resumed=line in self.resumed_lines)

    async def _foreign(self, line: int, why: str) -> None:
        """A collected id answers with another job: say so, record it, save nothing."""
        text = (
            f"{why}: the id belongs to another job (a server that reused it); its outputs "
            "are not saved. --retry-failed submits this line again"
        )
        await self.journal.mark_failed(line, text)
        self.display.note(f"line {line}: {text}")
        c = self.counters
        c.running -= 1
        c.failed += 1
        c.ended_this_run += 1


def _by_model(jobs: list[Job]) -> list[tuple[str, list[Job]]]:
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.model or "", []).append(job)
    return list(groups.items())

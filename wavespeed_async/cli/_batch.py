"""``wavespeed-async batch``: many jobs from a JSONL file; resumable; nothing lost.

How nothing is lost: every job has a row in ``DIR/journal.sqlite3`` (see
:mod:`wavespeed_async._journal`). A job is marked ``submitting`` just before its request
goes out, and its task id is committed (fsync'ed) from ``run_many``'s
``on_task_created`` callback, before the job polls. Re-running the same command skips
finished jobs, polls the tasks that exist (``wait_many``; never a second submit), and
holds back the jobs whose submit outcome is unknown unless ``--resubmit-unknown``.

The batch paces itself (``--concurrency``, ``--rate``) before a job is marked
``submitting``, so a job waits for its turn while still ``pending``: a process killed
while jobs wait leaves them pending, not "unknown".
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Final

import anyio
from anyio.abc import TaskGroup, TaskStatus

from wavespeed_async._bulk import BATCH_FATAL, BulkResult
from wavespeed_async._client import Client
from wavespeed_async._errors import (
    AuthenticationError,
    NotFoundError,
    SubmissionOutcomeUnknown,
    TaskFailedError,
    WaveSpeedError,
)
from wavespeed_async._flow import WINDOW_MARGIN_S, SlidingWindow
from wavespeed_async._journal import JobRecord, Journal, JournalError
from wavespeed_async._models import Prediction
from wavespeed_async.cli._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Target,
    UsageError,
    add_connection_options,
    err,
    open_client,
    public_url,
    resolve_target,
)
from wavespeed_async.cli._jobs import Job, is_url, parse_jobs
from wavespeed_async.cli._progress import Counters, Display, make_display

__all__ = ["JOURNAL_NAME", "MANIFEST_NAME", "add_parser", "command", "output_name"]

JOURNAL_NAME: Final = "journal.sqlite3"
MANIFEST_NAME: Final = "results.jsonl"
PARTIAL_DIR: Final = ".partial"
LOCK_NAME: Final = ".lock"
EMULATOR_TARGET: Final = "emulator"
DEFAULT_CONCURRENCY: Final = 16
DEFAULT_GRACE_S: Final = 5.0
#: Downloads (and their journal writes) running at once.
MAX_SAVING: Final = 16

#: Manifest statuses by journal state.
STATUS: Final = {
    "completed": "completed",
    "failed": "failed",
    "invalid": "invalid",
    "created": "incomplete",
    "submitting": "unknown",
    "unknown": "unknown",
    "pending": "not_submitted",
}

UNKNOWN_HELP: Final = (
    "a task may exist (and be billed) for each; they are not submitted again. Check them "
    "on your WaveSpeed dashboard, then re-run with --resubmit-unknown to submit them again"
)


def output_name(line: int, task_id: str, n: int, suffix: str) -> str:
    """The file name of output ``n`` of the task of line ``line``."""
    return f"line{line:05d}_{task_id}_{n}{suffix}"


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "batch",
        help="run every job of a JSONL file (resumable)",
        description=(
            "Run one job per line of JOBS (a JSON object of inputs, optionally with its own "
            '"model"). Outputs are saved to DIR as lineNNNNN_TASKID_K.png, with a '
            "results.jsonl manifest and a journal: run the same command again to resume."
        ),
    )
    p.add_argument("jobs", metavar="JOBS.jsonl", help="the jobs file")
    p.add_argument(
        "-o", "--output", required=True, metavar="DIR", help="folder for outputs and journal"
    )
    p.add_argument("--model", default=None, help='model for lines without a "model" key')
    p.add_argument(
        "--concurrency",
        type=int,
        default=DEFAULT_CONCURRENCY,
        metavar="N",
        help=f"tasks in flight at once (default {DEFAULT_CONCURRENCY})",
    )
    p.add_argument(
        "--rate", type=int, default=None, metavar="PER_MIN", help="start at most this many "
        "tasks per minute (your account tier's limit)",
    )  # fmt: skip
    p.add_argument(
        "--grace",
        type=float,
        default=DEFAULT_GRACE_S,
        metavar="S",
        help=f"on Ctrl-C, wait this long for tasks in flight (default {DEFAULT_GRACE_S:g})",
    )
    p.add_argument(
        "--resubmit-unknown",
        action="store_true",
        help="submit again the jobs whose earlier submit has an unknown outcome (may bill twice)",
    )
    p.add_argument("--retry-failed", action="store_true", help="submit again the jobs that failed")
    p.add_argument(
        "--rerun-changed",
        action="store_true",
        help="when lines of JOBS changed since the journal was written, run them as new jobs",
    )
    add_connection_options(p)
    p.set_defaults(func=command)


# -- planning --------------------------------------------------------------------------


@dataclass(slots=True)
class Plan:
    jobs: list[Job]
    to_submit: list[Job] = field(default_factory=list)
    to_resume: list[tuple[int, str]] = field(default_factory=list)
    held_unknown: list[JobRecord] = field(default_factory=list)
    skipped_completed: int = 0
    skipped_failed: int = 0
    invalid: list[Job] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _lines_text(lines: list[int], limit: int = 20) -> str:
    text = ", ".join(str(n) for n in lines[:limit])
    return text + (f" and {len(lines) - limit} more" if len(lines) > limit else "")


def _has_task(rec: JobRecord) -> bool:
    """Whether a row may stand for a task on the server (an id, or an unanswered submit)."""
    return rec.task_id is not None or rec.state in ("submitting", "unknown")


def make_plan(jobs: list[Job], journal: Journal, args: argparse.Namespace, target: str) -> Plan:
    """Reconcile the jobs file with the journal: what to skip, poll, submit or hold."""
    plan = Plan(jobs)
    stale = journal.submitting_to_unknown(
        "the process stopped while this job was being submitted: a task may exist"
    )
    by_line = {j.line: j for j in jobs}
    records = {r.line: r for r in journal.all()}

    # An edited jobs file: a line whose content changed while the journal holds a task for
    # it would otherwise be mixed up with the old task (or submitted twice).
    changed = sorted(
        line
        for line, rec in records.items()
        if _has_task(rec) and (line not in by_line or by_line[line].hash != rec.hash)
    )
    if changed and not args.rerun_changed:
        raise UsageError(
            f"{args.jobs} changed since the journal in {args.output} was written: line(s) "
            f"{_lines_text(changed)} differ from the jobs that were submitted. Use a new "
            "-o DIR, restore the file, or pass --rerun-changed to run the changed lines as "
            "new jobs (their earlier tasks are then forgotten)."
        )
    harmless = [
        line
        for line, rec in records.items()
        if (line not in by_line or by_line[line].hash != rec.hash) and line not in changed
    ]
    journal.forget(changed + harmless)
    if changed:
        plan.notes.append(f"line(s) {_lines_text(changed)} changed: running them as new jobs")

    # Tasks of an in-process emulator end with its process: submit such jobs again (the
    # emulator bills nothing). Tasks of a real server are never dropped.
    previous = journal.get_meta("target")
    live = [r for r in journal.all() if r.state in ("created", "unknown") and r.line in by_line]
    if live and previous is not None:
        if previous == EMULATOR_TARGET:
            for r in live:
                journal.reset(r.line)
            plan.notes.append(
                f"{len(live)} unfinished job(s) of an earlier --emulator run are submitted "
                "again (the emulator's tasks ended with its process)"
            )
            stale = [n for n in stale if n not in {r.line for r in live}]
        elif previous != target:
            raise UsageError(
                f"the journal in {args.output} holds {len(live)} unfinished task(s) created "
                f"on {previous}; run against the same server (--base-url {previous}) to "
                "collect them, or use a new -o DIR"
            )
    journal.set_meta("target", target)
    if stale:
        plan.notes.append(
            f"line(s) {_lines_text(stale)}: the previous run stopped while submitting them"
        )

    for job in jobs:
        if job.error is not None:
            journal.mark_invalid(job.line, job.hash, job.error)
            plan.invalid.append(job)
            continue
        rec = journal.ensure(job.line, job.hash, job.model)
        state = rec.state
        if state == "completed":
            plan.skipped_completed += 1
        elif state == "failed":
            if args.retry_failed:
                journal.reset(job.line)
                plan.to_submit.append(job)
            else:
                plan.skipped_failed += 1
        elif state == "created" and rec.task_id is not None:
            plan.to_resume.append((job.line, rec.task_id))
        elif state in ("submitting", "unknown"):
            if args.resubmit_unknown:
                journal.reset(job.line)
                plan.to_submit.append(job)
            else:
                plan.held_unknown.append(rec)
        else:  # pending, or an invalid line that is now fixed
            if state != "pending":
                journal.reset(job.line)
            plan.to_submit.append(job)
    return plan


# -- running ---------------------------------------------------------------------------


class _Feed:
    """The inputs of one model's ``run_many``: paced, uploaded, and journaled as they go.

    A job is taken only when the batch has room (the shared gate) and the start rate
    allows; its local files are uploaded; then it is marked ``submitting`` and handed to
    ``run_many``, which submits it at once.
    """

    def __init__(self, batch: _Batch, jobs: list[Job]) -> None:
        self.batch = batch
        self._jobs: Iterator[Job] = iter(jobs)
        #: run_many's index -> line number.
        self.lines: list[int] = []

    def __aiter__(self) -> _Feed:
        return self

    async def __anext__(self) -> dict[str, Any]:
        b = self.batch
        while True:
            if b.stopping:
                raise StopAsyncIteration
            job = next(self._jobs, None)
            if job is None:
                raise StopAsyncIteration
            await b.gate.acquire()
            fed = False
            try:
                await b.pace()
                if b.stopping:
                    raise StopAsyncIteration
                body = await b.prepare(job)
                if body is None:
                    continue
                b.journal.mark_submitting(job.line, body, job.model)
                b.counters.queued -= 1
                b.counters.submitting += 1
                self.lines.append(job.line)
                fed = True
                return body
            finally:
                if not fed:
                    b.gate.release()


class _Batch:
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
        self.journal = journal
        self.out = out
        self.plan = plan
        self.concurrency: int = args.concurrency
        self.grace_s: float = args.grace
        self.counters = Counters(total=len(plan.jobs))
        self.display: Display = make_display(self.counters, quiet=args.quiet)
        self.gate = anyio.Semaphore(self.concurrency)
        self.saving = anyio.Semaphore(MAX_SAVING)
        self._window = (
            SlidingWindow(args.rate, 60.0 + WINDOW_MARGIN_S) if args.rate is not None else None
        )
        self._pace_lock = anyio.Lock()
        self.stop_event = anyio.Event()
        self.work_scope = anyio.CancelScope()
        self.interrupted: int | None = None
        self.aborted = False
        self.fatal: BaseException | None = None
        self.task_ids: dict[int, str] = {}
        self.resumed_lines: set[int] = set()
        self._client: Client | None = None
        self._work: TaskGroup | None = None
        self._uploaded: dict[Path, str] = {}
        self._upload_errors: dict[Path, WaveSpeedError] = {}
        self._uploading: dict[Path, anyio.Event] = {}
        c = self.counters
        c.completed = plan.skipped_completed
        c.failed = plan.skipped_failed + len(plan.invalid)
        c.unknown = len(plan.held_unknown)
        c.skipped = plan.skipped_completed + plan.skipped_failed
        c.queued = len(plan.to_submit)
        c.running = len(plan.to_resume)
        c.resumed = len(plan.to_resume)

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set()

    @property
    def client(self) -> Client:
        if self._client is None:
            raise RuntimeError("the client is not open yet")
        return self._client

    # -- the run -------------------------------------------------------------------

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as outer:
                await outer.start(self._signals, outer)
                if not self.stopping:
                    async with open_client(
                        self.target,
                        timeout_s=self.args.timeout,
                        on_started=self._started,
                        seed=int.from_bytes(os.urandom(4), "big"),
                    ) as client:
                        self._client = client
                        self.display.start()
                        outer.start_soon(self._report)
                        with self.work_scope:
                            async with anyio.create_task_group() as work:
                                self._work = work
                                if self.plan.to_resume:
                                    work.start_soon(self._resume)
                                for model, jobs in _by_model(self.plan.to_submit):
                                    work.start_soon(self._submit, model, jobs)
                outer.cancel_scope.cancel()
        finally:
            self.display.stop()

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

    async def _signals(self, outer: TaskGroup, *, task_status: TaskStatus[None]) -> None:
        if sys.platform == "win32":  # no signal receiver there: Ctrl-C raises instead
            task_status.started()
            return
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            task_status.started()
            async for signum in signals:
                if self.interrupted is None:
                    self.interrupted = signum
                    self.stop_event.set()
                    c = self.counters
                    self.display.note(
                        f"interrupted: submitting no more jobs; waiting up to {self.grace_s:g} s "
                        f"for the {c.running + c.submitting} job(s) in flight. Press Ctrl-C "
                        "again to stop at once (nothing is lost: re-run the same command to "
                        "resume)."
                    )
                    outer.start_soon(self._grace)
                else:
                    self.display.note("stopping now")
                    self.aborted = True
                    self.work_scope.cancel()
                    # If anything still hangs, leave anyway: the journal is committed.
                    watchdog = threading.Timer(3.0, os._exit, args=(EXIT_INTERRUPTED,))
                    watchdog.daemon = True
                    watchdog.start()

    async def _grace(self) -> None:
        await anyio.sleep(self.grace_s)
        if not self.work_scope.cancel_called:
            c = self.counters
            self.display.note(
                f"grace period over: {c.running} task(s) still running are recorded in the "
                "journal; re-run the same command to collect them"
            )
            self.work_scope.cancel()

    async def pace(self) -> None:
        """Wait until the start rate allows one more task (or the batch stops)."""
        window = self._window
        if window is None:
            return
        async with self._pace_lock:
            while (delay := window.delay(anyio.current_time())) > 0:
                with anyio.move_on_after(delay):
                    await self.stop_event.wait()
                if self.stopping:
                    return
            window.record(anyio.current_time())

    # -- submitting ----------------------------------------------------------------

    async def prepare(self, job: Job) -> dict[str, Any] | None:
        """The request body: local files uploaded (each once). ``None``: upload failed."""
        body = dict(job.inputs)
        try:
            for key, paths in job.local_media.items():
                remaining = iter(paths)
                value = job.inputs[key]
                values = value if isinstance(value, list) else [value]
                urls = [v if is_url(v) else await self._upload(next(remaining)) for v in values]
                body[key] = urls if isinstance(value, list) else urls[0]
        except WaveSpeedError as exc:
            self.journal.mark_failed(job.line, f"upload failed: {exc}")
            self.counters.queued -= 1
            self.counters.failed += 1
            self.counters.ended_this_run += 1
            return None
        return body

    async def _upload(self, path: Path) -> str:
        while True:
            if path in self._uploaded:
                return self._uploaded[path]
            if path in self._upload_errors:
                raise self._upload_errors[path]
            pending = self._uploading.get(path)
            if pending is None:
                break
            await pending.wait()
        done = self._uploading[path] = anyio.Event()
        try:
            url = await self.client.upload(path)
        except WaveSpeedError as exc:
            self._upload_errors[path] = exc
            raise
        finally:
            done.set()
            del self._uploading[path]
        self._uploaded[path] = url
        return url

    async def _submit(self, model: str, jobs: list[Job]) -> None:
        feed = _Feed(self, jobs)
        c = self.counters

        def created(index: int, task_id: str) -> None:
            # Committed (fsync'ed) before the job goes on to poll.
            line = feed.lines[index]
            self.journal.mark_created(line, task_id)
            self.task_ids[line] = task_id
            c.submitting -= 1
            c.running += 1
            c.submitted += 1

        try:
            async with self.client.run_many(
                model, feed, concurrency=self.concurrency, on_task_created=created
            ) as results:
                async for r in results:
                    self.gate.release()
                    await self._dispatch(feed.lines[r.index], r)
        except BATCH_FATAL as exc:
            self._fatal(exc)

    async def _resume(self) -> None:
        items = self.plan.to_resume
        lines = [line for line, _ in items]
        for line, task_id in items:
            self.task_ids[line] = task_id
            self.resumed_lines.add(line)
        try:
            async with self.client.wait_many(
                [task_id for _, task_id in items], concurrency=min(len(items), 256)
            ) as results:
                async for r in results:
                    await self._dispatch(lines[r.index], r)
        except BATCH_FATAL as exc:
            self._fatal(exc)

    def _fatal(self, exc: BaseException) -> None:
        if self.fatal is None:
            self.fatal = exc
        self.stop_event.set()
        self.work_scope.cancel()

    # -- results -------------------------------------------------------------------

    async def _dispatch(self, line: int, r: BulkResult[Any]) -> None:
        c = self.counters
        if r.id is not None and self.task_ids.get(line) != r.id:
            # A task named only by an error answer: record it before anything else.
            self.journal.mark_created(line, r.id)
            self.task_ids[line] = r.id
            c.submitting -= 1
            c.running += 1
            c.submitted += 1
        if r.ok and r.prediction is not None and self._work is not None:
            c.running -= 1
            c.saving += 1
            await self.saving.acquire()
            self._work.start_soon(self._save, line, r.prediction)
            return
        if r.id is None:
            c.submitting -= 1
        else:
            c.running -= 1
        c.ended_this_run += 1
        error = r.error
        text = str(error) if error is not None else "no result"
        if isinstance(error, TaskFailedError):
            self.journal.mark_failed(
                line,
                text,
                task_id=error.task_id,
                code=error.code,
                inference_ms=error.prediction.inference_ms,
            )
            c.failed += 1
        elif isinstance(error, NotFoundError) and line in self.resumed_lines:
            self.journal.mark_failed(
                line,
                f"task {r.id} is unknown to the server (expired, deleted, or created on "
                "another server); --retry-failed submits the job again",
                code=404,
            )
            c.failed += 1
        elif isinstance(error, SubmissionOutcomeUnknown):
            self.journal.mark_unknown(line, text)
            c.unknown += 1
        elif r.id is not None:
            # The task exists and did not end here (a timeout, a network failure): keep it.
            self.journal.note_error(line, f"{text}; re-run the same command to collect it")
            c.incomplete += 1
        else:  # refused before any task existed (bad input, no balance, network)
            code = getattr(error, "code", None)
            self.journal.mark_failed(line, text, code=code if isinstance(code, int) else None)
            c.failed += 1

    async def _save(self, line: int, pred: Prediction) -> None:
        c = self.counters
        try:
            tmp = self.out / PARTIAL_DIR / pred.id
            names: list[str] = []
            try:
                paths = await self.client.download(pred, tmp)
                for n, path in enumerate(paths):
                    name = output_name(line, pred.id, n, path.suffix)
                    await anyio.Path(path).replace(self.out / name)
                    names.append(name)
            except WaveSpeedError as exc:
                self.journal.note_error(
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
            self.journal.mark_completed(line, names, inference_ms=pred.inference_ms)
            c.saving -= 1
            c.completed += 1
            c.ended_this_run += 1
        finally:
            self.saving.release()


def _by_model(jobs: list[Job]) -> list[tuple[str, list[Job]]]:
    groups: dict[str, list[Job]] = {}
    for job in jobs:
        groups.setdefault(job.model or "", []).append(job)
    return list(groups.items())


# -- the manifest and the summary ------------------------------------------------------


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return (
        datetime.fromtimestamp(t, tz=timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def manifest_entry(rec: JobRecord) -> dict[str, Any]:
    """One line of ``results.jsonl``."""
    total = (
        round(rec.finished_at - rec.submitted_at, 3)
        if rec.finished_at is not None and rec.submitted_at is not None
        else None
    )
    return {
        "line": rec.line,
        "status": STATUS.get(rec.state, rec.state),
        "task_id": rec.task_id,
        "model": rec.model,
        "outputs": rec.outputs,
        "error": rec.error,
        "code": rec.code,
        "timings": {
            "submitted_at": _iso(rec.submitted_at),
            "created_at": _iso(rec.created_at),
            "finished_at": _iso(rec.finished_at),
            "total_s": total,
            "inference_ms": rec.inference_ms,
        },
    }


def write_manifest(out: Path, records: list[JobRecord]) -> Path:
    """Rewrite ``results.jsonl`` (atomically): one line per job line, in line order."""
    path = out / MANIFEST_NAME
    tmp = out / f".{MANIFEST_NAME}.tmp"
    with tmp.open("w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(manifest_entry(rec), ensure_ascii=False) + "\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)
    return path


def _summary(
    batch: _Batch, records: list[JobRecord], manifest: Path, elapsed: float, quiet: bool
) -> None:
    by_status: dict[str, int] = {}
    for rec in records:
        status = STATUS.get(rec.state, rec.state)
        by_status[status] = by_status.get(status, 0) + 1
    order = ("completed", "failed", "invalid", "unknown", "incomplete", "not_submitted")
    counts = ", ".join(f"{by_status[s]} {s.replace('_', ' ')}" for s in order if s in by_status)
    files = sum(len(r.outputs) for r in records)
    head = (
        "stopped"
        if batch.fatal is not None
        else "interrupted"
        if batch.interrupted is not None
        else "finished"
    )
    print(f"Batch {head} in {elapsed:.1f} s: {len(records)} job(s): {counts}.")
    if quiet:
        print(f"Manifest: {manifest}")
        return
    c = batch.counters
    print(
        f"  this run: {c.submitted} submitted, {c.resumed} collected from an earlier run, "
        f"{c.skipped} skipped (finished earlier)"
    )
    print(f"  outputs:  {batch.out}/ ({files} file(s))")
    print(f"  manifest: {manifest}")
    print(f"  journal:  {batch.out / JOURNAL_NAME}")
    shown = records if len(records) <= 100 else [r for r in records if r.state != "completed"]
    if shown:
        print("Outputs per line:" if len(shown) == len(records) else "Lines not completed:")
    for rec in shown[:200]:
        status = STATUS.get(rec.state, rec.state)
        if rec.state == "completed":
            detail = " ".join(rec.outputs) or "(no outputs)"
        elif rec.state == "created" and not rec.error:
            detail = f"task {rec.task_id} still runs on the server: re-run to collect it"
        elif rec.state == "pending":
            detail = "not submitted yet: re-run to submit it"
        else:
            detail = rec.error or ""
            if rec.task_id and rec.task_id not in detail:
                detail = f"task {rec.task_id}: {detail}"
        print(f"  line {rec.line:>5}  {status:<13} {detail}")
    if len(shown) > 200:
        print(f"  ... {len(shown) - 200} more: see {manifest}")
    unknown = [r.line for r in records if r.state in ("unknown", "submitting")]
    if unknown:
        print(f"Unknown submit outcome on line(s) {_lines_text(unknown)}: {UNKNOWN_HELP}.")
    if by_status.get("incomplete") or by_status.get("not_submitted"):
        print("Re-run the same command to finish the remaining jobs.")


# -- the command -----------------------------------------------------------------------


def _lock(out: Path) -> IO[str] | None:
    """Hold ``DIR/.lock`` so that two batches never write one journal at once."""
    try:
        import fcntl
    except ImportError:  # Windows
        return None
    f = (out / LOCK_NAME).open("a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise UsageError(f"{out} is in use by another wavespeed-async batch") from None
    return f


def _check_args(args: argparse.Namespace) -> None:
    if args.concurrency < 1:
        raise UsageError(f"--concurrency: {args.concurrency}; allowed: an integer >= 1")
    if args.rate is not None and args.rate < 1:
        raise UsageError(f"--rate: {args.rate}; allowed: an integer >= 1 (tasks per minute)")
    if not args.grace >= 0:
        raise UsageError(f"--grace: {args.grace}; allowed: seconds >= 0")


def command(args: argparse.Namespace) -> int:
    _check_args(args)
    target = resolve_target(args)
    jobs_path = Path(args.jobs)
    try:
        text = jobs_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {args.jobs}: {exc}") from None
    jobs = parse_jobs(text, default_model=args.model, base=jobs_path.parent)
    if not jobs:
        raise UsageError(f"{args.jobs}: no jobs (one JSON object of inputs per line)")
    out = Path(args.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {args.output}: {exc}") from None
    lock = _lock(out)
    try:
        shutil.rmtree(out / PARTIAL_DIR, ignore_errors=True)
        with Journal.open(out / JOURNAL_NAME) as journal:
            return _run(args, target, jobs, journal, out)
    except JournalError as exc:
        raise UsageError(str(exc)) from None
    finally:
        if lock is not None:
            lock.close()


def _run(
    args: argparse.Namespace, target: Target, jobs: list[Job], journal: Journal, out: Path
) -> int:
    key = EMULATOR_TARGET if target.emulator else public_url(target.base_url or "")
    plan = make_plan(jobs, journal, args, key)
    for job in plan.invalid:
        err(f"{args.jobs}:{job.line}: {job.error}")
    for note in plan.notes:
        err(f"note: {note}")
    if plan.held_unknown:
        err(
            f"line(s) {_lines_text([r.line for r in plan.held_unknown])} have an unknown "
            f"submit outcome: {UNKNOWN_HELP}"
        )
    started = time.monotonic()
    holder: list[_Batch] = []

    async def go() -> None:
        # anyio's primitives belong to the event loop: make the batch inside it.
        holder.append(_Batch(args, target, journal, out, plan))
        await holder[0].run()

    try:
        anyio.run(go)
    finally:
        if holder and isinstance(holder[0].fatal, AuthenticationError):
            # The key is refused for every request: no submit under way created a task.
            for rec in journal.all():
                if rec.state == "submitting" and rec.task_id is None:
                    journal.reset(rec.line)
        journal.submitting_to_unknown(
            "the batch stopped while this job was being submitted: a task may exist"
        )
        job_lines = {j.line for j in jobs}
        records = [r for r in journal.all() if r.line in job_lines]
        manifest = write_manifest(out, records)
        with suppress(OSError):
            (out / PARTIAL_DIR).rmdir()
    batch = holder[0]
    _summary(batch, records, manifest, time.monotonic() - started, args.quiet)
    if batch.fatal is not None:
        hint = (
            " (check WAVESPEED_API_KEY or --api-key)"
            if isinstance(batch.fatal, AuthenticationError)
            else ""
        )
        err(f"error: the server refused the batch: {batch.fatal}{hint}")
        return EXIT_USAGE
    if batch.interrupted is not None:
        return EXIT_INTERRUPTED if batch.interrupted == signal.SIGINT else 128 + batch.interrupted
    return EXIT_OK if all(r.state == "completed" for r in records) else EXIT_FAILED

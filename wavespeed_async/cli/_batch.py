"""``wavespeed-async batch``: many jobs from a JSONL file; resumable; nothing lost.

How nothing is lost: every job has a row in ``DIR/journal.sqlite3`` (see
:mod:`wavespeed_async.jobs.journal`). A job is marked ``submitting`` just before its request
goes out, and its task id is committed (fsync'ed) from ``run_many``'s
``on_task_created`` callback, before the job polls. Re-running the same command skips
finished jobs, polls the tasks that exist (``wait_many``; never a second submit), and
holds back the jobs whose submit outcome is unknown unless ``--resubmit-unknown``.

The batch paces itself (``--concurrency``, ``--rate``, and with ``--share`` the account's
limits in the Client) before a job is marked ``submitting``, so a job waits for its turn
while still ``pending``: a process killed while jobs wait leaves them pending, not
"unknown".

The parts: :mod:`._plan` (the jobs file against the journal), :mod:`._runner` (the run
loop, fed by :mod:`._feed` and :mod:`._uploads`), :mod:`._stop` (Ctrl-C, grace period),
:mod:`._results` (downloads, journal states), :mod:`._outdir` (the folder and its
manifest) and :mod:`._summary`. This module holds the command itself.
"""

from __future__ import annotations

import argparse
import signal
import time
import warnings
from contextlib import suppress
from pathlib import Path
from typing import Any, Final

import anyio

from wavespeed_async._core.errors import AuthenticationError, PermissionDeniedError
from wavespeed_async._core.requests import UnknownFieldWarning
from wavespeed_async._core.secret import Secret
from wavespeed_async._runtime.share import default_namespace
from wavespeed_async.cli._catalog import check_plan
from wavespeed_async.cli._common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Target,
    UsageError,
    add_connection_options,
    add_share_option,
    err,
    output_folder,
    public_url,
    resolve_target,
)
from wavespeed_async.cli._gallery import BatchGallery
from wavespeed_async.cli._jobs import NO_MODEL, Job, parse_jobs
from wavespeed_async.cli._outdir import (
    JOURNAL_NAME,
    MANIFEST_NAME,
    PARTIAL_DIR,
    clear_partial,
    lock,
    output_name,
    write_manifest,
)
from wavespeed_async.cli._plan import EMULATOR_TARGET, lines_text, make_plan
from wavespeed_async.cli._runner import Batch
from wavespeed_async.cli._spend import (
    add_spend_options,
    cached_costs,
    check_spend_args,
    dry_run,
    reconcile_journal,
    spend_summary,
)
from wavespeed_async.cli._summary import UNKNOWN_HELP, print_summary
from wavespeed_async.jobs.journal import JobRecord, Journal, JournalError, JournalWriteError

__all__ = ["JOURNAL_NAME", "MANIFEST_NAME", "add_parser", "command", "output_name"]

DEFAULT_CONCURRENCY: Final = 16
DEFAULT_GRACE_S: Final = 5.0


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
    p.add_argument(
        "--allow-any-path",
        action="store_true",
        help="upload local images from anywhere (default: only from inside the jobs file's "
        "folder, links followed); they must still be PNG, JPEG, WebP or GIF files",
    )
    p.add_argument("--retry-failed", action="store_true", help="submit again the jobs that failed")
    p.add_argument(
        "--rerun-changed",
        action="store_true",
        help="when lines of JOBS changed since the journal was written, run them as new jobs",
    )
    p.add_argument("--no-gallery", action="store_true", help="do not write DIR/index.html")
    add_connection_options(p)
    add_share_option(p)
    add_spend_options(p)
    p.set_defaults(func=command)


def _check_args(args: argparse.Namespace) -> None:
    if args.concurrency < 1:
        raise UsageError(f"--concurrency: {args.concurrency}; allowed: an integer >= 1")
    if args.rate is not None and args.rate < 1:
        raise UsageError(f"--rate: {args.rate}; allowed: an integer >= 1 (tasks per minute)")
    if not args.grace >= 0:
        raise UsageError(f"--grace: {args.grace}; allowed: seconds >= 0")
    check_spend_args(args)


def command(args: argparse.Namespace) -> int:
    _check_args(args)
    target = resolve_target(args)
    jobs_path = Path(args.jobs)
    try:
        text = jobs_path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read {args.jobs}: {exc}") from None
    jobs = parse_jobs(
        text,
        default_model=args.model,
        base=jobs_path.parent,
        allow_any_path=args.allow_any_path,
    )
    if not jobs:
        raise UsageError(f"{args.jobs}: no jobs (one JSON object of inputs per line)")
    if args.model is None and not any(j.model for j in jobs):
        lacking = [j.line for j in jobs if j.error == NO_MODEL]
        if lacking:
            # One mistake of the command, not one per line.
            raise UsageError(
                f'{args.jobs}: no line names a "model" and no --model was given; pass '
                "--model MODEL (e.g. --model wavespeed-ai/flux-kontext-pro/text-to-image), "
                'or add "model": "owner/model" to each line'
            )
    if args.dry_run:  # nothing is submitted, and nothing written to the folder
        return dry_run(args, target, jobs)
    out = output_folder(args.output)
    try:
        held = lock(out)
    except OSError as exc:
        raise UsageError(f"-o {args.output}: cannot write there: {exc.strerror or exc}") from None
    try:
        clear_partial(out)
        with Journal.open(out / JOURNAL_NAME) as journal:
            return _run(args, target, jobs, journal, out)
    except JournalError as exc:
        raise UsageError(str(exc)) from None
    finally:
        if held is not None:
            held.close()


def _wrap_up(
    batch: Batch | None, journal: Journal, jobs: list[Job], out: Path
) -> tuple[list[JobRecord], Path]:
    """Settle the journal after a run and write the manifest from what it holds."""
    try:
        if batch is not None and isinstance(batch.stop.fatal, AuthenticationError):
            # The key is refused for every request: no submit under way created a task.
            for rec in journal.all():
                if rec.state == "submitting" and rec.task_id is None:
                    journal.reset(rec.line)
        journal.submitting_to_unknown(
            "the batch stopped while this job was being submitted: a task may exist"
        )
    except JournalWriteError as exc:
        # Reading still works; a job left "submitting" is held back as unknown on re-run.
        if batch is not None and batch.stop.fatal is None:
            batch.stop.fatal = exc
    job_lines = {j.line for j in jobs}
    records = [r for r in journal.all() if r.line in job_lines]
    try:
        manifest = write_manifest(out, records, cached_costs(journal))
    except OSError as exc:
        raise UsageError(f"cannot write the manifest in {out}: {exc}") from None
    with suppress(OSError):
        (out / PARTIAL_DIR).rmdir()
    return records, manifest


def _run(
    args: argparse.Namespace, target: Target, jobs: list[Job], journal: Journal, out: Path
) -> int:
    key = EMULATOR_TARGET if target.emulator else public_url(target.base_url or "")
    if args.reconcile:
        reconcile_journal(args, target, journal, key)
    # The account, by a hash of its key (never the key): another key's tasks are not ours.
    account = (
        None
        if target.emulator
        else default_namespace(Secret(target.api_key), (target.base_url or "").rstrip("/"))
    )
    with journal.transaction():  # one commit (one fsync) for every line's row
        plan = make_plan(jobs, journal, args, key, account)
    check_plan(target, plan, journal, args.share)  # before any submit: every bad line at once
    for job in plan.invalid:
        err(f"{args.jobs}:{job.line}: {job.error}")
    for job in jobs:
        for message in job.warnings:
            err(f"{args.jobs}:{job.line}: warning: {message}")
    for note in plan.notes:
        err(f"note: {note}")
    if plan.held_unknown:
        err(
            f"line(s) {lines_text([r.line for r in plan.held_unknown])} have an unknown "
            f"submit outcome: {UNKNOWN_HELP}"
        )
    started = time.monotonic()
    holder: list[Batch] = []
    gallery = BatchGallery(args, out, jobs, target)

    async def go() -> None:
        # anyio's primitives belong to the event loop: make the batch inside it.
        holder.append(Batch(args, target, journal, out, plan))
        with warnings.catch_warnings():  # unknown fields were reported per line above
            warnings.simplefilter("ignore", UnknownFieldWarning)
            await gallery.alongside(holder[0].run, holder[0].counters)

    try:
        anyio.run(go)
    finally:
        records, manifest = _wrap_up(holder[0] if holder else None, journal, jobs, out)
        gallery.write(records, cached_costs(journal))
    batch = holder[0]
    stop = batch.stop
    elapsed = time.monotonic() - started
    print_summary(
        stop.outcome,
        records,
        batch.counters,
        out,
        manifest,
        elapsed,
        args.quiet,
        refused=isinstance(stop.fatal, (AuthenticationError, PermissionDeniedError)),
        money=spend_summary(records, cached_costs(journal), args),
    )
    gallery.announce()
    if isinstance(stop.fatal, JournalError):
        err(
            f"error: the batch stopped: {stop.fatal}. Every task id recorded so far is in "
            f"{manifest.name}; free the space (or fix the file) and re-run the same command "
            "to resume"
        )
        return EXIT_USAGE
    if stop.fatal is not None:
        hint = (
            " (check WAVESPEED_API_KEY or --api-key)"
            if isinstance(stop.fatal, AuthenticationError)
            else " (check the account's balance and plan)"
        )
        err(f"error: the server refused the batch: {stop.fatal}{hint}")
        return EXIT_USAGE
    if stop.interrupted is not None:
        return EXIT_INTERRUPTED if stop.interrupted == signal.SIGINT else 128 + stop.interrupted
    return EXIT_OK if all(r.state == "completed" for r in records) else EXIT_FAILED

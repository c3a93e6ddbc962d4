"""Planning a batch run: reconcile the jobs file with the journal.

For each job: skip it (finished earlier), collect its task (created earlier), hold it
back (unknown submit outcome), or submit it. Edited lines and tasks of an earlier
emulator run are sorted out here too, before anything is sent.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Final

from wavespeed_async.cli._common import UsageError
from wavespeed_async.cli._jobs import Job
from wavespeed_async.jobs.journal import JobRecord, Journal

__all__ = ["EMULATOR_TARGET", "Plan", "lines_text", "make_plan"]

#: The journal's name for the in-process emulator (whose tasks end with its process).
EMULATOR_TARGET: Final = "emulator"


@dataclass(slots=True)
class Plan:
    """What to do with each job of the file in this run."""

    jobs: list[Job]
    to_submit: list[Job] = field(default_factory=list)
    to_resume: list[tuple[int, str]] = field(default_factory=list)
    held_unknown: list[JobRecord] = field(default_factory=list)
    skipped_completed: int = 0
    skipped_failed: int = 0
    invalid: list[Job] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def lines_text(lines: list[int], limit: int = 20) -> str:
    """Line numbers for a message: the first ``limit``, then how many more."""
    text = ", ".join(str(n) for n in lines[:limit])
    return text + (f" and {len(lines) - limit} more" if len(lines) > limit else "")


def _has_task(rec: JobRecord) -> bool:
    """Whether a row may stand for a task on the server (an id, or an unanswered submit)."""
    return rec.task_id is not None or rec.state in ("submitting", "unknown")


def make_plan(
    jobs: list[Job],
    journal: Journal,
    args: argparse.Namespace,
    target: str,
    account: str | None = None,
) -> Plan:
    """Reconcile the jobs file with the journal: what to skip, poll, submit or hold.

    ``account``: the key's fingerprint (``None`` for the emulator): a journal whose
    unfinished tasks another key created is not resumed with this one.
    """
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
            f"{lines_text(changed)} differ from the jobs that were submitted. Use a new "
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
        plan.notes.append(f"line(s) {lines_text(changed)} changed: running them as new jobs")

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
    previous_account = journal.get_meta("account")
    other_key = None not in (account, previous_account) and previous_account != account
    if live and previous != EMULATOR_TARGET and other_key:
        raise UsageError(
            f"the journal in {args.output} holds {len(live)} unfinished task(s) created "
            "with another API key (another account: its tasks are unknown to this one, "
            "and would be reported failed, then sent again by --retry-failed); run with "
            "that key to collect them, or use a new -o DIR"
        )
    journal.set_meta("target", target)
    if account is not None:
        journal.set_meta("account", account)
    if stale:
        plan.notes.append(
            f"line(s) {lines_text(stale)}: the previous run stopped while submitting them"
        )

    for job in jobs:
        if job.error is not None:
            known = journal.get(job.line)
            if known is None or not _has_task(known) or known.hash != job.hash:
                journal.mark_invalid(job.line, job.hash, job.error)
                plan.invalid.append(job)
                continue
            # The same line was sent by an earlier run (a file it names is gone now, say):
            # its task is kept and followed, and the line is never sent again.
            plan.notes.append(f"line {job.line}: {job.error}; its earlier task is kept")
        rec = journal.ensure(job.line, job.hash, job.model)
        state = rec.state
        if state == "completed":
            plan.skipped_completed += 1
        elif state == "failed":
            if args.retry_failed and job.error is None:
                journal.reset(job.line)
                plan.to_submit.append(job)
            else:
                plan.skipped_failed += 1
        elif state == "created" and rec.task_id is not None:
            plan.to_resume.append((job.line, rec.task_id))
        elif state in ("submitting", "unknown"):
            if args.resubmit_unknown and job.error is None:
                journal.reset(job.line)
                plan.to_submit.append(job)
            else:
                plan.held_unknown.append(rec)
        else:  # pending, or an invalid line that is now fixed
            if state != "pending":
                journal.reset(job.line)
            plan.to_submit.append(job)
    return plan

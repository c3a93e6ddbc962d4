"""The summary printed at the end of a batch: counts, where things are, every line's fate."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from wavespeed_async._core.text import printable
from wavespeed_async.cli._outdir import JOURNAL_NAME, STATUS
from wavespeed_async.cli._plan import lines_text
from wavespeed_async.cli._progress import Counters
from wavespeed_async.jobs.journal import JobRecord

__all__ = ["UNKNOWN_HELP", "print_summary"]

UNKNOWN_HELP: Final = (
    "a task may exist (and be billed) for each; they are not submitted again. Check them "
    "on your WaveSpeed dashboard, then re-run with --resubmit-unknown to submit them again"
)


def print_summary(
    head: str,
    records: list[JobRecord],
    counters: Counters,
    out: Path,
    manifest: Path,
    elapsed: float,
    quiet: bool,
    *,
    refused: bool = False,
) -> None:
    """Print how the batch went (``head``: finished, interrupted or stopped), per line.

    ``refused``: the server refused the key or the account, so re-running as is would be
    refused too: the closing advice says to fix that first.
    """
    by_status: dict[str, int] = {}
    for rec in records:
        status = STATUS.get(rec.state, rec.state)
        by_status[status] = by_status.get(status, 0) + 1
    order = ("completed", "failed", "invalid", "unknown", "incomplete", "not_submitted")
    counts = ", ".join(f"{by_status[s]} {s.replace('_', ' ')}" for s in order if s in by_status)
    files = sum(len(r.outputs) for r in records)
    print(f"Batch {head} in {elapsed:.1f} s: {len(records)} job(s): {counts}.")
    if quiet:
        print(f"Manifest: {manifest}")
        return
    c = counters
    print(
        f"  this run: {c.submitted} submitted, {c.resumed} collected from an earlier run, "
        f"{c.skipped} skipped (finished earlier)"
    )
    print(f"  outputs:  {out}/ ({files} file(s))")
    print(f"  manifest: {manifest}")
    print(f"  journal:  {out / JOURNAL_NAME}")
    every = len(records) <= 100
    shown = records if every else [r for r in records if r.state != "completed"]
    # Refused: no job could be submitted, so the lines never sent are one fact, not one
    # line each (and re-running as is would be refused too).
    unsent = [r.line for r in records if r.state == "pending"] if refused else []
    if unsent:
        shown = [r for r in shown if r.state != "pending"]
    if shown:
        print("Outputs per line:" if every else "Lines not completed:")
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
        # The journal may hold server text (errors, ids): never raw control characters.
        print(f"  line {rec.line:>5}  {status:<13} {printable(detail, limit=1000)}")
    if len(shown) > 200:
        print(f"  ... {len(shown) - 200} more: see {manifest}")
    unknown = [r.line for r in records if r.state in ("unknown", "submitting")]
    if unknown:
        print(f"Unknown submit outcome on line(s) {lines_text(unknown)}: {UNKNOWN_HELP}.")
    if unsent:
        print(f"Not submitted: line(s) {lines_text(unsent)}.")
    if refused:
        print(
            "The server refused the key or the account, so nothing more was submitted. "
            "Fix that first (WAVESPEED_API_KEY or --api-key; the account's balance), then "
            "run the same command again: finished jobs are skipped."
        )
    elif by_status.get("incomplete") or by_status.get("not_submitted"):
        print("Re-run the same command to finish the remaining jobs.")

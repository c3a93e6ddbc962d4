"""What a batch leaves in its folder: the file names, the lock, and the manifest.

``DIR`` holds the outputs (``lineNNNNN_TASKID_K.png``), the journal, ``results.jsonl``
(one line per job, rewritten atomically at the end of every run), a ``.lock`` held while
a batch runs, and ``.partial/`` for downloads under way.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Final

from wavespeed_async.cli._common import UsageError
from wavespeed_async.jobs.journal import JobRecord

__all__ = [
    "JOURNAL_NAME",
    "MANIFEST_NAME",
    "PARTIAL_DIR",
    "STATUS",
    "lock",
    "manifest_entry",
    "output_name",
    "write_manifest",
]

JOURNAL_NAME: Final = "journal.sqlite3"
MANIFEST_NAME: Final = "results.jsonl"
PARTIAL_DIR: Final = ".partial"
LOCK_NAME: Final = ".lock"

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


def output_name(line: int, task_id: str, n: int, suffix: str) -> str:
    """The file name of output ``n`` of the task of line ``line``."""
    return f"line{line:05d}_{task_id}_{n}{suffix}"


def lock(out: Path) -> IO[str] | None:
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

"""What a batch leaves in its folder: the file names, the lock, and the manifest.

``DIR`` holds the outputs (``lineNNNNN_TASKID_K.png``), the journal, ``results.jsonl``
(one line per job, rewritten atomically at the end of every run), a ``.lock`` held while
a batch runs, and ``.partial/`` for downloads under way.

A symbolic link planted in ``DIR`` under one of these names never redirects a write: new
files are created under fresh random names (``O_EXCL``) and renamed into place (a rename
replaces a link, it does not follow it), the lock is opened with ``O_NOFOLLOW``, the
journal refuses to open through a link, and a ``.partial`` that is a link is removed, not
followed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Mapping
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import IO, Any, Final

from wavespeed_async._core.money import plain_usd
from wavespeed_async.cli._common import UsageError
from wavespeed_async.jobs.journal import JobRecord

__all__ = [
    "JOURNAL_NAME",
    "MANIFEST_NAME",
    "PARTIAL_DIR",
    "STATUS",
    "clear_partial",
    "lock",
    "manifest_entry",
    "output_name",
    "partial_dir",
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
    """Hold ``DIR/.lock`` so that two batches never write one journal at once.

    Raises:
        UsageError: another batch holds it, or it is a symbolic link.
        OSError: it cannot be opened (the folder cannot be written).
    """
    try:
        import fcntl
    except ImportError:  # Windows
        return None
    path = out / LOCK_NAME
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags, 0o600)
    except OSError:
        if path.is_symlink():
            raise UsageError(
                f"{path} is a symbolic link; a batch never opens its lock through one (remove it)"
            ) from None
        raise  # the caller says that the folder cannot be written
    f = os.fdopen(fd, "a+")
    try:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise UsageError(f"{out} is in use by another wavespeed-async batch") from None
    return f


def clear_partial(out: Path) -> None:
    """Remove what an earlier run left in ``DIR/.partial`` (a link there: the link only)."""
    path = out / PARTIAL_DIR
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def partial_dir(out: Path) -> Path:
    """``DIR/.partial``, a private folder of this batch's downloads under way.

    Raises:
        OSError: it cannot be made, or something other than a folder is in its place.
    """
    path = out / PARTIAL_DIR
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    mode = path.lstat().st_mode
    if not stat.S_ISDIR(mode):  # a link (or a file) planted since the batch started
        raise OSError(f"{path} is not a folder (a link?); downloads never go through one")
    return path


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return (
        datetime.fromtimestamp(t, tz=timezone.utc)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def manifest_entry(rec: JobRecord, cost_usd: Decimal | None = None) -> dict[str, Any]:
    """One line of ``results.jsonl`` (``cost_usd``: the task's net cost, when known)."""
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
        # A string: JSON readers would turn a number into a float.
        "cost_usd": None if cost_usd is None else plain_usd(cost_usd),
        "timings": {
            "submitted_at": _iso(rec.submitted_at),
            "created_at": _iso(rec.created_at),
            "finished_at": _iso(rec.finished_at),
            "total_s": total,
            "inference_ms": rec.inference_ms,
        },
    }


def _cost_of(rec: JobRecord, costs: Mapping[str, Decimal]) -> Decimal | None:
    """A line's cost: its task's; 0 or unknown for a line without a known task.

    0 for a line that created no task (never sent, or refused); unknown for a submit whose
    outcome is unknown.
    """
    if rec.task_id is not None:
        return costs.get(rec.task_id)
    return Decimal(0) if rec.state in ("invalid", "pending", "failed") else None


def write_manifest(
    out: Path, records: list[JobRecord], costs: Mapping[str, Decimal] | None = None
) -> Path:
    """Rewrite ``results.jsonl``: one line per job line, in line order.

    Written atomically, under a fresh name (never through a link), with each task's cost
    from ``costs`` (by task id) when known.
    """
    path = out / MANIFEST_NAME
    costs = costs or {}
    fd, tmp = tempfile.mkstemp(prefix=f".{MANIFEST_NAME}.", suffix=".tmp", dir=out)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            for rec in records:
                cost = _cost_of(rec, costs)
                f.write(json.dumps(manifest_entry(rec, cost), ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the manifest is the user's to read
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

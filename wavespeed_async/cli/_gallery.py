"""The batch's gallery, ``DIR/index.html``: rebuilt from the journal while the batch runs.

The page is written when the batch starts (so a resumed batch shows what earlier runs
did), again as results arrive, and at the end. While the batch runs, a worker thread reads
the journal through its own connection (WAL: a reader never blocks the batch's writes) and
rewrites the page at most every :data:`MIN_INTERVAL_S` seconds, and never more often than
:data:`COST_FACTOR` times what the last rewrite took (about 0.3 s at 10,000 jobs), so the
event loop never waits for it. The page never stops a batch: a write that fails is
reported once and the page is left alone from then on.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import shutil
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

import anyio

from wavespeed_async._core.secret import redacted_url
from wavespeed_async.cli._common import Target, err
from wavespeed_async.cli._jobs import Job
from wavespeed_async.cli._outdir import JOURNAL_NAME, STATUS
from wavespeed_async.cli._progress import Counters
from wavespeed_async.cli._spend import cached_costs
from wavespeed_async.gallery import (
    INDEX_NAME,
    GalleryItem,
    input_urls,
    render_gallery,
    write_page,
)
from wavespeed_async.jobs.journal import JobRecord, Journal, JournalError

__all__ = ["INPUTS_DIR", "MIN_INTERVAL_S", "BatchGallery", "items_from_records", "stage_inputs"]

#: The folder of DIR where the jobs' local input images are linked for the page.
INPUTS_DIR: Final = "inputs"

#: The shortest time between two rewrites of the page while a batch runs.
MIN_INTERVAL_S: Final = 2.0
#: A rewrite waits at least this many times as long as the last one took.
COST_FACTOR: Final = 20.0

_OPEN_TEXT: Final = {
    "pending": "not submitted yet: re-run the same command to submit it",
    "created": "still running on the server: re-run the same command to collect it",
    "submitting": "being submitted",
}


def stage_inputs(out: Path, jobs: list[Job]) -> dict[int, list[str]]:
    """Each job's input images as the page shows them, by line.

    A local file (already checked to be an image the job may upload) is linked into
    ``DIR/inputs/`` once, or copied where a link cannot be made, so the page shows it
    from its own folder: it loads nothing from elsewhere. A URL is kept, to be linked.
    A file that cannot be staged is left out (the page never stops a batch).
    """
    staged: dict[Path, str | None] = {}
    found: dict[int, list[str]] = {}
    for job in jobs:
        names = []
        for files in job.local_media.values():
            for local in files:
                if local.path not in staged:
                    staged[local.path] = _stage(out, local.path)
                name = staged[local.path]
                if name is not None:
                    names.append(name)
        names += input_urls(job.inputs)
        if names:
            found[job.line] = names
    return found


def _stage(out: Path, path: Path) -> str | None:
    """``path`` in ``DIR/inputs/`` (a hard link, else a copy); its name from the page."""
    digest = hashlib.sha256(os.fsencode(path)).hexdigest()[:16]
    name = f"{INPUTS_DIR}/{digest}{path.suffix.lower()[:8]}"
    target = out / name
    try:
        src = path.stat()
        try:
            now = target.stat()
        except FileNotFoundError:
            now = None
        if now is not None and (now.st_size, now.st_mtime_ns) == (src.st_size, src.st_mtime_ns):
            return name
        target.parent.mkdir(exist_ok=True)
        target.unlink(missing_ok=True)
        try:
            os.link(path, target)
        except OSError:  # another file system, or links not allowed
            shutil.copy2(path, target)
    except OSError:
        return None
    return name


def items_from_records(
    records: list[JobRecord],
    jobs: dict[int, Job],
    inputs: dict[int, list[str]] | None = None,
    costs: Mapping[str, Decimal] | None = None,
) -> list[GalleryItem]:
    """One item per journal record; the prompt from the body sent, else from the jobs file.

    ``inputs``: each line's input images for the page (see :func:`stage_inputs`);
    ``costs``: each task's cost, by task id, when known.
    """
    inputs = inputs or {}
    costs = costs or {}
    items = []
    for rec in records:
        job = jobs.get(rec.line)
        source = rec.body if rec.body is not None else (job.inputs if job is not None else {})
        prompt = source.get("prompt")
        items.append(
            GalleryItem(
                number=rec.line,
                status=STATUS.get(rec.state, rec.state),
                files=rec.outputs,
                prompt=prompt if isinstance(prompt, str) else None,
                model=rec.model or (job.model if job is not None else None),
                task_id=rec.task_id,
                inference_ms=rec.inference_ms,
                error=rec.error or _OPEN_TEXT.get(rec.state),
                cost_usd=costs.get(rec.task_id) if rec.task_id is not None else None,
                inputs=inputs.get(rec.line, ()),
            )
        )
    return items


def _redacted_arg(arg: str) -> str:
    """``arg`` with the credentials of a URL in it replaced by ``***``.

    For example ``--share URL`` or ``--base-url=URL``.
    """
    if "://" not in arg:
        return arg
    head, sep, url = arg.partition("=") if arg.startswith("-") else ("", "", arg)
    return head + sep + redacted_url(url)


def command_line(args: argparse.Namespace, target: Target) -> str:
    """The command as typed (when this process is the command line), never with a secret.

    The key (however it was spelled on the command line) and any credentials in a URL
    (``--base-url``, ``--share``) are replaced by ``***``.
    """
    argv = sys.argv[1:]
    if argv[:1] != ["batch"]:
        argv = ["batch", str(args.jobs), "-o", str(args.output)]
    text = "wavespeed-async " + shlex.join(_redacted_arg(a) for a in argv)
    secrets = [getattr(args, "api_key", None)]
    if not target.emulator:
        secrets.append(target.api_key)
    for url in (getattr(args, "base_url", None), getattr(args, "share", None)):
        if url:
            user = urlsplit(url)
            secrets += [user.username, user.password]
    for secret in secrets:
        if secret and secret.strip():
            text = text.replace(secret.strip(), "***")
    return text


class BatchGallery:
    """Writes ``DIR/index.html`` for a batch (nothing at all when ``enabled`` is false)."""

    def __init__(
        self,
        args: argparse.Namespace,
        out: Path,
        jobs: list[Job],
        target: Target,
    ) -> None:
        self.enabled = not getattr(args, "no_gallery", False)
        self.out = out
        self.jobs = {j.line: j for j in jobs}
        self.title = f"{Path(args.jobs).name} → {out.name or out}"
        self.command = command_line(args, target)
        self.started = time.monotonic()
        self._last_cost_s = 0.0
        self._failed = False
        self._read_failed = False
        self.inputs = stage_inputs(out, jobs) if self.enabled else {}

    def _write(self, records: list[JobRecord], wall_s: float, costs: Mapping[str, Decimal]) -> None:
        if self._failed:
            return
        try:
            page = render_gallery(
                items_from_records(records, self.jobs, self.inputs, costs),
                title=self.title,
                command=self.command,
                wall_s=wall_s,
                numbering="line",
                wall_label="this run's wall time",
            )
            write_page(self.out, page)
        except OSError as exc:
            self._failed = True
            err(f"note: cannot write the gallery {self.out / INDEX_NAME}: {exc}")

    def write(self, records: list[JobRecord], costs: Mapping[str, Decimal] | None = None) -> None:
        """Write the page now, from the batch's journal ``records`` (and tasks' ``costs``)."""
        if self.enabled:
            self._write(records, self._wall(), costs or {})

    def announce(self) -> None:
        """Tell where the page is (after the summary)."""
        if self.enabled and not self._failed:
            print(f"Gallery: {self.out / INDEX_NAME} (open it in a browser)")

    def _wall(self) -> float:
        return time.monotonic() - self.started

    async def alongside(self, run: Callable[[], Awaitable[None]], counters: Counters) -> None:
        """Run the batch (``run``), rewriting the page as its results arrive."""
        if not self.enabled:
            await run()
            return
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._follow, counters)
            await run()
            tg.cancel_scope.cancel()

    async def _follow(self, counters: Counters) -> None:
        seen = -1
        while True:
            if counters.ended_this_run != seen:
                seen = counters.ended_this_run
                # In a worker thread, never cancelled midway: the event loop goes on.
                await anyio.to_thread.run_sync(self._refresh)
            await anyio.sleep(max(MIN_INTERVAL_S, COST_FACTOR * self._last_cost_s))

    def _refresh(self) -> None:
        """Read the journal through a connection of this thread, then write the page.

        WAL: readers never block the batch's writes.
        """
        t0 = time.perf_counter()
        try:
            with Journal.open(self.out / JOURNAL_NAME) as journal:
                records = [r for r in journal.all() if r.line in self.jobs]
                costs = cached_costs(journal)
        except (JournalError, sqlite3.Error) as exc:  # e.g. busy: the next refresh retries
            if not self._read_failed:
                err(f"note: cannot read the journal for the gallery: {exc}")
            self._read_failed = True
            return
        self._write(records, self._wall(), costs)
        self._last_cost_s = time.perf_counter() - t0
